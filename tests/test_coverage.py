"""`twin coverage` and /indicators on the demo city and on a city built from GIS files."""

from __future__ import annotations

import csv
import io
import json
import time

import geopandas as gpd
import httpx
import numpy as np
import pandas as pd
import pytest
import shapely
from PIL import Image

from conftest import YANTAI_X, YANTAI_Y, copy_city, line, point, square, write_geojson
from both_stores import backend, demo_city, server  # noqa: F401  (every test here runs on both stores)
from layers.sensors import ObservationRow
from test_cli import twin
from twin.workspace import City

ALL = {"topo_map_coverage", "pipeline_monitoring", "smart_lighting", "weather_station_spacing", "video_coverage",
       "fiveg_coverage", "smart_community", "smart_campus", "green_coverage", "energy_metering",
       "combined_sewer_share", "bim_coverage"}


def _picture_has_content(png: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).reshape(-1, 3)
    colours = {tuple(p) for p in pixels[:: max(1, len(pixels) // 50_000)]}
    assert len(colours) > 20, "the map is (nearly) blank"
    green = (pixels[:, 1] > 120) & (pixels[:, 0] < 120) & (pixels[:, 2] < 130)
    red = (pixels[:, 0] > 180) & (pixels[:, 1] < 110) & (pixels[:, 2] < 100)
    assert green.sum() > 500 and red.sum() > 100, "covered (green) and uncovered (red) parts are drawn"


def test_demo_city_json_has_every_indicator_with_its_parts_and_districts(demo_city):
    result = twin("coverage", demo_city.root, "--by", "district", "--window", "none", "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = {r["indicator"]: r for r in json.loads(result.stdout)}
    assert set(rows) == ALL
    for row in rows.values():
        assert {"indicator", "value", "unit", "numerator", "denominator", "target", "met", "by"} <= set(row)
        assert [d["district"] for d in row["by"]] == ["芝罘区", "莱山区"]
    lamps = rows["smart_lighting"]
    assert lamps["numerator"] / lamps["denominator"] == lamps["value"] and lamps["met"] is False
    assert sum(d["denominator"] for d in lamps["by"]) == lamps["denominator"]
    topo = rows["topo_map_coverage"]
    assert topo["met"] is True and len(topo["gap"]) == 2, "the demo leaves two 1:1000 sheets unsurveyed"
    assert topo["uncovered"]["type"] in ("Polygon", "MultiPolygon")
    assert rows["video_coverage"]["by"][1]["met"] is False  # Laishan's plaza is short of cameras
    assert 0 < rows["energy_metering"]["value"] < 0.9


def test_demo_city_map_and_report(demo_city, tmp_path):
    result = twin("coverage", demo_city.root, "video_coverage", "topo_map_coverage", "--by", "district",
                  "--map", tmp_path / "coverage.png", "--report", tmp_path / "report.html")
    assert result.returncode == 0, result.stderr
    assert "video_coverage" in result.stdout and "芝罘区" in result.stdout
    _picture_has_content((tmp_path / "coverage.png").read_bytes())
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") == 2 and "4155" in page  # the missing sheets, by name
    assert "https://" not in page and "http://" not in page  # opens offline


def test_table_csv_check_and_errors(demo_city):
    table = twin("coverage", demo_city.root, "smart_lighting", "smart_campus")
    assert table.returncode == 0 and "not met" in table.stdout and "89.0%" in table.stdout
    rows = list(csv.DictReader(io.StringIO(twin("coverage", demo_city.root, "smart_campus", "--by", "district",
                                                "--format", "csv").stdout)))
    assert [r["district"] for r in rows] == ["", "芝罘区", "莱山区"]
    assert twin("coverage", demo_city.root, "smart_lighting", "--check").returncode == 2
    assert twin("coverage", demo_city.root, "smart_community", "--check").returncode == 0
    unknown = twin("coverage", demo_city.root, "smart_lights")
    assert unknown.returncode != 0 and "unknown indicator 'smart_lights'" in unknown.stderr
    bad_time = twin("coverage", demo_city.root, "pipeline_monitoring", "--at", "tomorrow-ish")
    assert bad_time.returncode == 1 and "not an ISO 8601 time" in bad_time.stderr


def test_a_city_without_cameras_names_the_layer_the_indicator_needs(city, tmp_path):
    x, y = YANTAI_X, YANTAI_Y
    city.ingest(write_geojson(tmp_path / "key.geojson", [{"geometry": square(x, y, 100)}]), "key_area")
    city.ingest(write_geojson(tmp_path / "lamps.geojson", [{"geometry": point(x + k, y), "properties": {"smart": k < 3}}
                                                          for k in range(4)]), "lamp")
    result = twin("coverage", city.root, "video_coverage")
    assert result.returncode == 1
    assert "video_coverage needs a layer of kind 'camera'" in result.stderr
    everything = twin("coverage", city.root, "--format", "json")
    assert everything.returncode == 0, everything.stderr
    assert [r["indicator"] for r in json.loads(everything.stdout)] == ["smart_lighting"]
    assert json.loads(everything.stdout)[0]["value"] == 0.75


def test_monitoring_follows_readings_in_the_window(demo_city, tmp_path):
    city = City.open(copy_city(demo_city, tmp_path / "city"))
    sensors = city.features("sensor")
    now = int(time.time() * 1000)
    city.store.append_observations([ObservationRow(str(s), now - 3_600_000, 0.3, None)
                                    for s in sensors["sensor_id"][: len(sensors) // 2]])

    def monitoring(*args):
        result = twin("coverage", city.root, "pipeline_monitoring", "--format", "json", *args)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)[0]

    installed = monitoring("--window", "none")["value"]
    recent = monitoring("--window", "24h")["value"]
    earlier = monitoring("--window", "24h", "--at", "2020-01-01T00:00:00Z")
    assert 0 < recent < installed
    assert earlier["value"] == 0.0 and earlier["details"]["at"] == "2020-01-01T00:00:00Z"
    assert monitoring("--window", "30min")["value"] == 0.0


def test_api_serves_the_same_numbers(server, demo_city):
    cli = {r["indicator"]: r for r in json.loads(twin("coverage", demo_city.root, "--window", "none",
                                                      "--format", "json").stdout)}
    listing = httpx.get(f"{server.url}/indicators", params={"window": "none"}, timeout=60)
    assert listing.status_code == 200, server.log()[-3000:]
    api = {r["indicator"]: r for r in listing.json()}
    assert set(api) == set(cli)
    for name in api:
        assert api[name]["value"] == pytest.approx(cli[name]["value"], rel=1e-12)
    one = httpx.get(f"{server.url}/indicators/video_coverage", params={"by": "district"}, timeout=60).json()
    assert [d["district"] for d in one["by"]] == ["芝罘区", "莱山区"]
    lon, lat = one["uncovered"]["coordinates"][0][0][0][:2] if one["uncovered"]["type"] == "MultiPolygon" \
        else one["uncovered"]["coordinates"][0][0][:2]
    assert 121 < lon < 122 and 37 < lat < 38, "uncovered parts come in WGS 84"
    png = httpx.get(f"{server.url}/indicators/video_coverage/map.png", timeout=60)
    assert png.headers["content-type"] == "image/png"
    _picture_has_content(png.content)
    page = httpx.get(f"{server.url}/indicators", params={"f": "html"}, timeout=120)
    assert page.headers["content-type"].startswith("text/html") and "Smart-city coverage indicators" in page.text
    missing = httpx.get(f"{server.url}/indicators/no_such_thing", timeout=30)
    assert missing.status_code == 404 and "known:" in missing.json()["description"]
    bad = httpx.get(f"{server.url}/indicators/pipeline_monitoring", params={"window": "often"}, timeout=30)
    assert bad.status_code == 400 and "not a duration" in bad.json()["description"]


def test_both_stores_give_the_same_indicators(demo_city_gpkg, demo_city_postgis):
    def indicators(city):
        result = twin("coverage", city.root, "--by", "district", "--window", "none", "--format", "json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def differences(a, b, path=""):
        if isinstance(a, dict) and isinstance(b, dict):
            return [d for k in sorted(set(a) | set(b)) for d in differences(a.get(k), b.get(k), f"{path}.{k}")]
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}[{i}]")]
        return [] if a == b else [f"{path}: {a!r} != {b!r}"]

    gpkg, postgis = indicators(demo_city_gpkg), indicators(demo_city_postgis)
    assert [r["indicator"] for r in gpkg] == [r["indicator"] for r in postgis]
    assert [d for d in differences(gpkg, postgis) if not d.split(":")[0].endswith(".at")] == [], \
        "the same numbers, only the time of computing differs"


def _monitoring_city(city: City, tmp_path, rng: np.random.Generator) -> int:
    """Two pipe layers (one with a utility per segment, one older without) and sensors linked every way
    SensorRegistry links them; some readings in the last day, some older. Returns the time to measure at."""
    x, y = YANTAI_X, YANTAI_Y
    utilities = ["water", "gas", "storm", "sewage", "combined", None]
    mains = []
    for k in range(300):
        x0, y0 = x + rng.uniform(0, 2000), y + rng.uniform(0, 2000)
        geometry = line(x0, y0, x0 + rng.uniform(-80, 80), y0 + rng.uniform(-80, 80))
        if k == 8:
            geometry = {"type": "MultiLineString", "coordinates": [[[x0, y0], [x0 + 30, y0]],
                                                                    [[x0, y0 + 5], [x0, y0 + 45]]]}
        mains.append({"geometry": geometry, "properties": {"code": f"M{k}", "utility": utilities[k % 6]}})
    city.ingest(write_geojson(tmp_path / "mains.geojson", mains), "pipe", layer="pipe")
    old = [{"geometry": line(x + 10 * k, y - 50, x + 10 * k + 9, y - 50)} for k in range(40)]
    city.ingest(write_geojson(tmp_path / "old.geojson", old), "pipe", layer="old_pipe")
    pipes = {name: city.features(name) for name in ("pipe", "old_pipe")}
    sensors = []
    for k in range(120):
        layer = "pipe" if k % 4 else "old_pipe"
        target = pipes[layer].iloc[int(rng.integers(len(pipes[layer])))]
        px, py = shapely.line_interpolate_point(target.geometry, 0.3, normalized=True).coords[0]
        how = k % 6
        pipe_id = {0: target["uid"], 1: target["uid"].split(".", 1)[1] if layer == "pipe" else target["uid"],
                   2: "no-such-pipe", 3: None, 4: None, 5: target["uid"]}[how]
        if how == 4:  # nowhere near a pipe
            px, py = x - 5000 - k, y - 5000
        elif how in (2, 3):  # a few metres off the pipe: snapped within 10 m
            px, py = px + rng.uniform(-6, 6), py + rng.uniform(-6, 6)
        sensor_id = f"S{k}" if k % 17 else f"S{k - 1}"  # every 17th repeats its neighbour's id
        sensors.append({"geometry": point(px, py), "properties": {"sensor_id": sensor_id, "pipe_id": pipe_id,
                                                                  "property": "pressure", "unit": "MPa"}})
    city.ingest(write_geojson(tmp_path / "sensors.geojson", sensors), "sensor")
    at = 1_800_000_000_000
    hour = 3_600_000
    city.store.append_observations([ObservationRow(f"S{k}", at - (1 if k % 3 else 40) * hour, 0.3, None)
                                    for k in range(0, 120, 2)])
    return at


def test_monitoring_from_the_stores_sums_and_indexes_agrees_with_reading_every_pipe(city, tmp_path):
    """pipeline_monitoring and combined_sewer_share over the whole city use the lengths summed at ingest and
    the pipes looked up by uid and spatial index (R-tree, GiST); reading every pipe must give the same."""
    from twin.indicators import ModelData, Options, compute

    at = _monitoring_city(city, tmp_path, np.random.default_rng(5))
    stored = ModelData.from_city(city)
    frames = {"pipe": pd.concat([city.features("old_pipe"), city.features("pipe")], ignore_index=True),
              "sensor": city.features("sensor")}
    read = ModelData(city.crs, {k: gpd.GeoDataFrame(v, crs=city.crs) for k, v in frames.items()},
                     city.store.reporting_sensors)
    assert stored.line_lengths("pipe", "test") is not None, "the store keeps the sums"
    assert stored.look_up("pipe", "test", ["uid"], uids=["pipe.M1"]) is not None, "the store looks pipes up"
    for window_h in (None, 24, 48, 0.5):
        options = Options(at_ms=at, window_ms=None if window_h is None else int(window_h * 3_600_000), explain=False)
        for name in ("pipeline_monitoring", "combined_sewer_share"):
            ours, reference = compute(name, stored, options=options), compute(name, read, options=options)
            assert ours.numerator == pytest.approx(reference.numerator, rel=1e-12, abs=1e-9), (name, window_h)
            assert ours.denominator == pytest.approx(reference.denominator, rel=1e-12), (name, window_h)
            assert _close(ours.details, reference.details), (name, window_h, ours.details, reference.details)
    installed = compute("pipeline_monitoring", stored, options=Options(at_ms=at, window_ms=None, explain=False))
    assert 0 < installed.value < 1 and installed.details["monitored_segments"] >= 40


def test_pipes_looked_up_by_uid_or_near_points_are_those_reading_every_pipe_finds(city, tmp_path):
    """The store's look-up (uid index, R-tree or GiST) finds the pipes with one of the uids or a box within reach
    of a point, layer by layer and by fid, with the columns asked for that the layers have."""
    from twin.indicators import ModelData

    _monitoring_city(city, tmp_path, np.random.default_rng(7))
    names = ["old_pipe", "pipe"]  # the catalogue's order
    frames = [city.features(name) for name in names]
    uids = [frames[1]["uid"].iloc[k] for k in (0, 5, 77)] + [frames[0]["uid"].iloc[3], "no-such-pipe"]
    xy = np.array([[YANTAI_X + 500, YANTAI_Y + 500], [YANTAI_X + 35, YANTAI_Y - 45], [YANTAI_X - 9000, YANTAI_Y]])
    reach = 40.0
    looked_up = ModelData.from_city(city).look_up("pipe", "test", ["utility", "uid", "no_such_column"], uids=uids,
                                                  near=(xy, reach))
    expected = []
    for layer, frame in enumerate(frames):
        bounds = shapely.bounds(frame.geometry.values)
        near = ((bounds[:, None, 0] <= xy[None, :, 0] + reach) & (bounds[:, None, 2] >= xy[None, :, 0] - reach)
                & (bounds[:, None, 1] <= xy[None, :, 1] + reach) & (bounds[:, None, 3] >= xy[None, :, 1] - reach))
        found = np.flatnonzero(frame["uid"].isin(uids).to_numpy() | near.any(axis=1))
        expected += [(layer, int(k) + 1, frame["uid"].iloc[k]) for k in found]
    assert len(expected) > 10 and {e[0] for e in expected} == {0, 1}
    assert list(zip(looked_up.layer.tolist(), looked_up.fid.tolist(), looked_up.frame["uid"])) == expected
    assert list(looked_up.frame.columns) == ["utility", "uid"]
    utilities = [None if layer == 0 or pd.isna(u := frames[1]["utility"].iloc[fid - 1]) else u
                 for layer, fid, _ in expected]
    assert [None if pd.isna(u) else u for u in looked_up.frame["utility"]] == utilities
    assert any(utilities) and not all(utilities)
    assert shapely.equals(looked_up.geoms.geometries(),
                          [frames[layer].geometry.iloc[fid - 1] for layer, fid, _ in expected]).all()


def _close(a, b) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-9)
    return a == b


def test_the_sums_go_with_their_layer_version(tmp_path):
    """Replacing or deleting a layer drops its sums; a city whose sums are gone (made before they were kept)
    reads the pipes instead, with the same answer."""
    import sqlite3

    from twin.indicators import ModelData, Options, compute
    from twin.store.measures import LINE_LENGTHS

    city = City.init(tmp_path / "city", "EPSG:4549")
    at = _monitoring_city(city, tmp_path, np.random.default_rng(9))
    options = Options(at_ms=at, window_ms=24 * 3_600_000, explain=False)
    before = compute("pipeline_monitoring", ModelData.from_city(city), options=options)
    tables = {r.name: r.table for r in city.store.layers()}
    city.ingest(write_geojson(tmp_path / "old2.geojson", [{"geometry": line(YANTAI_X, YANTAI_Y, YANTAI_X + 3,
                                                                            YANTAI_Y + 4)}]), "pipe", layer="old_pipe")
    with sqlite3.connect(city.store.path) as conn:
        kept = {row[0]: row[1] for row in conn.execute(f"SELECT table_name, sum(length_m) FROM {LINE_LENGTHS} "
                                                       f"GROUP BY table_name")}
    assert tables["old_pipe"] not in kept and kept[city.store.layer("old_pipe").table] == pytest.approx(5.0)
    city.store.delete_layer("old_pipe")
    with sqlite3.connect(city.store.path) as conn:
        assert [r[0] for r in conn.execute(f"SELECT DISTINCT table_name FROM {LINE_LENGTHS}")] == [tables["pipe"]]
        conn.execute(f"DELETE FROM {LINE_LENGTHS}")
    fallback = ModelData.from_city(city)
    assert fallback.line_lengths("pipe", "test") is None
    after = compute("pipeline_monitoring", fallback, options=options)
    assert after.denominator < before.denominator and after.value > 0


def test_shares_from_the_counts_made_at_ingest_agree_with_counting_the_rows(city, tmp_path):
    """Smart lamps and metered buildings over the whole city come from the flag counts the GeoPackage keeps
    per layer version; counting the rows (a store without them, or they deleted) gives the same."""
    import sqlite3

    from twin.indicators import ModelData, Options, compute
    from twin.store.measures import FLAG_COUNTS

    rng = np.random.default_rng(3)
    x, y = YANTAI_X, YANTAI_Y
    words = [True, False, None, "是", "no"]
    lamps = [{"geometry": point(x + k, y), "properties": {"smart": words[k % 5]}} for k in range(97)]
    city.ingest(write_geojson(tmp_path / "lamps.geojson", lamps), "lamp")
    city.ingest(write_geojson(tmp_path / "more-lamps.geojson", lamps[:13]), "lamp", layer="old_lamp")
    buildings = [{"geometry": square(x + 20 * k, y + 100, 10),
                  "properties": {"energy_key": bool(rng.integers(2)) if k % 7 else None,
                                 "energy_metered": bool(rng.integers(2)), "energy_note": "yes" if k % 3 else "no"}}
                 for k in range(60)]
    city.ingest(write_geojson(tmp_path / "buildings.geojson", buildings), "building")
    frames = {kind: gpd.GeoDataFrame(pd.concat([city.features(r.name) for r in city.layers_of_kind(kind)],
                                               ignore_index=True), crs=city.crs) for kind in ("lamp", "building")}
    read = ModelData(city.crs, frames)
    options = Options(explain=False)
    for name in ("smart_lighting", "energy_metering"):
        ours, reference = compute(name, ModelData.from_city(city), options=options), compute(name, read, options=options)
        assert (ours.numerator, ours.denominator) == (reference.numerator, reference.denominator), name
    assert compute("smart_lighting", read, options=options).denominator == 110
    if city.store.url.startswith("geopackage:"):
        with sqlite3.connect(city.store.path) as conn:
            assert conn.execute(f"SELECT count(DISTINCT table_name) FROM {FLAG_COUNTS}").fetchone()[0] == 3
            conn.execute(f"DELETE FROM {FLAG_COUNTS}")
        again = compute("energy_metering", ModelData.from_city(city), options=options)
        assert (again.numerator, again.denominator) == (reference.numerator, reference.denominator)


def test_a_city_file_replaced_under_a_running_process_is_read_afresh(tmp_path):
    """A process keeps read connections to city.gpkg open; when the file is replaced by another one (as
    `twin export --to city.gpkg --overwrite` does), the next read sees the new file, not the old one."""
    import os
    import shutil

    from twin.indicators import ModelData

    cities = []
    for name, n in (("a", 3), ("b", 5)):
        c = City.init(tmp_path / name, "EPSG:4549")
        c.ingest(write_geojson(tmp_path / f"{name}.geojson", [{"geometry": line(YANTAI_X, YANTAI_Y + 10 * k,
                                                                                YANTAI_X + 100, YANTAI_Y + 10 * k)}
                                                               for k in range(n)]), "pipe")
        cities.append(c)
    city, other = cities
    assert len(ModelData.from_city(city).frame("pipe", "test", ["uid"])) == 3
    assert ModelData.from_city(city).line_lengths("pipe", "test")[0].length_m == pytest.approx(300)
    shutil.copy(other.store.path, tmp_path / "incoming.gpkg")
    os.replace(tmp_path / "incoming.gpkg", city.store.path)
    assert len(ModelData.from_city(city).frame("pipe", "test", ["uid"])) == 5
    assert ModelData.from_city(city).line_lengths("pipe", "test")[0].length_m == pytest.approx(500)
