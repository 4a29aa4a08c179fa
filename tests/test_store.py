"""The stores (GeoPackage and PostGIS): a layer is swapped in whole or not at all, even if the
writer is killed; both give the same answers."""

from __future__ import annotations

import json
import os
import re
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

from conftest import YANTAI_X, YANTAI_Y, both_backends, pipe_features, write_geojson
from twin.errors import UnknownLayer
from twin.store import Store
from twin.workspace import City


def feature_tables(city: City) -> set[str]:
    """The tables of a city's store that are not twin's own bookkeeping."""
    if city.config.store.startswith("geopackage:"):
        return {str(n) for n, _ in pyogrio.list_layers(city.root / "city.gpkg")} - {"twin_layers"}
    with city.store._connection() as conn:
        rows = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [city.store.schema]).fetchall()
    return {r[0] for r in rows if not r[0].startswith("twin_")}


@both_backends
def test_each_store_satisfies_the_store_protocol(city):
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


@both_backends
def test_unknown_layer_names_the_layers_there_are(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe")
    with pytest.raises(UnknownLayer, match=r"no layer 'pipes'.*\['pipe'\]"):
        city.features("pipes")


@both_backends
def test_bbox_reads_only_the_features_within(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(5)), "pipe")
    got = city.features("pipe", bbox=(YANTAI_X - 1, YANTAI_Y + 15, YANTAI_X + 200, YANTAI_Y + 25))
    assert got["uid"].tolist() == ["pipe.3"]


@both_backends
def test_delete_layer(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe")
    city.delete("pipe")
    assert city.layers() == []
    assert "pipe_v1" not in feature_tables(city)


def _writing_pipe_v2(city: City) -> bool:
    """Whether an ingest is part way through writing version 2 of the pipe layer."""
    if city.config.store.startswith("geopackage:"):
        with sqlite3.connect(city.root / "city.gpkg", timeout=30) as conn:
            return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'pipe_v2'").fetchone() is not None
    # the new table is invisible until its transaction commits: watch the COPY into it instead
    with city.store._connection() as conn:
        row = conn.execute("SELECT tuples_processed FROM pg_stat_progress_copy p JOIN pg_stat_activity a "
                           "USING (pid) WHERE a.query LIKE %s", [f'%{city.store.schema}"."pipe_v2"%']).fetchone()
    return row is not None and row[0] > 0


def _big_pipe_file(path: Path, n: int) -> Path:
    x = YANTAI_X + np.arange(n) % 1000 * 3.0
    y = YANTAI_Y + np.arange(n) // 1000 * 3.0
    frame = gpd.GeoDataFrame({"code": [f"P{i}" for i in range(n)], "depth_m": np.full(n, 1.2)},
                             geometry=shapely.linestrings(np.stack([np.column_stack([x, y]),
                                                                    np.column_stack([x + 2, y])], axis=1)),
                             crs="EPSG:4549")
    frame.to_file(path, driver="FlatGeobuf")
    return path


@both_backends
def test_killing_an_ingest_midway_leaves_the_old_layer_intact(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "small.geojson", pipe_features(3)), "pipe")
    before = city.features("pipe")
    big = _big_pipe_file(tmp_path / "big.fgb", 600_000)
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "ingest", str(city.root), str(big), "--kind", "pipe"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    started = False
    while time.monotonic() < deadline and proc.poll() is None:
        started = _writing_pipe_v2(city)
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
    assert feature_tables(reopened) == {"pipe_v2"}


@both_backends
def test_a_layer_mixing_single_and_multi_lines_is_stored_as_multi(city, tmp_path):
    features = pipe_features(2)
    features[1]["geometry"] = {"type": "MultiLineString", "coordinates": [
        [[YANTAI_X, YANTAI_Y], [YANTAI_X + 5, YANTAI_Y]], [[YANTAI_X + 9, YANTAI_Y], [YANTAI_X + 12, YANTAI_Y]]]}
    city.ingest(write_geojson(tmp_path / "mixed.geojson", features), "pipe")
    assert set(city.features("pipe").geom_type) == {"MultiLineString"}
    got = city.features("pipe")
    assert got.length.tolist() == pytest.approx([100.0, 8.0])


@both_backends
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


@both_backends
def test_a_deleted_and_recreated_layer_keeps_counting_versions(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(2)), "pipe")
    city.delete("pipe")
    record = city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(2)), "pipe")
    assert record.version == 3


@both_backends
def test_layers_whose_names_differ_only_in_punctuation_keep_their_own_tables(city, tmp_path):
    sizes = {"a-b": 2, "a_b": 3, "a b": 4}
    for extra in (0, 3):  # each layer ingested, then replaced
        for layer, n in sizes.items():
            city.ingest(write_geojson(tmp_path / f"{n + extra}.geojson", pipe_features(n + extra)), "pipe", layer=layer)
    assert {layer: len(city.features(layer)) for layer in sizes} == {"a-b": 5, "a_b": 6, "a b": 7}
    assert feature_tables(city) == {city.layer(layer).table for layer in sizes}
    city.delete("a-b")
    assert {layer: len(city.features(layer)) for layer in ("a_b", "a b")} == {"a_b": 6, "a b": 7}
    assert feature_tables(city) == {city.layer("a_b").table, city.layer("a b").table}


def _old_table_name(layer: str, version: int) -> str:
    """How twins before `twin.store.table_name` named a version's table (`a-b` and `a_b` alike)."""
    return f"{re.sub(r'[^0-9A-Za-z_]', '_', layer)}_v{version}"


def _leave_table(city: City, table: str) -> None:
    """A feature table no catalogue row points at, as a crashed ingest (or an older twin) leaves it."""
    if city.config.store.startswith("geopackage:"):
        frame = gpd.GeoDataFrame(geometry=[shapely.Point(YANTAI_X, YANTAI_Y)], crs="EPSG:4549")
        pyogrio.write_dataframe(frame, city.root / "city.gpkg", layer=table)
        return
    with city.store._connection() as conn:
        conn.execute(f'CREATE TABLE "{city.store.schema}"."{table}" (fid bigint)')


@both_backends
def test_a_city_from_an_older_twin_keeps_its_tables_until_their_own_layer_moves_on(city, tmp_path, backend,
                                                                                    monkeypatch):
    store_module = "twin.store.geopackage" if backend == "gpkg" else "twin.store.postgis"
    with monkeypatch.context() as patched:
        patched.setattr(f"{store_module}.table_name", _old_table_name)
        city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(2)), "pipe", layer="a-b")
    assert city.layer("a-b").table == "a_b_v1"
    # version 1 of a_b would be named a_b_v1 too: it skips to a name no layer holds
    city.ingest(write_geojson(tmp_path / "b.geojson", pipe_features(3)), "pipe", layer="a_b")
    assert city.layer("a_b").table == "a_b_v2"
    assert (len(city.features("a-b")), len(city.features("a_b"))) == (2, 3)
    _leave_table(city, "a_b_v7")
    # a-b moves to its own name; its old table and the leftover go, a_b's table stays
    city.ingest(write_geojson(tmp_path / "c.geojson", pipe_features(4)), "pipe", layer="a-b")
    assert (len(city.features("a-b")), len(city.features("a_b"))) == (4, 3)
    assert feature_tables(city) == {city.layer("a-b").table, "a_b_v2"}
    city.delete("a_b")
    assert len(city.features("a-b")) == 4


# -- PostGIS beside GeoPackage -------------------------------------------------------------------

def _frame_of_every_type(n: int = 4) -> gpd.GeoDataFrame:
    import datetime

    import pandas as pd

    return gpd.GeoDataFrame({
        "uid": [f"x.{i}" for i in range(n)], "count": np.arange(n), "maybe": pd.array([1, None] * (n // 2), "Int64"),
        "ratio": [0.5, np.nan] * (n // 2), "flag": [True, False] * (n // 2), "smart": pd.array([True, None] * (n // 2),
                                                                                               "boolean"),
        "名称": ["甲", None] * (n // 2), "empty": [None] * n, "small": np.arange(n, dtype="int16"),
        "f32": np.arange(n, dtype="float32"), "when": pd.to_datetime(["2020-01-01T10:00"] * n),
        "when_utc": pd.to_datetime(["2021-05-03T00:00Z"] * n), "day": [datetime.date(2020, 1, 2)] * n,
        "kind": pd.Categorical(["a", "b"] * (n // 2)),
        "a_very_long_column_name_that_postgresql_would_cut_at_sixty_three_bytes": np.arange(n)},
        geometry=shapely.points(np.arange(n) + YANTAI_X, np.full(n, YANTAI_Y), np.arange(n)), crs="EPSG:4549")


def test_both_stores_read_back_the_same_frame_with_the_same_dtypes(tmp_path, postgis_url):
    import pandas as pd

    from conftest import fresh_schema_url
    from twin.store import LayerRecord

    frame = _frame_of_every_type()
    gpkg = City.init(tmp_path / "g", "EPSG:4549")
    pg = City.init(tmp_path / "p", "EPSG:4549", store=fresh_schema_url(postgis_url))
    for c in (gpkg, pg):
        c.store.replace_features(LayerRecord("x", "lamp", "EPSG:4549"), frame.copy())
    a, b = gpkg.store.read_features("x"), pg.store.read_features("x")
    pd.testing.assert_frame_equal(a, b)
    box = (YANTAI_X + 0.5, YANTAI_Y - 1, YANTAI_X + 2.5, YANTAI_Y + 1)
    pd.testing.assert_frame_equal(gpkg.store.read_features("x", bbox=box), pg.store.read_features("x", bbox=box))
    pd.testing.assert_frame_equal(gpkg.store.read_features("x", columns=["uid", "ratio"]),
                                  pg.store.read_features("x", columns=["uid", "ratio"]))


def test_a_postgis_city_has_its_schema_migrations_a_gist_index_and_a_typed_geometry(tmp_path, postgis_url):
    from conftest import fresh_schema_url
    from twin.store.postgis import MIGRATIONS

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
    schema = city.store.schema
    assert json.loads((city.root / "city.json").read_text())["store"] == city.store.url
    with city.store._connection() as conn:
        versions = [r[0] for r in conn.execute(f'SELECT version FROM "{schema}".twin_schema_migrations')]
        indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND "
                                              "tablename = 'pipe_v1'", [schema])]
        column = conn.execute("SELECT type, srid FROM geometry_columns WHERE f_table_schema = %s AND "
                              "f_table_name = 'pipe_v1'", [schema]).fetchone()
        partitioned = conn.execute("SELECT partstrat FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid "
                                   "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND "
                                   "c.relname = 'twin_observations'", [schema]).fetchone()
    assert versions == [m[0] for m in MIGRATIONS]
    assert any("USING gist (geom)" in d for d in indexes)
    assert any("USING btree (uid)" in d for d in indexes), "features are looked up by uid"
    assert column == ("LINESTRING", 4549)
    assert partitioned == ("r",), "observations are range-partitioned by time"
    # opening it again migrates nothing and keeps the layers
    assert City.open(city.root).layer("pipe").feature_count == 3


def _line_lengths(city: City) -> dict[str, float]:
    with city.store._connection() as conn:
        rows = conn.execute(f'SELECT table_name, sum(length_m) FROM "{city.store.schema}".twin_line_lengths '
                            f'GROUP BY table_name').fetchall()
    return {table: total for table, total in rows}


def test_a_postgis_layer_version_keeps_its_length_sums_until_it_is_replaced_or_deleted(tmp_path, postgis_url):
    from conftest import fresh_schema_url

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
    city.ingest(write_geojson(tmp_path / "l.geojson", [{"geometry": {"type": "Point", "coordinates": [YANTAI_X,
                                                                                                    YANTAI_Y]}}]),
                "lamp")
    assert _line_lengths(city) == {"pipe_v1": pytest.approx(300.0)}, "lines only"
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(5)), "pipe")
    assert _line_lengths(city) == {"pipe_v2": pytest.approx(500.0)}
    city.delete("pipe")
    assert _line_lengths(city) == {}


def test_a_postgis_city_from_before_the_sums_gets_their_table_and_reads_its_pipes_until_they_are_written_again(
        tmp_path, postgis_url):
    from conftest import fresh_schema_url
    from twin.indicators import ModelData
    from twin.store import postgis

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
    uid = city.features("pipe")["uid"].iloc[1]
    schema = city.store.schema
    with city.store._connection() as conn:  # as a twin before migration 2 left it
        conn.execute(f'DROP TABLE "{schema}".twin_line_lengths')
        conn.execute(f'DELETE FROM "{schema}".twin_schema_migrations WHERE version >= 2')
        for (index,) in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = "
                                     "'pipe_v1' AND indexdef LIKE '%%(uid)'", [schema]).fetchall():
            conn.execute(f'DROP INDEX "{schema}"."{index}"')
    postgis._READY.clear()  # as a new process would, check the schema's migrations again
    old = City.open(city.root)
    with old.store._connection() as conn:
        versions = [r[0] for r in conn.execute(f'SELECT version FROM "{schema}".twin_schema_migrations')]
    assert versions == [m[0] for m in postgis.MIGRATIONS]
    data = ModelData.from_city(old)
    assert data.line_lengths("pipe", "test") is None and data.look_up("pipe", "test", ["uid"], uids=[uid]) is None, \
        "no sums, no uid index: the indicators read the pipes"
    old.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
    data = ModelData.from_city(old)
    assert sum(row.length_m for row in data.line_lengths("pipe", "test")) == pytest.approx(300.0)
    assert data.look_up("pipe", "test", ["uid"], uids=[uid]).frame["uid"].tolist() == [uid]


def test_observations_land_in_monthly_partitions_made_on_demand(tmp_path, postgis_url):
    from conftest import fresh_schema_url
    from twin.store import ObservationRow

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    jan, feb = 1_767_225_600_000, 1_769_904_000_000  # 2026-01-01 and 2026-02-01, UTC
    result = city.store.append_observations([ObservationRow("S-1", jan + 1, 1.0), ObservationRow("S-1", feb - 1, 2.0),
                                             ObservationRow("S-1", feb, 3.0), ObservationRow("S-1", feb, 9.0)])
    assert (result.stored, result.duplicates) == (3, 1)
    with city.store._connection() as conn:
        parts = dict(conn.execute(f'SELECT tableoid::regclass::text, COUNT(*) FROM "{city.store.schema}".'
                                  f'twin_observations GROUP BY 1').fetchall())
    assert sorted(parts.values()) == [1, 2] and all("2026_0" in name for name in parts)
    assert city.store.latest() == [("S-1", feb, 3.0, None)]


def test_a_reader_gets_the_old_version_while_a_writer_is_part_way(tmp_path, postgis_url):
    import threading

    from conftest import fresh_schema_url

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
    halfway, finish = threading.Event(), threading.Event()

    def slow_progress(description, total):
        def advance(n):
            halfway.set()
            assert finish.wait(30)
        return advance

    writer = threading.Thread(target=city.ingest, args=(write_geojson(tmp_path / "q.geojson", pipe_features(5)), "pipe"),
                              kwargs={"progress": slow_progress})
    writer.start()
    try:
        assert halfway.wait(30)
        started = time.monotonic()
        seen = City.open(city.root).features("pipe")
        assert len(seen) == 3 and time.monotonic() - started < 5, "the reader neither waits nor sees the new rows"
    finally:
        finish.set()
        writer.join(30)
    assert len(city.features("pipe")) == 5 and city.layer("pipe").version == 2


def test_concurrent_writers_of_one_layer_queue_and_get_their_own_versions(tmp_path, postgis_url):
    from concurrent.futures import ThreadPoolExecutor

    from conftest import fresh_schema_url

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    files = [write_geojson(tmp_path / f"p{n}.geojson", pipe_features(n)) for n in range(1, 5)]
    with ThreadPoolExecutor(4) as pool:
        records = list(pool.map(lambda f: City.open(city.root).ingest(f, "pipe"), files))
    assert sorted(r.version for r in records) == [1, 2, 3, 4]
    last = max(records, key=lambda r: r.version)
    assert len(city.features("pipe")) == last.feature_count
    assert feature_tables(city) == {f"pipe_v{last.version}"}


@pytest.mark.parametrize("case", ["server_down", "no_database", "bad_schema", "unknown_scheme"])
def test_a_store_url_that_does_not_work_is_refused_naming_it_without_the_password(tmp_path, postgis_url, case):
    from urllib.parse import urlsplit

    from conftest import free_port
    from twin.errors import StoreError

    parts = urlsplit(postgis_url)
    url, message = {
        "server_down": (f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/twin", "cannot connect"),
        "no_database": (f"postgresql://postgres:s3cret@{parts.hostname}:{parts.port}/no_such_db",
                        'database "no_such_db" does not exist'),
        "bad_schema": (f"{postgis_url}?schema=bad-name;drop", "is not a plain name"),
        "unknown_scheme": ("mysql://postgres:s3cret@127.0.0.1/twin", "unknown store"),
    }[case]
    with pytest.raises((StoreError, ValueError)) as info:
        City.init(tmp_path / "c", "EPSG:4549", store=url)
    assert message in str(info.value)
    assert "s3cret" not in str(info.value) and "127.0.0.1" in str(info.value)
    assert not (tmp_path / "c" / "city.json").exists()


def test_a_database_without_postgis_and_a_user_who_may_not_add_it_is_explained(tmp_path, postgis_url):
    import psycopg

    from twin.errors import StoreError

    with psycopg.connect(postgis_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS plain_db")
        conn.execute("DROP ROLE IF EXISTS plain_user")
        conn.execute("CREATE ROLE plain_user LOGIN")
        conn.execute("CREATE DATABASE plain_db")
    parts = postgis_url.split("@", 1)[1].rsplit("/", 1)[0]
    with pytest.raises(StoreError, match=r"PostGIS is not enabled in database 'plain_db' at postgresql://plain_user@"
                                         r".*CREATE EXTENSION postgis"):
        City.init(tmp_path / "c", "EPSG:4549", store=f"postgresql://plain_user@{parts}/plain_db")


def test_a_user_who_may_only_read_opens_the_city_and_reads_it(tmp_path, postgis_url, pipe_spec):
    import psycopg

    from conftest import fresh_schema_url
    from twin.errors import StoreError

    city = City.init(tmp_path / "c", "EPSG:4549", store=fresh_schema_url(postgis_url))
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe", spec=pipe_spec)
    schema = city.store.schema
    with psycopg.connect(postgis_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS reader_user")
        conn.execute("CREATE ROLE reader_user LOGIN")
        conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO reader_user')
        conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{schema}" TO reader_user')
    config = json.loads((city.root / "city.json").read_text())
    config["store"] = config["store"].replace("postgres@", "reader_user@")
    (city.root / "city.json").write_text(json.dumps(config))
    reader = City.open(city.root)
    assert reader.features("pipe")["uid"].tolist() == ["pipe.WS-000", "pipe.WS-001", "pipe.WS-002"]
    assert reader.store.latest() == [] and reader.store.changes("pipe", 0) == [(1, None)]
    with pytest.raises(StoreError, match="permission denied"):
        reader.ingest(write_geojson(tmp_path / "q.geojson", pipe_features(4)), "pipe", spec=pipe_spec)
    assert len(reader.features("pipe")) == 3


def test_a_database_that_goes_away_is_a_503_naming_it_and_the_server_keeps_running(tmp_path):
    import httpx

    from conftest import Server
    from twin.store.pgcluster import throwaway_cluster

    with throwaway_cluster() as pg:
        city = City.init(tmp_path / "c", "EPSG:4549", store=f"{pg.url}?schema=gone")
        city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(3)), "pipe")
        server = Server(city.root, env={"TWIN_DISK_CACHE": "false"})
        assert httpx.get(f"{server.url}/collections/pipe/items", timeout=30).status_code == 200
    try:  # the cluster is stopped and removed now
        time.sleep(0.5)  # past the catalogue's TTL
        started = time.monotonic()
        response = httpx.get(f"{server.url}/collections", timeout=60)
        assert response.status_code == 503, response.text
        assert time.monotonic() - started < 30, "within the pool's wait, not a hang"
        assert f"127.0.0.1:{pg.port}" in response.json()["description"]
        assert httpx.get(f"{server.url}/conformance", timeout=30).status_code == 200
    finally:
        server.close()
