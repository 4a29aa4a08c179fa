"""The GeoPackage store: a layer is swapped in whole or not at all, even if the writer is killed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyogrio
import pytest
import shapely

from conftest import YANTAI_X, YANTAI_Y, pipe_features, write_geojson
from twin.errors import UnknownLayer
from twin.store import Store
from twin.workspace import City


def test_geopackage_store_satisfies_the_store_protocol(city):
    assert isinstance(city.store, Store)


def test_city_gpkg_is_a_real_geopackage_that_gdal_opens(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
    path = city.root / "city.gpkg"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    layers = {str(name): str(kind) for name, kind in pyogrio.list_layers(path)}
    assert "twin_layers" in layers and "pipe_v1" in layers
    info = pyogrio.read_info(path, layer="pipe_v1")
    assert info["crs"] == "EPSG:4549" and info["features"] == 3


def test_unknown_layer_names_the_layers_there_are(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe")
    with pytest.raises(UnknownLayer, match=r"no layer 'pipes'.*\['pipe'\]"):
        city.features("pipes")


def test_bbox_reads_only_the_features_within(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(5)), "pipe")
    got = city.features("pipe", bbox=(YANTAI_X - 1, YANTAI_Y + 15, YANTAI_X + 200, YANTAI_Y + 25))
    assert got["uid"].tolist() == ["pipe.3"]


def test_delete_layer(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe")
    city.delete("pipe")
    assert city.layers() == []
    assert "pipe_v1" not in {str(n) for n, _ in pyogrio.list_layers(city.root / "city.gpkg")}


def _big_pipe_file(path: Path, n: int) -> Path:
    x = YANTAI_X + np.arange(n) % 1000 * 3.0
    y = YANTAI_Y + np.arange(n) // 1000 * 3.0
    frame = gpd.GeoDataFrame({"code": [f"P{i}" for i in range(n)], "depth_m": np.full(n, 1.2)},
                             geometry=shapely.linestrings(np.stack([np.column_stack([x, y]),
                                                                    np.column_stack([x + 2, y])], axis=1)),
                             crs="EPSG:4549")
    frame.to_file(path, driver="FlatGeobuf")
    return path


def test_killing_an_ingest_midway_leaves_the_old_layer_intact(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "small.geojson", pipe_features(3)), "pipe")
    before = city.features("pipe")
    big = _big_pipe_file(tmp_path / "big.fgb", 600_000)
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "ingest", str(city.root), str(big), "--kind", "pipe"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    gpkg = city.root / "city.gpkg"
    deadline = time.monotonic() + 120
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        with sqlite3.connect(gpkg, timeout=30) as conn:
            started = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'pipe_v2'").fetchone() is not None
        if started:
            break
        time.sleep(0.05)
    assert started and proc.poll() is None, "the ingest should still be writing pipe_v2"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    reopened = City.open(city.root)
    assert reopened.layer("pipe").feature_count == 3
    after = reopened.features("pipe")
    assert after.drop(columns="geometry").equals(before.drop(columns="geometry"))
    # the next ingest cleans up the half-written table and succeeds
    record = reopened.ingest(write_geojson(tmp_path / "next.geojson", pipe_features(4)), "pipe")
    assert record.version == 2 and len(reopened.features("pipe")) == 4
    tables = {str(n) for n, _ in pyogrio.list_layers(gpkg)}
    assert tables == {"twin_layers", "pipe_v2"}


def test_a_layer_mixing_single_and_multi_lines_is_stored_as_multi(city, tmp_path):
    features = pipe_features(2)
    features[1]["geometry"] = {"type": "MultiLineString", "coordinates": [
        [[YANTAI_X, YANTAI_Y], [YANTAI_X + 5, YANTAI_Y]], [[YANTAI_X + 9, YANTAI_Y], [YANTAI_X + 12, YANTAI_Y]]]}
    city.ingest(write_geojson(tmp_path / "mixed.geojson", features), "pipe")
    assert pyogrio.read_info(city.root / "city.gpkg", layer="pipe_v1")["geometry_type"] == "MultiLineString"
    got = city.features("pipe")
    assert got.length.tolist() == pytest.approx([100.0, 8.0])


def test_an_ingest_records_where_the_layer_changed(city, tmp_path):
    features = pipe_features(5)
    city.ingest(write_geojson(tmp_path / "a.geojson", features), "pipe")
    assert city.store.changes("pipe", 0) == [(1, None)]
    features[3]["properties"]["管径"] = 999  # one pipe's attribute
    features[4]["geometry"]["coordinates"][1][0] += 50  # another pipe lengthened
    city.ingest(write_geojson(tmp_path / "b.geojson", features), "pipe")
    (version, boxes), = city.store.changes("pipe", 1)
    assert version == 2
    boxes = np.array(boxes)
    covered = (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())
    assert covered == pytest.approx((YANTAI_X, YANTAI_Y + 30, YANTAI_X + 150, YANTAI_Y + 40))
    city.ingest(write_geojson(tmp_path / "b.geojson", features), "pipe")
    assert city.store.changes("pipe", 2) == [(3, [])], "the same file again changes nothing"


def test_a_deleted_and_recreated_layer_keeps_counting_versions(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(2)), "pipe")
    city.delete("pipe")
    record = city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(2)), "pipe")
    assert record.version == 3
