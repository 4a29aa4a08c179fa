"""Vector, terrain and 3D tiles over a running server, read with real decoders."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mapbox_vector_tile
import morecantile
import numpy as np
import pytest
from pyproj import CRS
from rasterio.io import MemoryFile

from both_stores import backend, demo_city, server  # noqa: F401  (every test here runs on both stores)
from conftest import YANTAI_X, YANTAI_Y, Server, pipe_features, store_url_for, write_geojson
from layers.gltf import decode_glb_json
from layers.raster import GroundModel
from tiles.terrain import decode_terrarium
from twin.crs import transformer
from twin.workspace import City

REPO = Path(__file__).resolve().parents[1]
TMS = morecantile.tms.get("WebMercatorQuad")
MVT = "application/vnd.mapbox-vector-tile"

def centre_tile(city: City, z: int, layer: str = "building") -> morecantile.Tile:
    west, south, east, north = city.layer(layer).bounds_wgs84
    return TMS.tile((west + east) / 2, (south + north) / 2, z)


def get(server, path: str, **kw) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", timeout=60, **kw)


@pytest.mark.parametrize("z", [12, 14, 15, 16, 17])
def test_combined_tile_decodes_with_the_city_layers(server, demo_city, z):
    t = centre_tile(demo_city, z)
    response = get(server, f"/tiles/WebMercatorQuad/{z}/{t.y}/{t.x}")
    assert response.status_code == 200 and response.headers["content-type"] == MVT
    layers = mapbox_vector_tile.decode(response.content)
    assert "pipe" in layers
    if z >= 13:
        buildings = layers["building"]["features"]
        assert buildings and all("height_m" in f["properties"] for f in buildings)
        assert layers["building"]["extent"] == 4096
    assert all(f["properties"]["utility"] in {"water", "storm", "sewage", "gas", "combined"}
               for f in layers["pipe"]["features"])


def test_building_tiles_carry_height_ground_and_the_bim_flag(server, demo_city):
    gis = demo_city.features("building")
    fzk = gis[gis["represented_by_bim"]].iloc[0]
    lon, lat = transformer(demo_city.crs, morecantile.tms.get("WebMercatorQuad").geographic_crs).transform(
        fzk.geometry.centroid.x, fzk.geometry.centroid.y)
    t = TMS.tile(lon, lat, 17)
    layers = mapbox_vector_tile.decode(get(server, f"/collections/building/tiles/WebMercatorQuad/17/{t.y}/{t.x}").content)
    props = {f["properties"]["uid"]: f["properties"] for f in layers["building"]["features"]}
    assert props[fzk["uid"]]["represented_by_bim"] is True
    assert props[fzk["uid"]]["bim_uid"].startswith("bim.")
    assert props[fzk["uid"]]["ground_z"] == pytest.approx(fzk["ground_z"], abs=0.01)


def test_tile_geometry_lands_where_the_feature_is(server, demo_city):
    """Decode a manhole's position from its tile and compare with the model."""
    manhole = demo_city.features("manhole").iloc[10]
    lon, lat = transformer(demo_city.crs, TMS.geographic_crs).transform(manhole.geometry.x, manhole.geometry.y)
    t = TMS.tile(lon, lat, 18)
    layer = mapbox_vector_tile.decode(get(server, f"/collections/manhole/tiles/WebMercatorQuad/18/{t.y}/{t.x}").content)
    feature = next(f for f in layer["manhole"]["features"] if f["properties"]["uid"] == manhole["uid"])
    px, py = feature["geometry"]["coordinates"]
    b = TMS.xy_bounds(t)
    x = b.left + px / 4096 * (b.right - b.left)
    y = b.bottom + py / 4096 * (b.top - b.bottom)  # decode() gives y up
    mx, my = transformer(demo_city.crs, TMS.crs._pyproj_crs).transform(manhole.geometry.x, manhole.geometry.y)
    assert abs(x - mx) < 0.2 and abs(y - my) < 0.2  # a tile unit at z18 is 0.15 m


def test_gdal_reads_our_tiles(server, demo_city, tmp_path):
    t = centre_tile(demo_city, 15)
    data = get(server, f"/tiles/WebMercatorQuad/15/{t.y}/{t.x}").content
    path = tmp_path / "15" / str(t.x) / f"{t.y}.pbf"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    info = subprocess.run(["ogrinfo", "-ro", "-al", "-so", str(path)], capture_output=True, text=True, check=True,
                          timeout=60).stdout
    decoded = mapbox_vector_tile.decode(data)
    for name, layer in decoded.items():
        assert f"Layer name: {name}" in info
        assert f"Feature Count: {len(layer['features'])}" in info
    assert "Geometry: Polygon" in info and "Geometry: Line String" in info


def test_tilejson_and_tilesets_describe_the_tiles(server):
    tilejson = get(server, "/tiles/WebMercatorQuad/tilejson.json").json()
    assert tilejson["tilejson"] == "3.0.0" and tilejson["tiles"][0].endswith("/tiles/WebMercatorQuad/{z}/{y}/{x}")
    names = {layer["id"]: layer for layer in tilejson["vector_layers"]}
    assert {"building", "pipe", "sensor", "bim"} <= set(names) and "bim-elements" not in names
    assert names["building"]["minzoom"] == 13
    layer = get(server, "/collections/pipe/tiles/WebMercatorQuad/tilejson.json").json()
    assert [v["id"] for v in layer["vector_layers"]] == ["pipe"]
    assert get(server, "/tileMatrixSets/WebMercatorQuad").json()["id"] == "WebMercatorQuad"
    assert any(link["rel"] == "item" for link in get(server, "/tiles").json()["tilesets"][0]["links"])


def test_tiles_have_etags_cache_control_and_gzip(server, demo_city):
    t = centre_tile(demo_city, 16)
    first = get(server, f"/tiles/WebMercatorQuad/16/{t.y}/{t.x}", headers={"Accept-Encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip"
    assert "max-age" in first.headers["cache-control"]
    again = get(server, f"/tiles/WebMercatorQuad/16/{t.y}/{t.x}", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert get(server, f"/tiles/WebMercatorQuad/16/{t.y}/{t.x}").headers["x-tile-cache"] == "hit"


@pytest.mark.parametrize("path", ["/tiles/WebMercatorQuad/25/0/0", "/tiles/WebMercatorQuad/3/8/0",
                                  "/tiles/WebMercatorQuad/3/0/-1", "/tiles/WebMercatorQuad/a/0/0",
                                  "/collections/pipe/tiles/WebMercatorQuad/2/9/9", "/terrain/30/1/1.png",
                                  "/terrain/hillshade/4/99/1.png"])
def test_tiles_out_of_range_are_400(server, path):
    response = get(server, path)
    assert response.status_code == 400, response.text


def test_empty_tiles_are_204_and_unknown_layers_404(server):
    assert get(server, "/tiles/WebMercatorQuad/10/0/0").status_code == 204
    assert get(server, "/collections/nope/tiles/WebMercatorQuad/10/0/0").status_code == 404
    assert get(server, "/terrain/10/0/0.png").status_code == 404  # far outside the DEM


def test_terrain_tiles_decode_to_the_dem_within_10_cm(server, demo_city):
    t = centre_tile(demo_city, 15)
    response = get(server, f"/terrain/{t.z}/{t.x}/{t.y}.png")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    with MemoryFile(response.content) as mem, mem.open() as png:
        heights = decode_terrarium(png.read())
    b = TMS.xy_bounds(t)
    rows, cols = np.meshgrid(np.arange(8, 256, 31), np.arange(8, 256, 31), indexing="ij")
    mx = b.left + (cols + 0.5) / 256 * (b.right - b.left)
    my = b.top - (rows + 0.5) / 256 * (b.top - b.bottom)
    x, y = transformer(TMS.crs._pyproj_crs, demo_city.crs).transform(mx.ravel(), my.ravel())
    ground = GroundModel(demo_city.store.raster_path("dem")).sample(np.asarray(x), np.asarray(y))
    assert np.abs(heights[rows, cols].ravel() - ground).max() < 0.1


def test_hillshade_is_an_rgba_png(server, demo_city):
    t = centre_tile(demo_city, 14)
    response = get(server, f"/terrain/hillshade/{t.z}/{t.x}/{t.y}.png")
    with MemoryFile(response.content) as mem, mem.open() as png:
        assert png.count == 4
        shade = png.read(1)
    assert shade.std() > 0, "the hills cast shade"
    tilejson = get(server, "/terrain/tilejson.json").json()
    assert tilejson["encoding"] == "terrarium" and tilejson["elevationDecoder"]["offset"] == -32768


def test_tileset_covers_every_bim_model_and_loads_with_loaders_gl(server, demo_city):
    tileset = get(server, "/3dtiles/tileset.json").json()
    assert tileset["asset"]["version"] == "1.1"
    children = tileset["root"]["children"]
    bim = demo_city.features("bim")
    assert len(children) == len(bim)
    for child in children:
        west, south, east, north, low, high = child["boundingVolume"]["region"]
        assert west < east and south < north and low < high
        assert len(child["transform"]) == 16 and child["geometricError"] == 0
    node = shutil.which("node")
    assert node, "node is needed (scripts/setup.sh)"
    out = subprocess.run([node, str(REPO / "js" / "load-tileset.mjs"), f"{server.url}/3dtiles/tileset.json"],
                         capture_output=True, text=True, timeout=120, check=True)
    loaded = json.loads(out.stdout)
    assert loaded["type"] == "TILES3D" and len(loaded["contents"]) == len(bim)
    for content in loaded["contents"]:
        assert content["type"] == "glTF" and content["meshes"] > 0


def test_tileset_places_each_model_at_its_footprint(server, demo_city):
    """The tile transform takes the GLB's local origin to the building's place on Earth."""
    tileset = get(server, "/3dtiles/tileset.json").json()
    bim = demo_city.features("bim").set_index("uid")
    for child in tileset["root"]["children"]:
        uid = child["extras"]["uid"]
        row = bim.loc[uid]
        matrix = np.array(child["transform"]).reshape(4, 4).T
        local = np.array(json.loads(row["transform"]))
        point = local @ [1.0, 2.0, 0.0, 1.0]  # a local point, placed in the city CRS
        lon, lat = transformer(demo_city.crs, TMS.geographic_crs).transform(point[0], point[1])
        expected = np.array(transformer(CRS.from_epsg(4979), CRS.from_epsg(4978)).transform(lon, lat, point[2]))
        assert np.linalg.norm((matrix @ [1.0, 2.0, 0.0, 1.0])[:3] - expected) < 0.05
        glb = get(server, f"/3dtiles/content/{uid}.glb")
        assert glb.headers["content-type"] == "model/gltf-binary"
        assert decode_glb_json(glb.content)["asset"]["version"] == "2.0"


def test_an_ingest_invalidates_the_tiles_of_the_changed_area_only(tmp_path, pipe_spec, backend, request):
    city = City.init(tmp_path / "c", "EPSG:4549", store=store_url_for(backend, request))
    features = pipe_features(3)
    far = {"geometry": {"type": "LineString", "coordinates": [[YANTAI_X + 3000, YANTAI_Y], [YANTAI_X + 3100, YANTAI_Y]]},
           "properties": {"编号": "far", "管径": 100, "管线类型": "燃气"}}
    city.ingest(write_geojson(tmp_path / "a.geojson", features + [far]), "pipe", spec=pipe_spec)
    server = Server(city.root)
    try:
        near_lonlat = transformer(city.crs, TMS.geographic_crs).transform(YANTAI_X + 50, YANTAI_Y + 10)
        far_lonlat = transformer(city.crs, TMS.geographic_crs).transform(YANTAI_X + 3050, YANTAI_Y)
        near, away = TMS.tile(*near_lonlat, 16), TMS.tile(*far_lonlat, 16)
        path = lambda t: f"/collections/pipe/tiles/WebMercatorQuad/16/{t.y}/{t.x}"  # noqa: E731
        before_near = get(server, path(near))
        before_far = get(server, path(away))
        assert before_near.headers["x-tile-cache"] == "miss" and before_far.status_code == 200
        features[1]["properties"]["管径"] = 999  # one pipe near the first tile changes
        subprocess.run(["twin", "ingest", str(city.root), str(write_geojson(tmp_path / "b.geojson", features + [far])),
                        "--kind", "pipe", "--spec", str(pipe_spec), "-q"], check=True, timeout=120,
                       executable=shutil.which("twin", path=str(Path(sys.executable).parent)))
        time.sleep(0.5)  # the server re-reads the catalogue every 0.2 s
        after_near = get(server, path(near))
        after_far = get(server, path(away))
        assert after_near.headers["x-tile-cache"] == "miss"
        diameters = {f["properties"]["uid"]: f["properties"].get("diameter_mm")
                     for f in mapbox_vector_tile.decode(after_near.content)["pipe"]["features"]}
        assert diameters["pipe.WS-001"] == 999
        assert after_far.headers["x-tile-cache"] == "hit", "a tile away from the change is kept"
        assert after_far.content == before_far.content
    finally:
        server.close()


def test_slivers_that_collapse_on_the_tile_grid_are_dropped_not_an_error(city, tmp_path):
    from tiles.vector import encode_tile
    from twin.snapshots import CityView

    slivers = [{"geometry": {"type": "Polygon", "coordinates": [[[YANTAI_X + i, YANTAI_Y], [YANTAI_X + i + 0.05, YANTAI_Y],
                                                                 [YANTAI_X + i + 0.05, YANTAI_Y + 30], [YANTAI_X + i, YANTAI_Y]]]},
                "properties": {"height_m": 3}} for i in range(5)]
    slivers.append({"geometry": {"type": "Polygon", "coordinates": [[[YANTAI_X, YANTAI_Y + 50], [YANTAI_X + 40, YANTAI_Y + 50],
                                                                      [YANTAI_X + 40, YANTAI_Y + 90], [YANTAI_X, YANTAI_Y + 50]]]},
                    "properties": {"height_m": 9}})
    city.ingest(write_geojson(tmp_path / "s.geojson", slivers), "building")
    view = CityView(city.root)
    lon, lat = transformer(city.crs, TMS.geographic_crs).transform(YANTAI_X + 20, YANTAI_Y + 60)
    for z in (13, 14, 15):
        t = TMS.tile(lon, lat, z)
        layers = mapbox_vector_tile.decode(encode_tile([view.snapshot("building")], z, t.x, t.y))
        heights = [f["properties"]["height_m"] for f in layers["building"]["features"]]
        assert 9 in heights


def test_tiles_seed_fills_the_disk_cache_and_a_second_run_renders_nothing(demo_city, tmp_path):
    twin = shutil.which("twin", path=str(Path(sys.executable).parent))
    first = subprocess.run([twin, "tiles", "seed", str(demo_city.root), "--zoom", "13-14", "--layer", "pipe"],
                           capture_output=True, text=True, timeout=300, check=True).stdout
    rendered = int(first.split(" tiles rendered")[0].split()[-1])
    assert rendered > 0
    second = subprocess.run([twin, "tiles", "seed", str(demo_city.root), "--zoom", "13-14", "--layer", "pipe"],
                            capture_output=True, text=True, timeout=300, check=True).stdout
    assert second.startswith("0 tiles rendered")
    assert any((demo_city.root / "cache" / "tiles" / "mvt" / "layer" / "pipe" / "14").rglob("*.bin"))
