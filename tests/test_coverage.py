"""`twin coverage` and /indicators on the demo city and on a city built from GIS files."""

from __future__ import annotations

import csv
import io
import json
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import YANTAI_X, YANTAI_Y, copy_city, point, square, write_geojson
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
