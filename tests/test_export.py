"""Choosing the store (`twin init --db`, TWIN_DATABASE_URL) and moving a city between stores (`twin export`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import YANTAI_X, YANTAI_Y, fresh_schema_url, pipe_features, point, write_dem, write_geojson
from test_cli import TWIN
from twin.errors import StoreError
from twin.store import ObservationRow, StatusChange
from twin.workspace import City


def run(*args, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with extra environment variables."""
    return subprocess.run([TWIN, *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def with_password(url: str) -> str:
    return url.replace("postgresql://postgres@", "postgresql://postgres:s3cret@")


def test_init_with_db_keeps_the_city_in_postgis_and_city_json_has_no_password(tmp_path, postgis_url, pipe_spec):
    url = with_password(fresh_schema_url(postgis_url))
    city = tmp_path / "yantai"
    result = run("init", city, "--crs", "EPSG:4549", "--db", url)
    assert result.returncode == 0, result.stderr
    store = json.loads((city / "city.json").read_text())["store"]
    assert store.startswith("postgresql://postgres@127.0.0.1:") and "s3cret" not in store + result.stdout
    assert "?schema=t_" in store and not (city / "city.gpkg").exists()
    result = run("ingest", city, write_geojson(tmp_path / "p.geojson", pipe_features(3)), "--kind", "pipe",
                 "--spec", pipe_spec)
    assert result.returncode == 0 and "3 features, version 1" in result.stdout, result.stderr


def test_twin_database_url_chooses_postgis_and_a_folder_name_becomes_the_schema(tmp_path, postgis_url):
    city = tmp_path / "Yantai-West"
    result = run("init", city, "--crs", "EPSG:4549", env={"TWIN_DATABASE_URL": with_password(postgis_url)})
    assert result.returncode == 0, result.stderr
    assert json.loads((city / "city.json").read_text())["store"].endswith("?schema=yantai_west")
    again = run("init", tmp_path / "other" / "Yantai-West", "--crs", "EPSG:4549",
                env={"TWIN_DATABASE_URL": postgis_url})
    assert again.returncode == 1 and "already holds a city" in again.stderr and "?schema=" in again.stderr


def test_a_server_that_is_down_is_named_without_the_password(tmp_path):
    from conftest import free_port

    result = run("init", tmp_path / "c", "--crs", "EPSG:4549", "--db",
                 f"postgresql://twin:s3cret@127.0.0.1:{free_port()}/cim")
    assert result.returncode == 1
    assert "cannot connect to PostgreSQL at postgresql://twin@127.0.0.1:" in result.stderr
    assert "s3cret" not in result.stderr and "Traceback" not in result.stderr


def _live_city(root: Path, tmp_path: Path, pipe_spec: Path) -> City:
    """A GeoPackage city with a DEM, pipes, sensors, observations in two months, statuses and events."""
    city = City.init(root, "EPSG:4549")
    city.ingest(write_dem(tmp_path / "dem.tif"), "dem")
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(4)), "pipe", spec=pipe_spec)
    sensors = [{"geometry": point(YANTAI_X + 10 * i, YANTAI_Y), "properties": {"sensor_id": f"S-{i}",
                                                                              "property": "pressure", "unit": "MPa"}}
               for i in range(3)]
    city.ingest(write_geojson(tmp_path / "s.geojson", sensors), "sensor")
    jan = 1_767_225_600_000
    rows = [ObservationRow(f"S-{i % 3}", jan + k * 86_400_000, 0.1 * k, None) for i, k in enumerate(range(40))]

    def alarm(readings, statuses):
        return [StatusChange("sensor", f"sensor.{sid}", "alarm" if r.value > 2 else "normal", sid, r.value)
                for sid, r in readings.items()]

    city.store.append_observations(rows[:20], assess=alarm, counts={"bad_value": 2})
    city.store.append_observations(rows[20:], assess=alarm)
    return city


def _everything(city: City) -> dict:
    store = city.store
    return {"layers": {r.name: (r.kind, r.feature_count, r.version, r.bounds, r.notes) for r in store.layers()},
            "features": {r.name: store.read_features(r.name) for r in store.layers() if r.kind != "dem"},
            "dem": store.raster_path("dem").read_bytes(), "latest": store.latest(),
            "history": [store.history(f"S-{i}") for i in range(3)], "statuses": store.statuses(),
            "events": store.events_since(0), "last_event": store.last_event_id(), "counts": store.ingest_counts()}


def _assert_same(a: dict, b: dict) -> None:
    for name in a["features"]:
        pd.testing.assert_frame_equal(a["features"][name], b["features"][name])
    assert {k: v for k, v in a.items() if k != "features"} == {k: v for k, v in b.items() if k != "features"}


def test_export_moves_a_city_into_postgis_and_back_with_every_count_checked(tmp_path, postgis_url, pipe_spec):
    from twin.indicators import ModelData

    city = _live_city(tmp_path / "city", tmp_path, pipe_spec)
    before = _everything(city)
    sums = ModelData.from_city(city).line_lengths("pipe", "test")
    assert len(before["events"]) >= 3 and before["counts"]["bad_value"] == 2
    url = fresh_schema_url(postgis_url)
    moved = run("export", city.root, "--to", url)
    assert moved.returncode == 0, moved.stderr
    assert "counts match" in moved.stdout and "40 observations" in moved.stdout
    in_postgis = City.open(city.root)
    assert in_postgis.config.store.startswith("postgresql://")
    _assert_same(before, _everything(in_postgis))
    assert sums and ModelData.from_city(in_postgis).line_lengths("pipe", "test") == sums, \
        "the PostGIS copy sums the pipes as the GeoPackage did"
    ground = run("ground", city.root, YANTAI_X, YANTAI_Y)
    assert ground.returncode == 0 and float(ground.stdout) == pytest.approx(105.0, abs=0.01)
    # later writes go to PostGIS, and the ids and versions carry on
    in_postgis.ingest(write_geojson(tmp_path / "q.geojson", pipe_features(5)), "pipe", spec=pipe_spec)
    assert in_postgis.layer("pipe").version == before["layers"]["pipe"][2] + 1
    after = _everything(in_postgis)

    refused = run("export", city.root, "--to", "city.gpkg")
    assert refused.returncode == 1 and "exists" in refused.stderr and "--overwrite" in refused.stderr
    back = run("export", city.root, "--to", "city.gpkg", "--overwrite")
    assert back.returncode == 0, back.stderr
    assert City.open(city.root).config.store == "geopackage:city.gpkg"
    _assert_same(after, _everything(City.open(city.root)))


def test_export_refuses_a_copy_whose_counts_differ_and_keeps_the_old_store(tmp_path, postgis_url, pipe_spec,
                                                                           monkeypatch):
    from twin.store.postgis import PostgisStore
    from twin.transfer import export_city

    city = _live_city(tmp_path / "city", tmp_path, pipe_spec)
    write_live = PostgisStore.write_live
    monkeypatch.setattr(PostgisStore, "write_live",
                        lambda self, name, rows: write_live(self, name, rows[:-1] if name == "latest" else rows))
    with pytest.raises(StoreError, match=r"does not match .*latest: 3 -> 2; city.json still names geopackage:"):
        export_city(city, fresh_schema_url(postgis_url))
    assert City.open(city.root).config.store == "geopackage:city.gpkg"


def test_export_into_a_schema_that_holds_a_city_is_refused(tmp_path, postgis_url, pipe_spec):
    url = fresh_schema_url(postgis_url)
    other = City.init(tmp_path / "other", "EPSG:4549", store=url)
    other.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe", spec=pipe_spec)
    city = City.init(tmp_path / "city", "EPSG:4549")
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(2)), "pipe", spec=pipe_spec)
    result = run("export", city.root, "--to", url)
    assert result.returncode == 1 and "is not empty" in result.stderr
    assert City.open(city.root).config.store == "geopackage:city.gpkg"
    assert len(other.features("pipe")) == 1
