"""The embedded store: one GeoPackage with a layer catalogue, rasters as COGs beside it.

Each layer's features live in a table ``<layer>_v<version>`` (`twin.store.table_name`); the
catalogue row names the current one. A new version is written in full by GDAL (pyogrio) first,
then one SQLite transaction points the catalogue at it and drops the old table, so readers never
see a half-written layer and a failed ingest leaves the previous version in place. A table that a
catalogue row points at is never dropped.

Sensor observations, the latest reading per sensor, feature statuses and status events
live in ``city.live.sqlite`` beside the GeoPackage (see `GeoPackageStore._observations`).
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import pyarrow as pa
import pyogrio

from twin.errors import StoreError, UnknownLayer
from twin.store import (
    CATALOGUE_COLUMNS,
    AppendResult,
    Assess,
    Bounds,
    HistoryBucket,
    LayerRecord,
    ObservationRow,
    Progress,
    Reading,
    StatusChange,
    advance_latest,
    event_from_row,
    free_version,
    table_name,
    uniform_geometries,
    version_tables,
)
from twin.store.measures import FLAG_COUNTS, LINE_LENGTHS, flag_counts, line_lengths

__all__ = ["GeoPackageStore"]

CATALOGUE = "twin_layers"
CHANGES = "twin_changes"
OBSERVATIONS = "twin_observations"
LATEST = "twin_latest"
STATUS = "twin_status"
EVENTS = "twin_events"
COUNTS = "twin_ingest_counts"

# Observations clustered by (sensor, time): the key makes a repeated reading a no-op and
# serves a sensor's history as one range scan.
_OBSERVATION_TABLES = f"""
CREATE TABLE IF NOT EXISTS {OBSERVATIONS} (sensor_id TEXT NOT NULL, time INTEGER NOT NULL, value REAL NOT NULL,
  quality TEXT, PRIMARY KEY (sensor_id, time)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {LATEST} (sensor_id TEXT PRIMARY KEY, time INTEGER NOT NULL, value REAL NOT NULL,
  quality TEXT);
CREATE TABLE IF NOT EXISTS {STATUS} (layer TEXT NOT NULL, uid TEXT NOT NULL, status TEXT NOT NULL,
  since TEXT NOT NULL, sensor TEXT, value REAL, PRIMARY KEY (layer, uid)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS {EVENTS} (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL,
  layer TEXT NOT NULL, uid TEXT NOT NULL, status TEXT NOT NULL, previous TEXT, sensor TEXT, value REAL);
CREATE TABLE IF NOT EXISTS {COUNTS} (outcome TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""
WRITE_BATCH = 131_072
# What twin.store.measures keeps beside each layer version, by table (after its table_name).
_MEASURE_COLUMNS = {
    LINE_LENGTHS: "by_column TEXT, value TEXT, segments INTEGER NOT NULL, length_m REAL NOT NULL",
    FLAG_COUNTS: "flags TEXT NOT NULL, count INTEGER NOT NULL",
}
# The live tables by the names `Store.read_live` knows: (table, columns, key order).
_LIVE_TABLES = {
    "observations": (OBSERVATIONS, ("sensor_id", "time", "value", "quality"), "sensor_id, time"),
    "latest": (LATEST, ("sensor_id", "time", "value", "quality"), "sensor_id"),
    "status": (STATUS, ("layer", "uid", "status", "since", "sensor", "value"), "layer, uid"),
    "events": (EVENTS, ("id", "time", "layer", "uid", "status", "previous", "sensor", "value"), "id"),
    "counts": (COUNTS, ("outcome", "count"), "outcome"),
}

# The minimal GeoPackage 1.3 a fresh city starts from (GDAL adds its own tables on first write).
_GPKG_INIT = """
PRAGMA application_id = 1196444487;
PRAGMA user_version = 10300;
CREATE TABLE IF NOT EXISTS gpkg_spatial_ref_sys (
  srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY, organization TEXT NOT NULL,
  organization_coordsys_id INTEGER NOT NULL, definition TEXT NOT NULL, description TEXT);
INSERT OR IGNORE INTO gpkg_spatial_ref_sys VALUES
  ('Undefined cartesian SRS', -1, 'NONE', -1, 'undefined', 'undefined cartesian coordinate reference system'),
  ('Undefined geographic SRS', 0, 'NONE', 0, 'undefined', 'undefined geographic coordinate reference system'),
  ('WGS 84 geodetic', 4326, 'EPSG', 4326, 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]],AUTHORITY["EPSG","6326"]],PRIMEM["Greenwich",0,AUTHORITY["EPSG","8901"]],UNIT["degree",0.0174532925199433,AUTHORITY["EPSG","9122"]],AXIS["Latitude",NORTH],AXIS["Longitude",EAST],AUTHORITY["EPSG","4326"]]', 'longitude/latitude coordinates in decimal degrees on the WGS 84 spheroid');
CREATE TABLE IF NOT EXISTS gpkg_contents (
  table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL, identifier TEXT UNIQUE, description TEXT DEFAULT '',
  last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
  CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
CREATE TABLE IF NOT EXISTS gpkg_geometry_columns (
  table_name TEXT NOT NULL, column_name TEXT NOT NULL, geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL,
  z TINYINT NOT NULL, m TINYINT NOT NULL,
  CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name),
  CONSTRAINT fk_gc_tn FOREIGN KEY (table_name) REFERENCES gpkg_contents(table_name),
  CONSTRAINT fk_gc_srs FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys (srs_id));
"""


class _Readers:
    """The pooled read-only connections to one GeoPackage (one per thread), and the guard that
    closes them all while GDAL writes to it (see `gdal_writing`)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.in_use = 0
        self.writing = 0
        self.connections: dict[int, sqlite3.Connection] = {}


class ReaderConnection(sqlite3.Connection):
    """A pooled reader; `serial` tells it from a later one that may reuse its memory (and its id())."""

    serial: int = 0
    file: tuple[int, int] = (0, 0)  # the (device, inode) it opened


_READERS: dict[str, _Readers] = {}
_SERIALS = itertools.count(1)
_READERS_LOCK = threading.Lock()


def _readers(path: Path | str) -> tuple[str, _Readers]:
    key = os.path.abspath(path)
    with _READERS_LOCK:
        return key, _READERS.setdefault(key, _Readers())


@contextmanager
def pooled_reader(path: Path | str) -> Iterator[ReaderConnection]:
    """A read-only connection to a GeoPackage, this thread's, kept open between uses.

    Opening one costs more than counting a few thousand rows (SQLite parses the schema of
    every layer table, R-tree and trigger first), so it is pooled like a database
    connection; SQLite sees other processes' commits and schema changes on the next query.
    A file replaced by another (`twin export --to city.gpkg --overwrite`) is opened afresh.
    """
    key, readers = _readers(path)
    with readers.changed:
        readers.changed.wait_for(lambda: not readers.writing)
        readers.in_use += 1
        conn = readers.connections.get(threading.get_ident())
    try:
        stat = os.stat(key)
        if conn is not None and conn.file != (stat.st_dev, stat.st_ino):
            conn.close()
            conn = None
        if conn is None:
            conn = sqlite3.connect(f"file:{key}?mode=ro", uri=True, timeout=60, check_same_thread=False,
                                   factory=ReaderConnection)
            conn.serial = next(_SERIALS)
            conn.file = (stat.st_dev, stat.st_ino)
            # read the file through the page cache's map rather than copying pages, and keep a database
            # server's worth of them (256 MB, PostgreSQL's shared_buffers in bench/postgis_cluster.py)
            conn.execute("PRAGMA mmap_size = 1073741824")
            conn.execute("PRAGMA cache_size = -262144")
            with readers.changed:
                readers.connections[threading.get_ident()] = conn
        yield conn
    finally:
        with readers.changed:
            readers.in_use -= 1
            readers.changed.notify_all()


@contextmanager
def gdal_writing(path: Path | str) -> Iterator[None]:
    """Around every GDAL (pyogrio) write to a city's GeoPackage from this process.

    GDAL carries its own SQLite, and POSIX locks of one process never conflict, so when
    GDAL closes the file after writing, its SQLite believes it was the only connection and
    removes the -wal and -shm files from under the connections Python's SQLite keeps open;
    their next query fails with "disk I/O error". So the pooled readers wait, and are closed.
    """
    _, readers = _readers(path)
    with readers.changed:
        readers.writing += 1
        readers.changed.wait_for(lambda: readers.in_use == 0)
        for conn in readers.connections.values():
            conn.close()
        readers.connections.clear()
    try:
        yield
    finally:
        with readers.changed:
            readers.writing -= 1
            readers.changed.notify_all()


class GeoPackageStore:
    """A city's layers in one GeoPackage file, rasters as files beside it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.url = f"geopackage:{self.path.name}"
        self.root = self.path.parent
        self._observations_ready = False
        self._local = threading.local()
        if not self.path.exists():
            self._create()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def _create(self) -> None:
        columns = ", ".join(f'"{name}" {decl}' for name, decl in CATALOGUE_COLUMNS.items())
        with closing(self._connect()) as conn:
            conn.executescript(_GPKG_INIT)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {CATALOGUE} ({columns})")
            conn.execute(f"CREATE TABLE IF NOT EXISTS {CHANGES} (layer TEXT NOT NULL, version INTEGER NOT NULL, "
                         f"bounds TEXT, PRIMARY KEY (layer, version))")
            conn.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, description) "
                         "VALUES (?, 'attributes', ?, 'twin layer catalogue')", (CATALOGUE, CATALOGUE))

    # reads -------------------------------------------------------------------------------

    def layers(self) -> list[LayerRecord]:
        """All layers in the catalogue, by name."""
        with closing(self._connect()) as conn:
            rows = conn.execute(f"SELECT * FROM {CATALOGUE} ORDER BY name").fetchall()
        return [LayerRecord.from_row(dict(row)) for row in rows]

    def layer(self, name: str) -> LayerRecord:
        """One catalogue record; raises UnknownLayer."""
        with closing(self._connect()) as conn:
            row = conn.execute(f"SELECT * FROM {CATALOGUE} WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [r.name for r in self.layers()]
            raise UnknownLayer(f"no layer {name!r} in {self.path}; layers: {known}")
        return LayerRecord.from_row(dict(row))

    def read_features(self, name: str, *, bbox: tuple[float, float, float, float] | None = None,
                      columns: list[str] | None = None) -> gpd.GeoDataFrame:
        """A vector layer's features in the city CRS, optionally within a bbox (uses the R-tree)."""
        record = self.layer(name)
        if record.table is None or record.kind == "dem":
            raise UnknownLayer(f"layer {name!r} is a raster, not a feature table")
        return pyogrio.read_dataframe(self.path, layer=record.table, bbox=bbox, columns=columns,
                                      use_arrow=True)

    def raster_path(self, name: str) -> Path:
        """The COG of a raster layer."""
        record = self.layer(name)
        if record.kind != "dem" or record.table is None:
            raise UnknownLayer(f"layer {name!r} is not a raster")
        return self.root / record.table

    # writes ------------------------------------------------------------------------------

    def _next_version(self, record: LayerRecord, suffix: str = "") -> int:
        """The version a write of `record` gets: one above the layer's last (a layer deleted and made
        again keeps counting up) or the record's own (a copied record keeps it), and a name no layer holds."""
        with closing(self._connect()) as conn:
            row = conn.execute(f"SELECT version FROM {CATALOGUE} WHERE name = ?", (record.name,)).fetchone()
            logged = conn.execute(f"SELECT MAX(version) FROM {CHANGES} WHERE layer = ?", (record.name,)).fetchone()[0]
            held = self._held_tables(conn)
        version = max(max(row["version"] if row else 0, logged or 0) + 1, record.version)
        return free_version(record.name, version, held, suffix)

    def changes(self, name: str, since_version: int) -> list[tuple[int, list[Bounds] | None]]:
        """What changed in a layer after `since_version`: (version, boxes or None for anywhere)."""
        with closing(self._connect()) as conn:
            rows = conn.execute(f"SELECT version, bounds FROM {CHANGES} WHERE layer = ? AND version > ? "
                                f"ORDER BY version", (name, since_version)).fetchall()
        return [(row["version"], [tuple(b) for b in json.loads(row["bounds"])] if row["bounds"] else None)
                for row in rows]

    def replace_features(self, record: LayerRecord, frame: gpd.GeoDataFrame,
                         progress: Progress | None = None, changed: list[Bounds] | None = None) -> LayerRecord:
        """Write `frame` as the new version of the layer, then swap it in with one transaction."""
        record.version = self._next_version(record)
        record.table = table_name(record.name, record.version)
        self._drop_tables([record.table])  # a leftover of a crashed ingest
        frame, geometry_type = uniform_geometries(frame)
        table = pa.table(frame.reset_index(drop=True).to_arrow(geometry_encoding="WKB"))
        # GDAL has no field type for Arrow's null type (a column with no value at all)
        for i, column in enumerate(table.schema):
            if pa.types.is_null(column.type):
                table = table.set_column(i, column.name, pa.nulls(table.num_rows, pa.string()))
        geometry_name = frame.geometry.name

        def batches():
            # One write_arrow call: appending chunks would update the R-tree row by row.
            for batch in table.to_batches(WRITE_BATCH):
                yield batch
                if progress:
                    progress(batch.num_rows)

        try:
            with gdal_writing(self.path):
                pyogrio.write_arrow(pa.RecordBatchReader.from_batches(table.schema, batches()), self.path,
                                    layer=record.table, driver="GPKG", geometry_name=geometry_name,
                                    geometry_type=geometry_type, crs=frame.crs.to_wkt() if frame.crs else None,
                                    layer_options={"SPATIAL_INDEX": "YES", "FID": "fid"})
            self._index_version(record.table, frame)
        except BaseException as exc:
            self._drop_tables([record.table])
            if isinstance(exc, Exception):
                raise StoreError(f"writing layer {record.name!r} to {self.path} failed: {exc}") from exc
            raise
        self._swap(record, changed)
        return record

    def _index_version(self, table: str, frame: gpd.GeoDataFrame) -> None:
        """What readers look up in a new layer version besides its R-tree: features by `uid` (a sensor's
        `pipe_id`, a feature's page), for lines the length sums, and the counts of its true/false columns
        (twin.store.measures)."""
        sums, flags = line_lengths(frame), flag_counts(frame)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if "uid" in frame.columns:
                    conn.execute(f'CREATE INDEX "{table}_uid" ON "{table}" (uid)')
                for measures, rows in ((LINE_LENGTHS, sums), (FLAG_COUNTS, flags)):
                    if rows is None:
                        continue
                    values = [(table, *row) for row in rows]
                    conn.execute(f"CREATE TABLE IF NOT EXISTS {measures} "
                                 f"(table_name TEXT NOT NULL, {_MEASURE_COLUMNS[measures]})")
                    conn.execute(f"DELETE FROM {measures} WHERE table_name = ?", (table,))
                    conn.executemany(f"INSERT INTO {measures} VALUES ({', '.join('?' * len(values[0]))})", values)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def replace_raster(self, record: LayerRecord, staged: Path) -> LayerRecord:
        """Move a staged COG in as the raster of layer `record.name` and point the catalogue at it."""
        record.version = self._next_version(record, suffix=".tif")
        record.table = f"{table_name(record.name, record.version)}.tif"
        os.replace(staged, self.root / record.table)
        self._swap(record)
        return record

    def _swap(self, record: LayerRecord, changed: list[Bounds] | None = None) -> None:
        values = record.to_dict()
        values["bounds"] = json.dumps(record.bounds) if record.bounds else None
        values["bounds_wgs84"] = json.dumps(record.bounds_wgs84) if record.bounds_wgs84 else None
        values["notes"] = json.dumps(record.notes, ensure_ascii=False)
        names = list(CATALOGUE_COLUMNS)
        quoted = ", ".join(f'"{n}"' for n in names)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(f'SELECT "table" FROM {CATALOGUE} WHERE name = ?', (record.name,)).fetchone()
                conn.execute(f"INSERT OR REPLACE INTO {CATALOGUE} ({quoted}) "
                             f"VALUES ({', '.join('?' for _ in names)})", [values[n] for n in names])
                old = row["table"] if row else None
                conn.execute(f"INSERT OR REPLACE INTO {CHANGES} VALUES (?, ?, ?)",
                             (record.name, record.version, json.dumps(changed) if changed is not None else None))
                # leftovers of crashed ingests of this layer (also in older twins' naming) go with the old version
                tables = [r[0] for r in conn.execute("SELECT table_name FROM gpkg_contents")]
                doomed = version_tables(record.name, tables)
                if old and record.kind != "dem":
                    doomed.append(old)
                self._drop_unheld_in(conn, doomed)
                old_file = old if old and record.kind == "dem" and old not in self._held_tables(conn) else None
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        if old_file:
            (self.root / old_file).unlink(missing_ok=True)

    def delete_layer(self, name: str) -> None:
        """Remove a layer from the catalogue and drop its table or raster file."""
        record = self.layer(name)
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"DELETE FROM {CATALOGUE} WHERE name = ?", (name,))
            conn.execute(f"INSERT OR REPLACE INTO {CHANGES} VALUES (?, ?, NULL)", (name, record.version + 1))
            if record.kind != "dem" and record.table:
                self._drop_unheld_in(conn, [record.table])
            old_file = record.table if record.kind == "dem" and record.table not in self._held_tables(conn) else None
            conn.execute("COMMIT")
        if old_file:
            (self.root / old_file).unlink(missing_ok=True)

    @staticmethod
    def _held_tables(conn: sqlite3.Connection) -> set[str]:
        """The tables and raster files that catalogue rows point at."""
        return {r[0] for r in conn.execute(f'SELECT "table" FROM {CATALOGUE} WHERE "table" IS NOT NULL')}

    def _drop_tables(self, tables: list[str]) -> None:
        with closing(self._connect()) as conn:
            conn.execute("BEGIN IMMEDIATE")
            self._drop_unheld_in(conn, tables)
            conn.execute("COMMIT")

    def _drop_unheld_in(self, conn: sqlite3.Connection, tables: list[str]) -> None:
        """Drop those of `tables` that no catalogue row points at (a city made by an older twin may have
        two layers pointing at one table)."""
        held = self._held_tables(conn)
        for table in dict.fromkeys(tables):
            if table not in held:
                self._drop_table_in(conn, table)

    @staticmethod
    def _drop_table_in(conn: sqlite3.Connection, table: str) -> None:
        """Drop a GDAL-written feature table with its R-tree and GeoPackage metadata rows."""
        geom_cols = [r[0] for r in conn.execute(
            "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,))]
        for col in geom_cols:
            conn.execute(f'DROP TABLE IF EXISTS "rtree_{table}_{col}"')
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')
        for measures in _MEASURE_COLUMNS:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (measures,)).fetchone():
                conn.execute(f"DELETE FROM {measures} WHERE table_name = ?", (table,))
        for meta in ("gpkg_geometry_columns", "gpkg_extensions", "gpkg_ogr_contents", "gpkg_contents"):
            exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (meta,)).fetchone()
            if exists:
                conn.execute(f"DELETE FROM {meta} WHERE table_name = ?", (table,))



    # observations, statuses and status events ---------------------------------------------

    @property
    def live_path(self) -> Path:
        """The SQLite file of observations, statuses and status events, beside the GeoPackage."""
        return self.path.with_name(self.path.stem + ".live.sqlite")

    def _observations(self) -> sqlite3.Connection:
        """This thread's connection to the live tables (made once: they are hot paths).

        They live in their own file because GDAL links its own copy of SQLite: two copies
        in one process each drop the other's POSIX locks when they close the file, which
        corrupts a database that one writes while the other reads (sqlite.org/howtocorrupt).
        """
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.live_path, timeout=60, isolation_level=None, check_same_thread=False)
            # WAL: readers never wait for the writer; NORMAL: a commit survives a crash of the
            # process (not of the machine) without an fsync per batch
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            self._local.conn = conn
        if not self._observations_ready:
            conn.executescript(_OBSERVATION_TABLES)
            self._observations_ready = True
        return conn

    def append_observations(self, rows: Sequence[ObservationRow], *, assess: Assess | None = None,
                            counts: Mapping[str, int] | None = None) -> AppendResult:
        """Store a batch in one transaction (see `Store.append_observations`)."""
        result = AppendResult()
        conn = self._observations()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if rows:
                sensors = {r[0] for r in rows}
                known = dict(_select_in(conn, f"SELECT sensor_id, time FROM {LATEST} WHERE sensor_id IN", sensors))
                before = conn.total_changes
                conn.executemany(f"INSERT OR IGNORE INTO {OBSERVATIONS} VALUES (?, ?, ?, ?)", rows)
                result.stored = conn.total_changes - before
                result.duplicates = len(rows) - result.stored
                moved = advance_latest(rows, known, result)
                conn.executemany(
                    f"INSERT INTO {LATEST} VALUES (?, ?, ?, ?) ON CONFLICT (sensor_id) DO UPDATE SET "
                    f"time = excluded.time, value = excluded.value, quality = excluded.quality "
                    f"WHERE excluded.time > {LATEST}.time", list(moved.values()))
                if assess is not None and moved:
                    result.events = self._record(conn, assess(moved, self._statuses(conn)))
            tally = {**(counts or {})}
            for outcome in ("stored", "duplicates", "late"):
                if getattr(result, outcome):
                    tally[outcome] = tally.get(outcome, 0) + getattr(result, outcome)
            conn.executemany(f"INSERT INTO {COUNTS} VALUES (?, ?) ON CONFLICT (outcome) DO UPDATE "
                             f"SET count = count + excluded.count", [(k, v) for k, v in tally.items() if v])
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def update_statuses(self, assess: Assess) -> list[dict]:
        """Run `assess` over every latest reading in one transaction; record its changes as events."""
        conn = self._observations()
        conn.execute("BEGIN IMMEDIATE")
        try:
            readings = {r[0]: Reading(*r) for r in conn.execute(f"SELECT * FROM {LATEST}")}
            events = self._record(conn, assess(readings, self._statuses(conn)))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return events

    @staticmethod
    def _statuses(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
        return {(layer, uid): status for layer, uid, status in conn.execute(f"SELECT layer, uid, status FROM {STATUS}")}

    def _record(self, conn: sqlite3.Connection, changes: list[StatusChange]) -> list[dict]:
        """Write status changes that differ from the stored ones, each with its event."""
        if not changes:
            return []
        stored = self._statuses(conn)
        time = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        events = []
        for change in changes:
            previous = stored.get((change.layer, change.uid))
            if previous == change.status:
                continue
            stored[(change.layer, change.uid)] = change.status
            conn.execute(f"INSERT OR REPLACE INTO {STATUS} VALUES (?, ?, ?, ?, ?, ?)",
                         (change.layer, change.uid, change.status, time, change.sensor, change.value))
            cursor = conn.execute(f"INSERT INTO {EVENTS} (time, layer, uid, status, previous, sensor, value) "
                                  f"VALUES (?, ?, ?, ?, ?, ?, ?)", (time, change.layer, change.uid, change.status,
                                                                    previous, change.sensor, change.value))
            events.append(event_from_row((cursor.lastrowid, time, change.layer, change.uid, change.status,
                                          previous, change.sensor, change.value)))
        return events

    def latest(self, sensor_ids: Sequence[str] | None = None) -> list[Reading]:
        """The latest reading of each sensor (of `sensor_ids`, or all), by sensor id."""
        conn = self._observations()
        if sensor_ids is None:
            rows = conn.execute(f"SELECT * FROM {LATEST} ORDER BY sensor_id").fetchall()
        else:
            rows = sorted(_select_in(conn, f"SELECT * FROM {LATEST} WHERE sensor_id IN", set(sensor_ids)))
        return [Reading(*r) for r in rows]

    def history(self, sensor_id: str, start_ms: int | None = None, end_ms: int | None = None,
                bucket_ms: int | None = None, limit: int = 10_000) -> list[HistoryBucket]:
        """A sensor's observations in [start, end), oldest first, optionally min/mean/max per bucket."""
        conn = self._observations()
        lo = start_ms if start_ms is not None else -(2**62)
        hi = end_ms if end_ms is not None else 2**62
        if bucket_ms:
            # floor division that also holds before 1970
            bucket = f"(time - ((time % {int(bucket_ms)}) + {int(bucket_ms)}) % {int(bucket_ms)})"
            rows = conn.execute(
                f"SELECT {bucket} AS b, MIN(value), AVG(value), MAX(value), COUNT(*) FROM {OBSERVATIONS} "
                f"WHERE sensor_id = ? AND time >= ? AND time < ? GROUP BY b ORDER BY b LIMIT ?",
                (sensor_id, lo, hi, limit)).fetchall()
        else:
            rows = conn.execute(f"SELECT time, value, value, value, 1 FROM {OBSERVATIONS} "
                                f"WHERE sensor_id = ? AND time >= ? AND time < ? ORDER BY time LIMIT ?",
                                (sensor_id, lo, hi, limit)).fetchall()
        return [HistoryBucket(*r) for r in rows]

    def reporting_sensors(self, start_ms: int, end_ms: int) -> set[str]:
        """Ids of the sensors with at least one observation in (start, end]."""
        # one index probe per sensor that ever reported, not a scan of all observations
        rows = self._observations().execute(
            f"SELECT sensor_id FROM {LATEST} AS l WHERE EXISTS (SELECT 1 FROM {OBSERVATIONS} AS o "
            f"WHERE o.sensor_id = l.sensor_id AND o.time > ? AND o.time <= ?)", (int(start_ms), int(end_ms)))
        return {r[0] for r in rows}

    def statuses(self) -> dict[tuple[str, str], str]:
        """The stored status of every feature that has one, by (layer, uid)."""
        return self._statuses(self._observations())

    def events_since(self, after_id: int, limit: int = 1000) -> list[dict]:
        """Status events with an id above `after_id`, oldest first."""
        rows = self._observations().execute(f"SELECT * FROM {EVENTS} WHERE id > ? ORDER BY id LIMIT ?",
                                            (after_id, limit)).fetchall()
        return [event_from_row(r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest status event (0 when none)."""
        return self._observations().execute(f"SELECT COALESCE(MAX(id), 0) FROM {EVENTS}").fetchone()[0]

    def ingest_counts(self) -> dict[str, int]:
        """How many observations each ingest outcome has had, over the city's life."""
        return dict(self._observations().execute(f"SELECT outcome, count FROM {COUNTS} ORDER BY outcome"))

    # moving a city between stores ---------------------------------------------------------

    def live_counts(self) -> dict[str, int]:
        """Rows in each live table (observations, latest, status, events, counts)."""
        conn = self._observations()
        return {name: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                for name, (table, _, key) in _LIVE_TABLES.items()}

    def read_live(self, name: str, batch: int = 50_000) -> Iterator[list[tuple]]:
        """All rows of one live table, in key order, `batch` at a time."""
        table, columns, key = _LIVE_TABLES[name]
        self._observations()  # the tables exist
        # its own connection: the caller may write to this store between batches
        with closing(sqlite3.connect(self.live_path, timeout=60)) as conn:
            cursor = conn.execute(f"SELECT {', '.join(columns)} FROM {table} ORDER BY {key}")
            while chunk := cursor.fetchmany(batch):
                yield chunk

    def write_live(self, name: str, rows: Sequence[tuple]) -> None:
        """Add rows to one live table as they are (ids, times and counts kept; no status rules run)."""
        table, columns, _ = _LIVE_TABLES[name]
        conn = self._observations()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
                             f"VALUES ({', '.join('?' for _ in columns)})", rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _select_in(conn: sqlite3.Connection, query: str, keys: set[str]) -> list[tuple]:
    """Rows of `query ... IN (keys)`, in chunks under SQLite's variable limit."""
    keys_list, out = list(keys), []
    for i in range(0, len(keys_list), 900):
        chunk = keys_list[i:i + 900]
        out.extend(conn.execute(f"{query} ({', '.join('?' * len(chunk))})", chunk).fetchall())
    return out
