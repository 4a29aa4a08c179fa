"""OGC API - Features over a running server, read with httpx and with GDAL's OAPIF driver."""

from __future__ import annotations

import json
import subprocess
import time

import httpx
import numpy as np
import pytest
from pyproj import Transformer

from both_stores import backend, demo_city, server  # noqa: F401  (every test here runs on both stores)

def get(server, path: str, **params) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", params=params, timeout=30)


def test_landing_page_links_to_the_api_the_data_and_conformance(server):
    body = get(server, "/").json()
    rels = {link["rel"]: link["href"] for link in body["links"]}
    assert rels["data"].endswith("/collections") and rels["conformance"].endswith("/conformance")
    assert rels["service-desc"].endswith("/openapi.json")
    assert get(server, "/openapi.json").status_code == 200


def test_conformance_declares_core_geojson_and_crs(server):
    classes = get(server, "/conformance").json()["conformsTo"]
    for part in ("ogcapi-features-1/1.0/conf/core", "ogcapi-features-1/1.0/conf/geojson",
                 "ogcapi-features-2/1.0/conf/crs", "ogcapi-tiles-1/1.0/conf/mvt"):
        assert any(c.endswith(part) for c in classes)


def test_collections_list_every_vector_layer_with_extent_and_count(server, demo_city):
    body = get(server, "/collections").json()
    listed = {c["id"]: c for c in body["collections"]}
    layers = {r.name: r for r in demo_city.layers() if r.kind != "dem"}
    assert set(listed) == set(layers)
    for name, record in layers.items():
        assert listed[name]["itemCount"] == record.feature_count
        assert listed[name]["extent"]["spatial"]["bbox"][0] == pytest.approx(list(record.bounds_wgs84))
        assert "http://www.opengis.net/def/crs/EPSG/0/4549" in listed[name]["crs"]
        assert listed[name]["storageCrs"] == "http://www.opengis.net/def/crs/EPSG/0/4549"


def test_paging_with_next_links_returns_every_feature_once(server, demo_city):
    url = f"{server.url}/collections/pipe/items?limit=150"
    seen = []
    while url:
        body = httpx.get(url, timeout=30).json()
        assert body["numberMatched"] == demo_city.layer("pipe").feature_count
        seen += [f["id"] for f in body["features"]]
        url = next((link["href"] for link in body["links"] if link["rel"] == "next"), None)
    assert len(seen) == len(set(seen)) == demo_city.layer("pipe").feature_count


def test_default_limit_is_100(server):
    body = get(server, "/collections/lamp/items").json()
    assert body["numberReturned"] == 100 and body["numberMatched"] > 100


def test_property_filter_selects_by_value(server, demo_city):
    pipes = demo_city.features("pipe")
    body = get(server, "/collections/pipe/items", utility="gas", limit=10000).json()
    assert body["numberMatched"] == int((pipes["utility"] == "gas").sum())
    assert {f["properties"]["utility"] for f in body["features"]} == {"gas"}
    smart = get(server, "/collections/lamp/items", smart="true", limit=1).json()["numberMatched"]
    assert smart == int(demo_city.features("lamp")["smart"].sum())


def test_bbox_in_crs84_and_in_the_city_crs_select_the_same_features(server, demo_city):
    x0, y0, x1, y1 = 623_200.0, 4_155_600.0, 623_700.0, 4_156_100.0
    lon0, lat0 = Transformer.from_crs("EPSG:4549", "OGC:CRS84", always_xy=True).transform(x0, y0)
    lon1, lat1 = Transformer.from_crs("EPSG:4549", "OGC:CRS84", always_xy=True).transform(x1, y1)
    in_city = get(server, "/collections/building/items", bbox=f"{y0},{x0},{y1},{x1}",  # northing first
                  **{"bbox-crs": "http://www.opengis.net/def/crs/EPSG/0/4549"}, limit=10000).json()
    in_lonlat = get(server, "/collections/building/items", bbox=f"{lon0},{lat0},{lon1},{lat1}", limit=10000).json()
    expected = demo_city.features("building", bbox=(x0, y0, x1, y1))
    assert in_city["numberMatched"] == len(expected) > 0
    # the lon/lat box, reprojected, encloses the metric one: never fewer features
    assert {f["id"] for f in in_city["features"]} <= {f["id"] for f in in_lonlat["features"]}


def test_crs_parameter_returns_coordinates_in_that_crs_and_axis_order(server, demo_city):
    first = demo_city.features("manhole").iloc[0]
    x, y = first.geometry.x, first.geometry.y
    uid = first["uid"]
    city = get(server, f"/collections/manhole/items/{uid}", crs="http://www.opengis.net/def/crs/EPSG/0/4549")
    assert city.headers["content-crs"] == "<http://www.opengis.net/def/crs/EPSG/0/4549>"
    assert city.json()["geometry"]["coordinates"][:2] == pytest.approx([y, x], abs=0.001)  # northing, easting
    lon, lat = Transformer.from_crs("EPSG:4549", "EPSG:4326", always_xy=True).transform(x, y)
    latlon = get(server, f"/collections/manhole/items/{uid}", crs="http://www.opengis.net/def/crs/EPSG/0/4326").json()
    assert latlon["geometry"]["coordinates"][:2] == pytest.approx([lat, lon], abs=1e-7)
    cgcs = get(server, f"/collections/manhole/items/{uid}", crs="http://www.opengis.net/def/crs/EPSG/0/4490").json()
    assert cgcs["geometry"]["coordinates"][:2] == pytest.approx([lat, lon], abs=1e-5)
    default = get(server, f"/collections/manhole/items/{uid}").json()
    assert default["geometry"]["coordinates"][:2] == pytest.approx([lon, lat], abs=1e-7)


def test_datetime_filters_the_survey_date_of_map_sheets(server, demo_city):
    sheets = demo_city.features("map_sheet")
    dates = sorted(sheets["survey_date"].dropna())
    middle = dates[len(dates) // 2]
    body = get(server, "/collections/map_sheet/items", datetime=f"../{middle}").json()
    assert body["numberMatched"] == sum(d <= middle for d in dates)
    assert get(server, "/collections/pipe/items", datetime="2020-01-01").status_code == 400


def test_bim_elements_of_one_building(server, demo_city):
    bim = demo_city.features("bim")
    fzk = bim[bim["model"] == "AC20-FZK-Haus.ifc"].iloc[0]["uid"]
    body = get(server, "/collections/bim-elements/items", building=fzk, limit=1000).json()
    elements = demo_city.features("bim-elements")
    assert body["numberMatched"] == int((elements["building"] == fzk).sum()) > 50
    one = body["features"][0]["id"]
    full = get(server, f"/collections/bim-elements/items/{one}").json()
    assert isinstance(full["properties"]["properties"], dict), "property sets come as JSON objects"
    building = get(server, f"/collections/bim/items/{fzk}").json()
    assert any(link["rel"] == "enclosure" and link["href"].endswith(".glb") for link in building["links"])


@pytest.mark.parametrize("path,params", [
    ("/collections/pipe/items", {"limit": "10001"}),
    ("/collections/pipe/items", {"limit": "0"}),
    ("/collections/pipe/items", {"limit": "ten"}),
    ("/collections/pipe/items", {"offset": "-1"}),
    ("/collections/pipe/items", {"bbox": "1,2,3"}),
    ("/collections/pipe/items", {"bbox": "a,b,c,d"}),
    ("/collections/pipe/items", {"bbox": "121.4,37.6,121.5,37.5"}),
    ("/collections/pipe/items", {"bbox": "200,0,201,1"}),
    ("/collections/pipe/items", {"bbox": "121,37,122,38", "bbox-crs": "EPSG:9999"}),
    ("/collections/pipe/items", {"crs": "EPSG:3857"}),
    ("/collections/pipe/items", {"crs": "not a crs"}),
    ("/collections/pipe/items", {"colour": "red"}),
    ("/collections/pipe/items", {"diameter_mm": "wide"}),
    ("/collections/pipe/items", {"datetime": "yesterday"}),
    ("/collections/map_sheet/items", {"datetime": "2022-01-01/2021-01-01"}),
])
def test_bad_parameters_are_400_with_a_reason(server, path, params):
    response = get(server, path, **params)
    assert response.status_code == 400, response.text
    assert response.json()["description"]


@pytest.mark.parametrize("path", [
    "/collections/nope", "/collections/nope/items", "/collections/pipe/items/pipe.nope",
    "/collections/dem/items", "/collections/..%2F..%2Fcity.json/items", "/3dtiles/content/..%2F..%2Fcity.json.glb",
    "/3dtiles/content/pipe.JS-0001.glb", "/nothing/here",
])
def test_unknown_things_are_404(server, path):
    response = httpx.get(f"{server.url}{path}", timeout=30)
    assert response.status_code == 404, response.text


def test_json_responses_carry_etags_and_answer_304(server):
    first = get(server, "/collections/pipe/items", limit=5)
    etag = first.headers["etag"]
    again = httpx.get(f"{server.url}/collections/pipe/items", params={"limit": 5}, headers={"If-None-Match": etag})
    assert again.status_code == 304
    time.sleep(1.1)  # the response's timeStamp has moved on; the features have not
    later = httpx.get(f"{server.url}/collections/pipe/items", params={"limit": 5}, headers={"If-None-Match": etag})
    assert later.status_code == 304


def test_large_json_is_gzipped(server):
    response = httpx.get(f"{server.url}/collections/pipe/items", params={"limit": 500},
                         headers={"Accept-Encoding": "gzip"})
    assert response.headers.get("content-encoding") == "gzip"


def test_gdal_oapif_lists_the_collections_and_reads_the_features(server, demo_city):
    listing = subprocess.run(["ogrinfo", "-ro", "-q", f"OAPIF:{server.url}"], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    for name in ("pipe", "building", "bim", "bim-elements", "sensor"):
        assert f": {name} (" in listing
    info = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{server.url}/collections/pipe", "pipe"],
                          capture_output=True, text=True, timeout=120, check=True).stdout
    assert f"Feature Count: {demo_city.layer('pipe').feature_count}" in info
    assert 'ID["EPSG",4326]' in info
    features = subprocess.run(["ogr2ogr", "-f", "GeoJSON", "/vsistdout/", f"OAPIF:{server.url}/collections/sensor",
                               "sensor"], capture_output=True, text=True, timeout=120, check=True).stdout
    import json
    read = json.loads(features)["features"]
    assert len(read) == demo_city.layer("sensor").feature_count
    lon, lat = read[0]["geometry"]["coordinates"][:2]
    assert 121.3 < lon < 121.5 and 37.4 < lat < 37.6
    assert np.isfinite(lon)


from urllib.parse import quote  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_junk = st.one_of(st.text(max_size=30), st.integers(-10**12, 10**12).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(str),
                  st.lists(st.floats(-1e9, 1e9), min_size=0, max_size=7).map(lambda v: ",".join(map(str, v))))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(collection=st.sampled_from(["pipe", "building", "bim-elements", "map_sheet", "nope", "dem", "%2e%2e", "pipe%00"]),
       params=st.dictionaries(st.sampled_from(["bbox", "bbox-crs", "crs", "limit", "offset", "datetime", "utility",
                                               "smart", "diameter_mm", "storey", "f", "x"]), _junk, max_size=4),
       feature=st.one_of(st.none(), st.text(max_size=20)))
def test_nothing_a_client_sends_to_features_is_a_server_error(server, collection, params, feature):
    path = f"/collections/{collection}/items" + (f"/{quote(feature, safe='')}" if feature else "")
    response = httpx.get(f"{server.url}{path}", params=params, timeout=30)
    assert response.status_code < 500, (path, params, response.text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prefix=st.sampled_from(["/tiles/WebMercatorQuad", "/collections/pipe/tiles/WebMercatorQuad",
                               "/collections/nope/tiles/WebMercatorQuad", "/terrain", "/terrain/hillshade"]),
       z=st.one_of(st.integers(-3, 30), st.text(max_size=4).map(lambda t: quote(t, safe=""))),
       x=st.integers(-5, 2**25), y=st.integers(-5, 2**25))
def test_nothing_a_client_sends_to_tiles_is_a_server_error(server, prefix, z, x, y):
    path = f"{prefix}/{z}/{x}/{y}.png" if prefix.startswith("/terrain") else f"{prefix}/{z}/{y}/{x}"
    response = httpx.get(f"{server.url}{path}", timeout=30)
    assert response.status_code < 500, (path, response.text)


def test_simplify_drops_pipe_vertices_but_keeps_ends_and_profile_within_tolerance(server):
    full = get(server, "/collections/pipe/items", limit=10_000).json()["features"]
    lean = get(server, "/collections/pipe/items", limit=10_000, simplify=0.25).json()["features"]
    assert [f["id"] for f in full] == [f["id"] for f in lean]
    vertices = sum(len(f["geometry"]["coordinates"]) for f in full)
    kept = sum(len(f["geometry"]["coordinates"]) for f in lean)
    assert kept < vertices / 3
    for a, b in zip(full, lean):
        ends = [a["geometry"]["coordinates"][k] for k in (0, -1)]
        assert [b["geometry"]["coordinates"][k] for k in (0, -1)] == ends
    # the kept heights are the surveyed ones: a pipe's lowest point stays within the tolerance
    for a, b in zip(full[:50], lean[:50]):
        assert min(c[2] for c in b["geometry"]["coordinates"]) <= min(c[2] for c in a["geometry"]["coordinates"]) + 0.25


def test_a_browser_gets_the_web_view_and_a_client_the_landing_json(server):
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html")
    assert "twin-config" in page.text and "unpkg" not in page.text and "cdn" not in page.text.lower()
    assert get(server, "/").headers["content-type"].startswith("application/json")
    assert get(server, "/", f="html").headers["content-type"].startswith("text/html")
    assert get(server, "/", preset="nope", f="html").status_code == 400
    assert get(server, "/bim/pick", lon=0, lat=0, z=0).status_code == 404
    assert get(server, "/bim/pick", lon=999, lat=0, z=0).status_code == 400


def test_both_stores_serve_the_same_collections_features_and_tiles(server_gpkg, server_postgis, demo_city_gpkg):
    import morecantile

    def body(server, path, **params):
        response = get(server, path, **params)
        assert response.status_code == 200, response.text
        doc = json.loads(response.text.replace(server.url, "SERVER"))
        doc.pop("timeStamp", None)
        return doc

    listing = body(server_gpkg, "/collections")
    other = body(server_postgis, "/collections")
    for a, b in zip(listing["collections"], other["collections"]):
        assert a == b, {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert listing == other
    for collection in listing["collections"]:
        path = f"/collections/{collection['id']}/items"
        assert body(server_gpkg, path, limit=10_000) == body(server_postgis, path, limit=10_000), collection["id"]
    west, south, east, north = demo_city_gpkg.layer("pipe").bounds_wgs84
    tiles = list(morecantile.tms.get("WebMercatorQuad").tiles(west, south, east, north, [14, 15]))
    for t in tiles[:: max(1, len(tiles) // 12)]:
        path = f"/tiles/WebMercatorQuad/{t.z}/{t.y}/{t.x}"
        a, b = get(server_gpkg, path), get(server_postgis, path)
        assert (a.status_code, a.content) == (b.status_code, b.content), path
