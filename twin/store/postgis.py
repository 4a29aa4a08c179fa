"""The shared store: a city in one schema of a PostgreSQL database with PostGIS.

Same catalogue, same versioned tables and the same answers as the GeoPackage store, for
cities that several processes and machines serve and write at once:

- **One schema per city** (``?schema=`` of the store URL; by default named after the
  city's folder). Its layout is created and upgraded by numbered migrations recorded in
  ``twin_schema_migrations``.
- **A layer swap is one transaction.** The new version is written in full to its own
  table (``pipe_v3``, `twin.store.table_name`: binary COPY, then a GiST index on the geometry,
  an index on ``uid``, and for lines its length per utility in ``twin_line_lengths``,
  `twin.store.measures`), and the same transaction points the catalogue row at it and drops
  the old table and its sums (a table that a catalogue row points at is never dropped).
  Readers keep reading the old version until the commit; a killed writer's transaction is rolled back
  by the server, so the previous version stays. Writers of one layer queue on an
  advisory lock, so versions never collide.
- **Observations** go to a table partitioned by month of their time (partitions made on
  demand), the latest reading per sensor beside it; batches, statuses and their events
  are written under one advisory lock per city, so event ids are committed in order.
- **Rasters** (the DEM COG, BIM GLBs) stay files in the city folder: servers on other
  machines need that folder shared.

Every commit that other processes must hear about (a layer swapped or deleted, statuses
changed) passes through `PostgisStore._committing`, inside its transaction, so a notifier
(``NOTIFY``) can be hooked there with `commit_hooks`.

The password is never part of the URL this store reports (``url``) or that city.json
records: libpq takes it from ``PGPASSWORD`` or ``~/.pgpass`` (the CLI sets ``PGPASSWORD``
from ``TWIN_DATABASE_URL``).
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
from pyproj import CRS

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
from twin.store.measures import LINE_LENGTHS, LineLength, line_lengths

__all__ = ["PostgisStore", "parse_store_url", "redact_url", "schema_name_for", "CommitHook"]

CATALOGUE = "twin_layers"
CHANGES = "twin_changes"
OBSERVATIONS = "twin_observations"
LATEST = "twin_latest"
STATUS = "twin_status"
EVENTS = "twin_events"
COUNTS = "twin_ingest_counts"
MIGRATIONS_TABLE = "twin_schema_migrations"
WRITE_BATCH = 65_536
READ_CHUNK = 100_000
POOL_MAX = 8
POOL_WAIT_S = 10  # a request waits this long for a connection (busy pool, or the server down)
CONNECT_TIMEOUT_S = 10
MAX_IDENTIFIER_BYTES = 63

# (version, what it does, DDL with {s} for the quoted schema). Append, never edit: a
# database records the versions it has and gets only the newer ones.
MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "layer catalogue, change log, observations by month, latest readings, statuses, events, counters", """
CREATE TABLE {s}.twin_layers (name text PRIMARY KEY, kind text NOT NULL, crs text NOT NULL, source text,
  source_sha256 text, feature_count bigint NOT NULL, bounds text, bounds_wgs84 text, geometry_type text,
  updated text, version integer NOT NULL, "table" text, notes text, fields jsonb);
CREATE TABLE {s}.twin_changes (layer text NOT NULL, version integer NOT NULL, bounds text,
  PRIMARY KEY (layer, version));
CREATE TABLE {s}.twin_observations (sensor_id text NOT NULL, time bigint NOT NULL, value double precision NOT NULL,
  quality text, PRIMARY KEY (sensor_id, time)) PARTITION BY RANGE (time);
CREATE TABLE {s}.twin_latest (sensor_id text PRIMARY KEY, time bigint NOT NULL, value double precision NOT NULL,
  quality text);
CREATE TABLE {s}.twin_status (layer text NOT NULL, uid text NOT NULL, status text NOT NULL, since text NOT NULL,
  sensor text, value double precision, PRIMARY KEY (layer, uid));
CREATE TABLE {s}.twin_events (id bigserial PRIMARY KEY, time text NOT NULL, layer text NOT NULL, uid text NOT NULL,
  status text NOT NULL, previous text, sensor text, value double precision);
CREATE TABLE {s}.twin_ingest_counts (outcome text PRIMARY KEY, count bigint NOT NULL);
"""),
    (2, "length sums per utility of each line layer version (twin.store.measures)", """
CREATE TABLE {s}.twin_line_lengths (table_name text NOT NULL, by_column text, value text, segments bigint NOT NULL,
  length_m double precision NOT NULL);
CREATE INDEX ON {s}.twin_line_lengths (table_name);
"""),
]

# A commit hook runs inside the transaction that is about to commit: (connection, what, payload),
# what being "layer" (payload: layer, version, changed boxes or None) or "status" (payload: events).
CommitHook = Callable[[object, str, dict], None]

_RECORD_FIELDS = list(CATALOGUE_COLUMNS)
_LIVE_COLUMNS = {
    "observations": (OBSERVATIONS, ("sensor_id", "time", "value", "quality"), ("text", "int8", "float8", "text"),
                     "sensor_id, time"),
    "latest": (LATEST, ("sensor_id", "time", "value", "quality"), ("text", "int8", "float8", "text"), "sensor_id"),
    "status": (STATUS, ("layer", "uid", "status", "since", "sensor", "value"),
               ("text", "text", "text", "text", "text", "float8"), "layer, uid"),
    "events": (EVENTS, ("id", "time", "layer", "uid", "status", "previous", "sensor", "value"),
               ("int8", "text", "text", "text", "text", "text", "text", "float8"), "id"),
    "counts": (COUNTS, ("outcome", "count"), ("text", "int8"), "outcome"),
}

# Arrow type of a column -> (PostgreSQL type, COPY type, the Arrow type GDAL reads back from
# a GeoPackage): reading a layer gives the same pandas dtypes from either store.
_INT16 = ("smallint", "int2", "int16")
_INT32 = ("integer", "int4", "int32")
_INT64 = ("bigint", "int8", "int64")
_READ_TYPES = {"string": pa.string(), "bool": pa.bool_(), "int16": pa.int16(), "int32": pa.int32(),
               "int64": pa.int64(), "float32": pa.float32(), "float64": pa.float64(),
               "timestamp": pa.timestamp("ms"), "timestamptz": pa.timestamp("ms", tz="UTC"),
               "date": pa.date32(), "binary": pa.binary()}


def _column_type(t: pa.DataType, name: str) -> tuple[str, str, str]:
    if pa.types.is_boolean(t):
        return "boolean", "bool", "bool"
    if pa.types.is_int8(t) or pa.types.is_int16(t) or pa.types.is_uint8(t):
        return _INT16
    if pa.types.is_int32(t) or pa.types.is_uint16(t):
        return _INT32
    if pa.types.is_int64(t) or pa.types.is_uint32(t):
        return _INT64
    if pa.types.is_uint64(t) or pa.types.is_float64(t) or pa.types.is_float16(t):
        return "double precision", "float8", "float64"
    if pa.types.is_float32(t):
        return "real", "float4", "float32"
    if pa.types.is_timestamp(t):
        return ("timestamptz", "timestamptz", "timestamptz") if t.tz else ("timestamp", "timestamp", "timestamp")
    if pa.types.is_date(t):
        return "date", "date", "date"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "bytea", "bytea", "binary"
    if (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)
            or pa.types.is_dictionary(t) or pa.types.is_decimal(t)):
        return "text", "text", "string"
    raise StoreError(f"column {name!r} holds {t}, which a layer cannot store (text, numbers, booleans, "
                     f"dates and times can)")


def _column_values(column: pa.ChunkedArray | pa.Array, copy_type: str) -> list:
    if pa.types.is_dictionary(column.type) or pa.types.is_decimal(column.type):
        column = column.cast(pa.string())
    if pa.types.is_uint64(column.type):
        column = column.cast(pa.float64())
    return column.to_pylist()


# -- URLs --------------------------------------------------------------------------------------

def schema_name_for(name: str) -> str:
    """A PostgreSQL schema name for a city (lower case letters, digits and _; never empty).

    Examples
    --------
    >>> schema_name_for("Yantai-2026")
    'yantai_2026'
    """
    safe = re.sub(r"[^0-9a-z_]", "_", name.lower()).strip("_") or "city"
    if safe[0].isdigit() or safe.startswith("pg_"):
        safe = f"city_{safe}"
    return safe[:MAX_IDENTIFIER_BYTES]


def parse_store_url(url: str, default_schema: str) -> tuple[str, str, str]:
    """(libpq URI without twin's own parameters, schema, URL for people: no password, with the schema)."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise StoreError(f"{redact_url(url)} is not a postgresql:// URL")
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = next((v for k, v in query if k == "schema"), None) or default_schema
    if not re.fullmatch(r"[A-Za-z_][0-9A-Za-z_]{0,62}", schema):
        raise StoreError(f"{redact_url(url)}: schema {schema!r} is not a plain name (letters, digits, _; "
                         f"at most 63)")
    libpq_query = urlencode([(k, v) for k, v in query if k != "schema"])
    conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, libpq_query, ""))
    shown = urlencode([(k, v) for k, v in query if k not in ("schema", "password")] + [("schema", schema)])
    public = urlunsplit(("postgresql", _netloc_without_password(parts), parts.path, shown, ""))
    return conninfo, schema, public


def _netloc_without_password(parts) -> str:
    host = parts.netloc.rpartition("@")[2]
    if parts.username is not None:
        return f"{quote(unquote(parts.username), safe='')}@{host}"
    return host


def redact_url(url: str) -> str:
    """The URL with its password (in the user part or the query) left out."""
    try:
        parts = urlsplit(url)
        query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
        return urlunsplit((parts.scheme, _netloc_without_password(parts), parts.path, query, ""))
    except ValueError:
        return "<an unreadable URL>"


def password_of(url: str) -> str | None:
    """The password a postgresql:// URL carries, if any."""
    parts = urlsplit(url)
    if parts.password:
        return unquote(parts.password)
    return next((v for k, v in parse_qsl(parts.query) if k == "password"), None)


# -- connections -------------------------------------------------------------------------------

_POOLS: dict[tuple[str, int], object] = {}
_READY: set[tuple[str, str, int]] = set()
_POOLS_LOCK = threading.Lock()


def _close_pools() -> None:
    for (conninfo, pid), pool in list(_POOLS.items()):
        if pid == os.getpid():  # never close a parent's connections from a forked child
            pool.close(timeout=1)
            _POOLS.pop((conninfo, pid), None)


atexit.register(_close_pools)


def _explain(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text if line.strip()) or type(exc).__name__


class PostgisStore:
    """A city's layers, observations and statuses in one PostgreSQL schema; rasters as files in `root`."""

    def __init__(self, url: str, root: Path) -> None:
        import psycopg  # noqa: F401  (a clear ImportError here rather than mid-request)

        self.root = Path(root)
        self._conninfo, self.schema, self.url = parse_store_url(url, schema_name_for(self.root.resolve().name))
        self.commit_hooks: list[CommitHook] = []
        self.fresh = False  # whether this store made the city's tables (`City.init` refuses a used schema)
        self._partitions: set[str] = set()
        self._prepare()

    # connections ----------------------------------------------------------------------------

    def _pool(self):
        from psycopg_pool import ConnectionPool

        key = (self._conninfo, os.getpid())
        pool = _POOLS.get(key)
        if pool is None:
            with _POOLS_LOCK:
                pool = _POOLS.get(key)
                if pool is None:
                    pool = ConnectionPool(self._conninfo, min_size=1, max_size=POOL_MAX, open=True,
                                          timeout=POOL_WAIT_S, max_idle=300, name=f"twin {self.url}",
                                          configure=_configure,
                                          kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT_S})
                    _POOLS[key] = pool
        return pool

    @contextmanager
    def _connection(self) -> Iterator:
        """A pooled connection (autocommit; use `conn.transaction()`), errors naming the server."""
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool().connection() as conn:
                yield conn
        except psycopg.OperationalError as exc:
            raise StoreError(f"PostgreSQL at {self.url}: {_explain(exc)}") from exc
        except PoolTimeout as exc:
            raise StoreError(f"no connection to PostgreSQL at {self.url}: {_explain(exc)}") from exc

    def _prepare(self) -> None:
        """Check the server once per process: reachable, PostGIS there, the city's schema migrated."""
        import psycopg

        key = (self._conninfo, self.schema, os.getpid())
        if key in _READY:
            return
        try:
            conn = psycopg.connect(self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.OperationalError as exc:
            raise StoreError(f"cannot connect to PostgreSQL at {self.url}: {_explain(exc)}") from exc
        except psycopg.ProgrammingError as exc:
            raise StoreError(f"{self.url} is not a PostgreSQL connection URL: {_explain(exc)}") from exc
        with conn:
            self._ensure_postgis(conn)
            _configure(conn)
            self._migrate(conn)
        _READY.add(key)

    def _ensure_postgis(self, conn) -> None:
        import psycopg

        if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'postgis'").fetchone():
            return
        db, user = conn.info.dbname, conn.info.user
        if not conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'postgis'").fetchone():
            raise StoreError(f"PostgreSQL at {self.url} has no PostGIS extension to enable: install PostGIS on "
                             f"the database server (Debian: postgresql-NN-postgis-3, NN the server's major "
                             f"version), then run CREATE EXTENSION postgis; in database {db!r}")
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreError(f"PostGIS is not enabled in database {db!r} at {self.url}, and user {user!r} may not "
                             f"enable it: ask its owner or a superuser to run CREATE EXTENSION postgis; "
                             f"({_explain(exc)})") from exc

    def _migrate(self, conn) -> None:
        import psycopg
        from psycopg import sql

        s = sql.Identifier(self.schema)
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"twin:{self.schema}:migrate"])
                if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [self.schema]).fetchone():
                    conn.execute(sql.SQL("CREATE SCHEMA {}").format(s))
                if conn.execute("SELECT to_regclass(%s)", [f'"{self.schema}".{MIGRATIONS_TABLE}']).fetchone()[0] is None:
                    conn.execute(sql.SQL("CREATE TABLE {}.{} (version integer PRIMARY KEY, description text NOT NULL, "
                                         "applied timestamptz NOT NULL DEFAULT now())")
                                 .format(s, sql.Identifier(MIGRATIONS_TABLE)))
                done = conn.execute(sql.SQL("SELECT COALESCE(MAX(version), 0) FROM {}.{}")
                                    .format(s, sql.Identifier(MIGRATIONS_TABLE))).fetchone()[0]
                newest = MIGRATIONS[-1][0]
                if done > newest:
                    raise StoreError(f"schema {self.schema!r} at {self.url} is at version {done}, made by a newer "
                                     f"twin (this one knows up to {newest}); upgrade twin")
                self.fresh = done == 0
                for version, description, ddl in MIGRATIONS:
                    if version > done:
                        conn.execute(ddl.format(s=s.as_string(conn)))
                        conn.execute(sql.SQL("INSERT INTO {}.{} (version, description) VALUES (%s, %s)")
                                     .format(s, sql.Identifier(MIGRATIONS_TABLE)), [version, description])
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreError(f"user {conn.info.user!r} may not create the city's schema {self.schema!r} at "
                             f"{self.url}: grant it CREATE on database {conn.info.dbname!r} (or create the schema "
                             f"for it, owned by it); ({_explain(exc)})") from exc

    def _q(self, template: str, **names: str):
        """SQL with {s} the city's schema and other {names} quoted identifiers."""
        from psycopg import sql

        return sql.SQL(template).format(s=sql.Identifier(self.schema),
                                        **{k: sql.Identifier(v) for k, v in names.items()})

    def _lock(self, conn, what: str) -> None:
        """Queue behind other writers of `what` in this city until the transaction ends."""
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"twin:{self.schema}:{what}"])

    def _committing(self, conn, what: str, payload: dict) -> None:
        """Everything other processes must hear about passes here, inside the transaction about to commit."""
        for hook in self.commit_hooks:
            hook(conn, what, payload)

    # reads ----------------------------------------------------------------------------------

    def _records(self, conn, name: str | None = None) -> list[LayerRecord]:
        from psycopg.rows import dict_row

        columns = ", ".join(f'"{n}"' for n in _RECORD_FIELDS)
        with conn.cursor(row_factory=dict_row) as cur:
            if name is None:
                cur.execute(self._q(f'SELECT {columns} FROM {{s}}.{CATALOGUE} ORDER BY name COLLATE "C"'))
            else:
                cur.execute(self._q(f"SELECT {columns} FROM {{s}}.{CATALOGUE} WHERE name = %s"), [name])
            return [LayerRecord.from_row(row) for row in cur.fetchall()]

    def layers(self) -> list[LayerRecord]:
        """All layers in the catalogue, by name."""
        with self._connection() as conn:
            return self._records(conn)

    def layer(self, name: str) -> LayerRecord:
        """One catalogue record; raises UnknownLayer."""
        with self._connection() as conn:
            found = self._records(conn, name)
            if not found:
                known = [r.name for r in self._records(conn)]
                raise UnknownLayer(f"no layer {name!r} in {self.url}; layers: {known}")
        return found[0]

    def read_features(self, name: str, *, bbox: tuple[float, float, float, float] | None = None,
                      columns: list[str] | None = None) -> gpd.GeoDataFrame:
        """A vector layer's features in the city CRS, optionally within a bbox (uses the GiST index)."""
        import psycopg

        for _ in range(5):
            record = self.layer(name)
            if record.table is None or record.kind == "dem":
                raise UnknownLayer(f"layer {name!r} is a raster, not a feature table")
            with self._connection() as conn:
                fields = conn.execute(self._q(f"SELECT fields FROM {{s}}.{CATALOGUE} WHERE name = %s"),
                                      [name]).fetchone()
                if fields is None:
                    continue
                fields = [f for f in fields[0]["columns"] if columns is None or f["name"] in columns]
                try:
                    return self._read_table(conn, record, fields, bbox)
                except psycopg.errors.UndefinedTable:
                    continue  # swapped for a newer version between the two reads: read that one
        raise StoreError(f"layer {name!r} at {self.url} kept changing while it was read; try again")

    def _read_table(self, conn, record: LayerRecord, fields: list[dict], bbox) -> gpd.GeoDataFrame:
        """Read a version's table column by column: one array per column and fid range (no row tuples)."""
        from psycopg import sql

        table = sql.Identifier(self.schema, record.table)
        select = [sql.SQL("array_agg({} ORDER BY fid)").format(sql.Identifier(f["column"])) for f in fields]
        select.append(sql.SQL("array_agg(geom::bytea ORDER BY fid)"))
        query = sql.SQL("SELECT {} FROM {} WHERE fid > %s AND fid <= %s").format(sql.SQL(", ").join(select), table)
        params: list = []
        if bbox is not None:
            query += sql.SQL(" AND geom && ST_MakeEnvelope(%s, %s, %s, %s, ST_SRID(geom)) "
                             "AND ST_Intersects(geom, ST_MakeEnvelope(%s, %s, %s, %s, ST_SRID(geom)))")
            params = [float(v) for v in bbox] * 2
        columns: list[list] = [[] for _ in range(len(fields) + 1)]
        with conn.cursor(binary=True) as cur:
            top = cur.execute(sql.SQL("SELECT COALESCE(MAX(fid), 0) FROM {}").format(table)).fetchone()[0]
            for lo in range(0, top, READ_CHUNK):  # a chunk's arrays stay far below PostgreSQL's 1 GB a value
                row = cur.execute(query, [lo, lo + READ_CHUNK, *params]).fetchone()
                for values, part in zip(columns, row):
                    if part:
                        values.extend(part)
        arrays = {f["name"]: pa.array(v, type=_READ_TYPES[f["read"]]) for f, v in zip(fields, columns)}
        n = len(columns[-1])
        frame = pa.table(arrays).to_pandas(self_destruct=True) if arrays else pd.DataFrame(index=range(n))
        geoms = shapely.from_wkb(np.array(columns[-1] + [None], dtype=object)[:-1])
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms, index=frame.index), crs=record.crs)

    def line_lengths(self, tables: Sequence[str]) -> dict[str, list[LineLength]]:
        """The length sums written with each of these layer versions (twin.store.measures), by table;
        a table without sums (not lines, or written by an older twin) is left out."""
        with self._connection() as conn:
            rows = conn.execute(self._q(
                f"SELECT table_name, by_column, value, segments, length_m FROM {{s}}.{LINE_LENGTHS} "
                f'WHERE table_name = ANY(%s) ORDER BY table_name, value IS NULL, value COLLATE "C"'),
                [list(tables)]).fetchall()
        sums: dict[str, list[LineLength]] = {}
        for table, *row in rows:
            sums.setdefault(table, []).append(LineLength(row[0], row[1], int(row[2]), float(row[3])))
        return sums

    def look_up(self, table: str, columns: Sequence[str], *, uids: Sequence[str] = (),
                near: tuple[np.ndarray, float] | None = None) -> tuple[pd.DataFrame, np.ndarray, np.ndarray] | None:
        """The features of one layer version whose `uid` is one of `uids`, or whose box comes within
        `near[1]` of one of the points `near[0]` (an (n, 2) array), through the uid and GiST indexes:
        their `columns` (those the table has), geometries and fids, by fid. None when the table is
        gone (swapped since) or has no uid index (written by an older twin): read it instead."""
        import psycopg
        from psycopg import sql

        target = sql.Identifier(self.schema, table)
        with self._connection() as conn:
            row = conn.execute(self._q(f'SELECT fields FROM {{s}}.{CATALOGUE} WHERE "table" = %s'), [table]).fetchone()
            fields = (row[0] or {}).get("columns", []) if row else []
            uid = next((f for f in fields if f["name"] == "uid"), None)
            if uid is None or uid["read"] != "string":
                return None
            indexed = conn.execute(
                "SELECT count(DISTINCT a.attname) FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = i.indkey[0] WHERE i.indrelid = to_regclass(%s) AND a.attname IN (%s, 'geom')",
                [target.as_string(conn), uid["column"]]).fetchone()[0]
            if indexed < 2:
                return None
            asked = {name: k for k, name in reversed(list(enumerate(columns)))}
            wanted = sorted((f for f in fields if f["name"] in asked), key=lambda f: asked[f["name"]])
            hits, params = [], []
            if len(uids):
                hits.append(sql.SQL("SELECT fid FROM {} WHERE {} = ANY(%s::text[])").format(
                    target, sql.Identifier(uid["column"])))
                params.append([str(u) for u in uids])
            if near is not None and len(near[0]):
                xy = np.asarray(near[0], dtype=float).reshape(-1, 2)
                hits.append(sql.SQL(
                    "SELECT t.fid FROM unnest(%s::float8[], %s::float8[]) AS p(x, y) JOIN {} AS t ON t.geom && "
                    "ST_Expand(ST_SetSRID(ST_MakePoint(p.x, p.y), (SELECT ST_SRID(geom) FROM {} "
                    "WHERE geom IS NOT NULL LIMIT 1)), %s)").format(target, target))
                params += [xy[:, 0].tolist(), xy[:, 1].tolist(), float(near[1])]
            select = [sql.SQL("fid"), *(sql.Identifier(f["column"]) for f in wanted), sql.SQL("geom::bytea")]
            # fid = ANY(ARRAY(...)): the few fids found, then each row by the primary key (as fid IN (...)
            # the planner joins them to a scan of the whole table)
            query = sql.SQL("SELECT {} FROM {} WHERE fid = ANY(ARRAY({})) ORDER BY fid").format(
                sql.SQL(", ").join(select), target, sql.SQL(" UNION ").join(hits or [sql.SQL("SELECT NULL::int8")]))
            try:
                with conn.cursor(binary=True) as cur:
                    rows = cur.execute(query, params).fetchall()
            except psycopg.errors.UndefinedTable:
                return None
        values = list(zip(*rows)) if rows else [()] * (len(wanted) + 2)
        arrays = {f["name"]: pa.array(list(v), type=_READ_TYPES[f["read"]]) for f, v in zip(wanted, values[1:-1])}
        frame = pa.table(arrays).to_pandas() if arrays else pd.DataFrame(index=range(len(rows)))
        geoms = shapely.from_wkb(np.array([*values[-1], None], dtype=object)[:-1])
        return frame, geoms, np.asarray(values[0], dtype=np.int64)

    def raster_path(self, name: str) -> Path:
        """The COG of a raster layer, in the city folder."""
        record = self.layer(name)
        if record.kind != "dem" or record.table is None:
            raise UnknownLayer(f"layer {name!r} is not a raster")
        return self.root / record.table

    def changes(self, name: str, since_version: int) -> list[tuple[int, list[Bounds] | None]]:
        """What changed in a layer after `since_version`: (version, boxes or None for anywhere)."""
        with self._connection() as conn:
            rows = conn.execute(self._q(f"SELECT version, bounds FROM {{s}}.{CHANGES} WHERE layer = %s AND "
                                        f"version > %s ORDER BY version"), [name, since_version]).fetchall()
        return [(version, [tuple(b) for b in json.loads(bounds)] if bounds else None) for version, bounds in rows]

    # writes ---------------------------------------------------------------------------------

    def _next_version(self, conn, record: LayerRecord, suffix: str = "") -> tuple[int, str | None]:
        """The version a write of `record` gets (a copied record keeps its own; a name no layer holds)
        and the current table."""
        name = record.name
        row = conn.execute(self._q(f'SELECT version, "table" FROM {{s}}.{CATALOGUE} WHERE name = %s FOR UPDATE'),
                           [name]).fetchone()
        logged = conn.execute(self._q(f"SELECT MAX(version) FROM {{s}}.{CHANGES} WHERE layer = %s"),
                              [name]).fetchone()[0]
        version = max(max(row[0] if row else 0, logged or 0) + 1, record.version)
        return free_version(name, version, self._held_tables(conn), suffix), (row[1] if row else None)

    def _held_tables(self, conn) -> set[str]:
        """The tables and raster files that catalogue rows point at."""
        rows = conn.execute(self._q(f'SELECT "table" FROM {{s}}.{CATALOGUE} WHERE "table" IS NOT NULL')).fetchall()
        return {r[0] for r in rows}

    def _drop_unheld(self, conn, tables: list[str]) -> None:
        """Drop those of `tables` that no catalogue row points at (a city made by an older twin may have
        two layers pointing at one table)."""
        held = self._held_tables(conn)
        dropped = [table for table in dict.fromkeys(tables) if table not in held]
        for table in dropped:
            conn.execute(self._q("DROP TABLE IF EXISTS {s}.{t}", t=table))
        if dropped:
            conn.execute(self._q(f"DELETE FROM {{s}}.{LINE_LENGTHS} WHERE table_name = ANY(%s)"), [dropped])

    def replace_features(self, record: LayerRecord, frame: gpd.GeoDataFrame,
                         progress: Progress | None = None, changed: list[Bounds] | None = None) -> LayerRecord:
        """Write `frame` as a new versioned table, its uid index and length sums (twin.store.measures),
        and swap it in, all in one transaction."""
        import psycopg
        from psycopg import sql

        frame, geometry_type = uniform_geometries(frame)
        geometry_name = frame.geometry.name
        table = pa.table(frame.reset_index(drop=True).to_arrow(geometry_encoding="WKB"))
        fields = []
        for i, column in enumerate(table.schema):
            if column.name == geometry_name:
                continue
            pg_type, copy_type, read = _column_type(column.type, column.name)
            pg_name = column.name
            if pg_name in ("fid", "geom") or len(pg_name.encode()) > MAX_IDENTIFIER_BYTES or "\x00" in pg_name:
                pg_name = f"_c{i}"
            fields.append({"name": column.name, "column": pg_name, "type": pg_type, "copy": copy_type, "read": read})
        geoms = np.asarray(frame.geometry.values, dtype=object)
        sums = line_lengths(frame)
        srid = self._srid(frame.crs or record.crs)
        column_type = _geometry_column(geometry_type, srid)
        try:
            with self._connection() as conn, conn.transaction():
                self._lock(conn, f"layer:{record.name}")
                record.version, _ = self._next_version(conn, record)
                record.table = table_name(record.name, record.version)
                target = self._q("{s}.{t}", t=record.table)
                conn.execute(self._q("DROP TABLE IF EXISTS {s}.{t}", t=record.table))
                conn.execute(self._q(f"DELETE FROM {{s}}.{LINE_LENGTHS} WHERE table_name = %s"), [record.table])
                columns = ", ".join(f'{_ident(f["column"])} {f["type"]}' for f in fields)
                conn.execute(self._q(f"CREATE TABLE {{s}}.{{t}} (fid bigint NOT NULL, "
                                     f"{columns + ', ' if columns else ''}geom {column_type})", t=record.table))
                names = ", ".join(["fid", *(_ident(f["column"]) for f in fields), "geom"])
                with conn.cursor() as cur, cur.copy(self._q(f"COPY {{s}}.{{t}} ({names}) FROM STDIN (FORMAT BINARY)",
                                                            t=record.table)) as copy:
                    copy.set_types(["int8", *(f["copy"] for f in fields), "bytea"])
                    start = 0
                    for batch in table.to_batches(WRITE_BATCH):
                        n = batch.num_rows
                        part = geoms[start:start + n]
                        if srid:
                            part = shapely.set_srid(part, srid)
                        wkb = shapely.to_wkb(part, flavor="extended", include_srid=bool(srid))
                        cols = [_column_values(batch.column(batch.schema.get_field_index(f["name"])), f["copy"])
                                for f in fields]
                        for row in zip(range(start + 1, start + n + 1), *cols, wkb.tolist()):
                            copy.write_row(row)
                        start += n
                        if progress:
                            progress(n)
                conn.execute(sql_format("ALTER TABLE {} ADD PRIMARY KEY (fid)", target))
                conn.execute(sql_format("CREATE INDEX ON {} USING gist (geom)", target))
                uid = next((f for f in fields if f["name"] == "uid"), None)
                if uid is not None:  # a sensor's pipe_id, a feature's page: features looked up by uid
                    conn.execute(sql_format("CREATE INDEX ON {} ({})", target, sql.Identifier(uid["column"])))
                if sums is not None:
                    with conn.cursor() as cur:
                        cur.executemany(self._q(f"INSERT INTO {{s}}.{LINE_LENGTHS} VALUES (%s, %s, %s, %s, %s)"),
                                        [(record.table, *row) for row in sums])
                conn.execute(sql_format("ANALYZE {}", target))
                self._swap(conn, record, changed, {"geometry": geometry_name, "columns": [
                    {k: f[k] for k in ("name", "column", "read")} for f in fields]})
        except psycopg.Error as exc:
            raise StoreError(f"writing layer {record.name!r} to {self.url} failed: {_explain(exc)}") from exc
        return record

    def _srid(self, crs) -> int:
        """The SRID of the city CRS when the server knows it as an EPSG code, else 0."""
        try:
            epsg = CRS.from_user_input(crs).to_epsg() if crs is not None else None
        except Exception:
            epsg = None
        if not epsg:
            return 0
        with self._connection() as conn:
            known = conn.execute("SELECT 1 FROM spatial_ref_sys WHERE srid = %s", [epsg]).fetchone()
        return epsg if known else 0

    def replace_raster(self, record: LayerRecord, staged: Path) -> LayerRecord:
        """Move a staged COG into the city folder as the raster of layer `record.name`; swap the catalogue."""
        with self._connection() as conn:
            with conn.transaction():
                self._lock(conn, f"layer:{record.name}")
                record.version, old = self._next_version(conn, record, suffix=".postgis.tif")
                record.table = f"{table_name(record.name, record.version)}.postgis.tif"
                os.replace(staged, self.root / record.table)
                self._swap(conn, record, None, None)
                old_file = old if old and old not in self._held_tables(conn) else None
        if old_file:
            (self.root / old_file).unlink(missing_ok=True)
        return record

    def _swap(self, conn, record: LayerRecord, changed: list[Bounds] | None, fields: dict | None) -> None:
        """Point the catalogue at the record's table, log the change, drop the old table: in `conn`'s transaction."""
        from psycopg.types.json import Jsonb

        values = record.to_dict()
        values["bounds"] = json.dumps(record.bounds) if record.bounds else None
        values["bounds_wgs84"] = json.dumps(record.bounds_wgs84) if record.bounds_wgs84 else None
        values["notes"] = json.dumps(record.notes, ensure_ascii=False)
        names = [*_RECORD_FIELDS, "fields"]
        values["fields"] = Jsonb(fields) if fields is not None else None
        old = conn.execute(self._q(f'SELECT "table", kind FROM {{s}}.{CATALOGUE} WHERE name = %s'),
                           [record.name]).fetchone()
        quoted = ", ".join(f'"{n}"' for n in names)
        updates = ", ".join(f'"{n}" = excluded."{n}"' for n in names if n != "name")
        conn.execute(self._q(f"INSERT INTO {{s}}.{CATALOGUE} ({quoted}) VALUES ({', '.join('%s' for _ in names)}) "
                             f"ON CONFLICT (name) DO UPDATE SET {updates}"), [values[n] for n in names])
        conn.execute(self._q(f"INSERT INTO {{s}}.{CHANGES} VALUES (%s, %s, %s) ON CONFLICT (layer, version) "
                             f"DO UPDATE SET bounds = excluded.bounds"),
                     [record.name, record.version, json.dumps(changed) if changed is not None else None])
        # leftovers of this layer (in older twins' naming too, or made by hand) go with the old version
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s",
                                             [self.schema]).fetchall()]
        doomed = version_tables(record.name, tables)
        if old and old[0] and old[1] != "dem":
            doomed.append(old[0])
        self._drop_unheld(conn, doomed)
        self._committing(conn, "layer", {"layer": record.name, "version": record.version, "changed": changed})

    def delete_layer(self, name: str) -> None:
        """Remove a layer from the catalogue and drop its table (or its raster file)."""
        with self._connection() as conn:
            with conn.transaction():
                self._lock(conn, f"layer:{name}")
                found = self._records(conn, name)
                if not found:
                    known = [r.name for r in self._records(conn)]
                    raise UnknownLayer(f"no layer {name!r} in {self.url}; layers: {known}")
                record = found[0]
                conn.execute(self._q(f"DELETE FROM {{s}}.{CATALOGUE} WHERE name = %s"), [name])
                conn.execute(self._q(f"INSERT INTO {{s}}.{CHANGES} VALUES (%s, %s, NULL) ON CONFLICT (layer, version) "
                                     f"DO UPDATE SET bounds = NULL"), [name, record.version + 1])
                if record.kind != "dem" and record.table:
                    self._drop_unheld(conn, [record.table])
                old_file = record.table if record.kind == "dem" else None
                if old_file in self._held_tables(conn):
                    old_file = None
                self._committing(conn, "layer", {"layer": name, "version": record.version + 1, "changed": None})
        if old_file:
            (self.root / old_file).unlink(missing_ok=True)

    # observations, statuses and status events ---------------------------------------------

    def _ensure_partitions(self, times: Sequence[int]) -> None:
        """Make the monthly partitions these observation times fall in (once per month and process)."""
        months = np.unique(np.asarray(times, dtype="int64").astype("datetime64[ms]").astype("datetime64[M]"))
        missing = [m for m in months if str(m) not in self._partitions]
        if not missing:
            return
        with self._connection() as conn, conn.transaction():
            self._lock(conn, "partitions")
            for month in missing:
                lo = int(month.astype("datetime64[ms]").astype("int64"))
                hi = int((month + 1).astype("datetime64[ms]").astype("int64"))
                name = f"{OBSERVATIONS}_{re.sub(r'[^0-9]', '_', str(month))}"
                conn.execute(self._q("CREATE TABLE IF NOT EXISTS {s}.{p} PARTITION OF {s}.{o} "
                                     "FOR VALUES FROM (%s) TO (%s)" % (lo, hi), p=name, o=OBSERVATIONS))
                self._partitions.add(str(month))

    def append_observations(self, rows: Sequence[ObservationRow], *, assess: Assess | None = None,
                            counts: Mapping[str, int] | None = None) -> AppendResult:
        """Store a batch in one transaction (see `Store.append_observations`)."""
        result = AppendResult()
        if rows:
            self._ensure_partitions([r[1] for r in rows])
        with self._connection() as conn, conn.transaction():
            self._lock(conn, "live")
            if rows:
                sensors = list({r[0] for r in rows})
                known = dict(conn.execute(self._q(f"SELECT sensor_id, time FROM {{s}}.{LATEST} "
                                                  f"WHERE sensor_id = ANY(%s)"), [sensors]).fetchall())
                columns = list(zip(*rows))
                cur = conn.execute(self._q(
                    f"INSERT INTO {{s}}.{OBSERVATIONS} SELECT * FROM unnest(%s::text[], %s::int8[], %s::float8[], "
                    f"%s::text[]) ON CONFLICT DO NOTHING"),
                    [list(columns[0]), [int(t) for t in columns[1]], [float(v) for v in columns[2]],
                     list(columns[3]) if len(columns) > 3 else [None] * len(rows)])
                result.stored = cur.rowcount
                result.duplicates = len(rows) - result.stored
                moved = advance_latest(rows, known, result)
                if moved:
                    m = list(zip(*moved.values()))
                    conn.execute(self._q(
                        f"INSERT INTO {{s}}.{LATEST} AS l SELECT * FROM unnest(%s::text[], %s::int8[], %s::float8[], "
                        f"%s::text[]) ON CONFLICT (sensor_id) DO UPDATE SET time = excluded.time, "
                        f"value = excluded.value, quality = excluded.quality WHERE excluded.time > l.time"),
                        [list(m[0]), [int(t) for t in m[1]], [float(v) for v in m[2]], list(m[3])])
                if assess is not None and moved:
                    result.events = self._record(conn, assess(moved, self._statuses(conn)))
            tally = {**(counts or {})}
            for outcome in ("stored", "duplicates", "late"):
                if getattr(result, outcome):
                    tally[outcome] = tally.get(outcome, 0) + getattr(result, outcome)
            tally = {k: v for k, v in tally.items() if v}
            if tally:
                conn.execute(self._q(f"INSERT INTO {{s}}.{COUNTS} AS c SELECT * FROM unnest(%s::text[], %s::int8[]) "
                                     f"ON CONFLICT (outcome) DO UPDATE SET count = c.count + excluded.count"),
                             [list(tally), [int(v) for v in tally.values()]])
        return result

    def update_statuses(self, assess: Assess) -> list[dict]:
        """Run `assess` over every latest reading in one transaction; record its changes as events."""
        with self._connection() as conn, conn.transaction():
            self._lock(conn, "live")
            readings = {r[0]: Reading(*r) for r in conn.execute(self._q(f"SELECT * FROM {{s}}.{LATEST}"))}
            return self._record(conn, assess(readings, self._statuses(conn)))

    def _statuses(self, conn) -> dict[tuple[str, str], str]:
        rows = conn.execute(self._q(f"SELECT layer, uid, status FROM {{s}}.{STATUS}")).fetchall()
        return {(layer, uid): status for layer, uid, status in rows}

    def _record(self, conn, changes: list[StatusChange]) -> list[dict]:
        """Write status changes that differ from the stored ones, each with its event (under the live lock)."""
        if not changes:
            return []
        stored = self._statuses(conn)
        time = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        kept = []
        for change in changes:
            previous = stored.get((change.layer, change.uid))
            if previous == change.status:
                continue
            stored[(change.layer, change.uid)] = change.status
            kept.append((change, previous))
        if not kept:
            return []
        with conn.cursor() as cur:
            cur.executemany(self._q(f"INSERT INTO {{s}}.{STATUS} VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT "
                                    f"(layer, uid) DO UPDATE SET status = excluded.status, since = excluded.since, "
                                    f"sensor = excluded.sensor, value = excluded.value"),
                            [(c.layer, c.uid, c.status, time, c.sensor, c.value) for c, _ in kept])
            cur.executemany(self._q(f"INSERT INTO {{s}}.{EVENTS} (time, layer, uid, status, previous, sensor, value) "
                                    f"VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id"),
                            [(time, c.layer, c.uid, c.status, p, c.sensor, c.value) for c, p in kept], returning=True)
            ids = []
            while True:
                ids.append(cur.fetchone()[0])
                if not cur.nextset():
                    break
        events = [event_from_row((i, time, c.layer, c.uid, c.status, p, c.sensor, c.value))
                  for i, (c, p) in zip(ids, kept)]
        self._committing(conn, "status", {"events": events})
        return events

    def latest(self, sensor_ids: Sequence[str] | None = None) -> list[Reading]:
        """The latest reading of each sensor (of `sensor_ids`, or all), by sensor id."""
        with self._connection() as conn:
            if sensor_ids is None:
                rows = conn.execute(self._q(f'SELECT * FROM {{s}}.{LATEST} ORDER BY sensor_id COLLATE "C"')).fetchall()
            else:
                rows = conn.execute(self._q(f'SELECT * FROM {{s}}.{LATEST} WHERE sensor_id = ANY(%s) '
                                            f'ORDER BY sensor_id COLLATE "C"'), [list(set(sensor_ids))]).fetchall()
        return [Reading(*r) for r in rows]

    def history(self, sensor_id: str, start_ms: int | None = None, end_ms: int | None = None,
                bucket_ms: int | None = None, limit: int = 10_000) -> list[HistoryBucket]:
        """A sensor's observations in [start, end), oldest first, optionally min/mean/max per bucket."""
        lo = start_ms if start_ms is not None else -(2**62)
        hi = end_ms if end_ms is not None else 2**62
        with self._connection() as conn:
            if bucket_ms:
                b = int(bucket_ms)
                bucket = f"(time - ((time %% {b}) + {b}) %% {b})"  # floor division that also holds before 1970
                rows = conn.execute(self._q(
                    f"SELECT {bucket} AS b, MIN(value), AVG(value), MAX(value), COUNT(*) FROM {{s}}.{OBSERVATIONS} "
                    f"WHERE sensor_id = %s AND time >= %s AND time < %s GROUP BY b ORDER BY b LIMIT %s"),
                    [sensor_id, lo, hi, limit]).fetchall()
            else:
                rows = conn.execute(self._q(
                    f"SELECT time, value, value, value, 1 FROM {{s}}.{OBSERVATIONS} "
                    f"WHERE sensor_id = %s AND time >= %s AND time < %s ORDER BY time LIMIT %s"),
                    [sensor_id, lo, hi, limit]).fetchall()
        return [HistoryBucket(*r) for r in rows]

    def reporting_sensors(self, start_ms: int, end_ms: int) -> set[str]:
        """Ids of the sensors with at least one observation in (start, end]."""
        with self._connection() as conn:
            rows = conn.execute(self._q(
                f"SELECT sensor_id FROM {{s}}.{LATEST} AS l WHERE EXISTS (SELECT 1 FROM {{s}}.{OBSERVATIONS} AS o "
                f"WHERE o.sensor_id = l.sensor_id AND o.time > %s AND o.time <= %s)"),
                [int(start_ms), int(end_ms)]).fetchall()
        return {r[0] for r in rows}

    def statuses(self) -> dict[tuple[str, str], str]:
        """The stored status of every feature that has one, by (layer, uid)."""
        with self._connection() as conn:
            return self._statuses(conn)

    def events_since(self, after_id: int, limit: int = 1000) -> list[dict]:
        """Status events with an id above `after_id`, oldest first."""
        with self._connection() as conn:
            rows = conn.execute(self._q(f"SELECT * FROM {{s}}.{EVENTS} WHERE id > %s ORDER BY id LIMIT %s"),
                                [after_id, limit]).fetchall()
        return [event_from_row(r) for r in rows]

    def last_event_id(self) -> int:
        """The id of the newest status event (0 when none)."""
        with self._connection() as conn:
            return conn.execute(self._q(f"SELECT COALESCE(MAX(id), 0) FROM {{s}}.{EVENTS}")).fetchone()[0]

    def ingest_counts(self) -> dict[str, int]:
        """How many observations each ingest outcome has had, over the city's life."""
        with self._connection() as conn:
            rows = conn.execute(self._q(f'SELECT outcome, count FROM {{s}}.{COUNTS} ORDER BY outcome COLLATE "C"'))
            return {k: int(v) for k, v in rows.fetchall()}

    # moving a city between stores -----------------------------------------------------------

    def live_counts(self) -> dict[str, int]:
        """Rows in each live table (observations, latest, status, events, counts)."""
        with self._connection() as conn:
            return {name: conn.execute(self._q(f"SELECT COUNT(*) FROM {{s}}.{table}")).fetchone()[0]
                    for name, (table, *_) in _LIVE_COLUMNS.items()}

    def read_live(self, name: str, batch: int = 50_000) -> Iterator[list[tuple]]:
        """All rows of one live table, in key order, `batch` at a time."""
        table, columns, _, key = _LIVE_COLUMNS[name]
        with self._connection() as conn, conn.transaction(), conn.cursor(name=f"twin_read_{name}") as cur:
            cur.execute(self._q(f"SELECT {', '.join(columns)} FROM {{s}}.{table} ORDER BY {key}"))
            while chunk := cur.fetchmany(batch):
                yield [tuple(r) for r in chunk]

    def write_live(self, name: str, rows: Sequence[tuple]) -> None:
        """Add rows to one live table as they are (ids, times and counts kept; no status rules run)."""
        if not rows:
            return
        table, columns, types, _ = _LIVE_COLUMNS[name]
        if name == "observations":
            self._ensure_partitions([r[1] for r in rows])
        with self._connection() as conn, conn.transaction():
            self._lock(conn, "live")
            with conn.cursor() as cur, cur.copy(self._q(f"COPY {{s}}.{table} ({', '.join(columns)}) FROM STDIN "
                                                        f"(FORMAT BINARY)")) as copy:
                copy.set_types(list(types))
                for row in rows:
                    copy.write_row(row)
            if name == "events":
                conn.execute(self._q(f"SELECT setval(pg_get_serial_sequence('{self.schema}.{EVENTS}', 'id'), "
                                     f"(SELECT MAX(id) FROM {{s}}.{EVENTS}))"))


def _configure(conn) -> None:
    """Make PostGIS's functions and types visible on a new connection wherever the extension lives."""
    row = conn.execute("SELECT n.nspname, n.nspname = ANY(current_schemas(false)) FROM pg_extension e "
                       "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis'").fetchone()
    if row and not row[1]:
        conn.execute("SELECT set_config('search_path', current_setting('search_path') || ', ' || quote_ident(%s), "
                     "false)", [row[0]])


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql_format(template: str, *parts):
    """A SQL statement with composed parts filled in."""
    from psycopg import sql

    return sql.SQL(template).format(*parts)


_PG_GEOMETRY = {"Point": "Point", "LineString": "LineString", "Polygon": "Polygon", "MultiPoint": "MultiPoint",
                "MultiLineString": "MultiLineString", "MultiPolygon": "MultiPolygon"}


def _geometry_column(geometry_type: str, srid: int) -> str:
    """The column type: typed (QGIS and others read it) when the layer has one type and an SRID."""
    base, _, z = geometry_type.partition(" ")
    if base not in _PG_GEOMETRY or not srid:
        return "geometry"
    return f"geometry({_PG_GEOMETRY[base]}{'Z' if z == 'Z' else ''}, {srid})"
