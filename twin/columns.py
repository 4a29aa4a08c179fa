"""Read only what an indicator needs from a city's layers: some columns, the geometry or not, counts.

An indicator over a million pipe segments needs their `uid`, `utility` and geometry, not
their material, diameter and depth; a share of smart lamps needs two numbers, not 200,000
rows. `LayerColumns` reads the layers of one kind that way. On the GeoPackage store it
reads the layer tables directly (pyogrio's Arrow reader for large tables, SQLite for small
ones and for counts). On PostGIS it reads the length sums and looks features up through the
store's own methods (`PostgisStore.line_lengths`, `PostgisStore.look_up`), and reads the
rest with `Store.read_features`, as on any other store.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
import contextlib
import copy
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from twin.store import LayerRecord, Store
from twin.store.geopackage import CATALOGUE, pooled_reader
from twin.store.measures import FLAG_COUNTS, LINE_LENGTHS, LineLength

__all__ = ["GeometryColumn", "LayerColumns", "LookedUp", "TRUE_WORDS", "gpkg_geometries", "in_parallel", "split_work"]

TRUE_WORDS = {"true", "t", "yes", "y", "1", "是", "有", "smart", "智能", "智慧"}
WORKERS = min(os.cpu_count() or 1, 4)  # threads for shapely's vectorised work (reading a table in two halves
# at once was slower: SQLite and GDAL do not overlap well)
SMALL = 5_000  # tables up to this many rows are read with sqlite3 (GDAL's open costs more than the read)
PARALLEL_COUNT = 50_000  # tables from this many rows are counted by WORKERS threads, a range of fids each


def gpkg_geometries(blobs: Sequence[bytes | None]) -> np.ndarray:
    """Shapely geometries from GeoPackage geometry blobs (header and envelope, then WKB).

    Examples
    --------
    >>> header = b"GP\\x00\\x01" + (0).to_bytes(4, "little")  # no envelope, little-endian srs_id 0
    >>> gpkg_geometries([header + shapely.Point(1, 2).wkb, None])
    array([<POINT (1 2)>, None], dtype=object)
    """
    wkb = []
    for blob in blobs:
        if blob is None:
            wkb.append(None)
            continue
        flags = blob[3]
        envelope = (0, 32, 48, 48, 64)[(flags >> 1) & 0x07] if (flags >> 1) & 0x07 <= 4 else 0
        wkb.append(None if flags & 0x10 else blob[8 + envelope:])
    return shapely.from_wkb(np.asarray(wkb, dtype=object))


class GeometryColumn:
    """A layer's geometries, decoded from WKB only where needed.

    Lengths and bounding boxes of plain line strings come straight from the WKB bytes,
    in numpy: for a million pipe segments that is a tenth of the time of making a
    million shapely geometries first. Anything else (multi-lines, polygons, big-endian
    WKB) is decoded with shapely.

    Examples
    --------
    >>> lines = GeometryColumn.from_wkb(pa.array([shapely.LineString([(0, 0), (3, 4), (3, 5)]).wkb]))
    >>> lines.lengths().tolist(), lines.bounds().tolist()
    ([6.0], [[0.0, 0.0, 3.0, 5.0]])
    """

    def __init__(self, geoms: np.ndarray | None = None, wkb: pa.Array | None = None) -> None:
        self._geoms = geoms
        self._wkb = wkb
        self._coords: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._parsed = False

    @classmethod
    def from_wkb(cls, wkb: pa.Array | pa.ChunkedArray) -> "GeometryColumn":
        """Geometries as WKB in an Arrow binary array."""
        if isinstance(wkb, pa.ChunkedArray):
            wkb = wkb.combine_chunks()
        if isinstance(wkb, pa.ExtensionArray):
            wkb = wkb.storage
        return cls(wkb=wkb)

    def __len__(self) -> int:
        return len(self._geoms) if self._geoms is not None else len(self._wkb)

    def geometries(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Shapely geometries (of `rows`, or all)."""
        if self._geoms is not None:
            return self._geoms if rows is None else self._geoms[rows]
        if rows is None:
            self._geoms = split_work(shapely.from_wkb, self._wkb.to_numpy(zero_copy_only=False))
            return self._geoms
        return shapely.from_wkb(self._wkb.take(pa.array(np.asarray(rows, dtype=np.int64))).to_numpy(
            zero_copy_only=False))

    def _lines(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """x, y of every vertex and each geometry's first vertex, when every geometry is a plain line string."""
        if self._parsed:
            return self._coords
        self._parsed = True
        wkb = self._wkb
        if wkb is None or wkb.null_count or not len(wkb) or not pa.types.is_binary(wkb.type):
            return None
        n = len(wkb)
        offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset:wkb.offset + n + 1].astype(np.int64)
        data = wkb.buffers()[2]
        raw = np.frombuffer(data, dtype=np.uint8)
        start = offsets[:-1]
        if (offsets[1:] - start < 9).any() or (raw[start] != 1).any():
            return None
        kind = raw[start + 1].astype(np.uint32) | raw[start + 2].astype(np.uint32) << 8 | \
            raw[start + 3].astype(np.uint32) << 16 | raw[start + 4].astype(np.uint32) << 24
        dims = np.select([kind == 2, kind == 1002, kind == 2002, kind == 3002], [2, 3, 3, 4], 0)
        if (dims == 0).any():
            return None
        count = raw[start + 5].astype(np.int64) | raw[start + 6].astype(np.int64) << 8 | \
            raw[start + 7].astype(np.int64) << 16 | raw[start + 8].astype(np.int64) << 24
        if (offsets[1:] - start != 9 + count * dims * 8).any():
            return None
        first = np.r_[0, np.cumsum(count)]
        total = int(first[-1])
        body = None
        if (dims == dims[0]).all():
            # cut the 9-byte headers off: what is left is every coordinate, one float64 after another
            import pyarrow.compute as pc

            body = pc.binary_slice(wkb, 9, 1 << 30)
            if body.offset or np.frombuffer(body.buffers()[1], dtype=np.int32)[0] or total == 0:
                body = None
        if body is not None:
            d = int(dims[0])
            values = np.frombuffer(body.buffers()[2], dtype="<f8", count=total * d)
            x, y = values[0::d], values[1::d]
        else:
            x, y = np.empty(total), np.empty(total)
            # byte offset of each vertex's x: the geometry's first coordinate, then dims doubles per vertex
            at = np.arange(total, dtype=np.int64) * 8
            at *= np.repeat(dims, count)
            at += np.repeat(start + 9 - first[:-1] * dims * 8, count)
            shift = at % 8
            for r in range(8):
                # coordinates at the same byte offset modulo 8 are one float64 view of the buffer
                sel = np.flatnonzero(shift == r)
                if not len(sel):
                    continue
                view = np.frombuffer(data, dtype="<f8", count=(len(raw) - r) // 8, offset=r)
                index = (at[sel] - r) // 8
                x[sel], y[sel] = view[index], view[index + 1]
        self._coords = (x, y, first)
        return self._coords

    def lengths(self) -> np.ndarray:
        """Horizontal length of each geometry."""
        lines = self._lines()
        if lines is None:
            return shapely.length(shapely.force_2d(self.geometries()))
        x, y, first = lines
        out = np.zeros(len(first) - 1)
        if len(x) < 2:
            return out
        segment = np.empty(len(x))
        np.hypot(np.diff(x), np.diff(y), out=segment[:-1])
        segment[-1] = 0.0
        segment[first[1:-1] - 1] = 0.0  # from one line's last vertex to the next line's first: no segment
        has = np.diff(first) > 0
        out[has] = np.add.reduceat(segment, first[:-1][has])
        return out

    def bounds(self) -> np.ndarray:
        """(minx, miny, maxx, maxy) of each geometry (NaN for empty ones)."""
        lines = self._lines()
        if lines is None:
            return shapely.bounds(self.geometries())
        x, y, first = lines
        out = np.full((len(first) - 1, 4), np.nan)
        has = np.diff(first) > 0
        at = first[:-1][has]
        out[has] = np.column_stack([np.minimum.reduceat(x, at), np.minimum.reduceat(y, at),
                                    np.maximum.reduceat(x, at), np.maximum.reduceat(y, at)])
        return out


def _string_columns(table: pa.Table) -> pd.DataFrame:
    """A data frame of an Arrow table, strings kept in Arrow (comparing a million of them stays in C++)."""
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow"),
                                         pa.large_string(): pd.StringDtype("pyarrow")}.get)


_POOL: ThreadPoolExecutor | None = None


def in_parallel(work, parts: list) -> list:
    """work(part) for each part, on a small thread pool when there is more than one."""
    global _POOL
    if len(parts) < 2:
        return [work(p) for p in parts]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(WORKERS, thread_name_prefix="twin-read")
    return list(_POOL.map(work, parts))


def split_work(function, *arrays: np.ndarray, min_size: int = 50_000) -> np.ndarray:
    """function(*arrays) in WORKERS slices at once (shapely's vectorised functions release the GIL).

    Examples
    --------
    >>> split_work(shapely.area, np.array([shapely.box(0, 0, 1, 1)] * 3), min_size=1).tolist()
    [1.0, 1.0, 1.0]
    """
    n = len(arrays[0])
    if n < min_size or WORKERS < 2:
        return function(*arrays)
    cuts = np.linspace(0, n, WORKERS + 1).astype(np.int64)
    parts = in_parallel(lambda k: function(*(a[cuts[k]:cuts[k + 1]] for a in arrays)), list(range(WORKERS)))
    return np.concatenate(parts)


def _literal(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


_CATALOGUES: dict[str, tuple[tuple[int, int], list[LayerRecord]]] = {}  # per GeoPackage: the last one read


class LookedUp(NamedTuple):
    """Some features of a kind: their columns, geometries, and where they are (layer number, fid)."""

    frame: pd.DataFrame
    geoms: GeometryColumn
    layer: np.ndarray
    fid: np.ndarray

    def __len__(self) -> int:
        return len(self.frame)

    def merge(self, other: "LookedUp") -> "LookedUp":
        """Both sets of features, each once, in reading order."""
        layer, fid = np.concatenate([self.layer, other.layer]), np.concatenate([self.fid, other.fid])
        key = np.unique(np.column_stack([layer, fid]), axis=0, return_index=True)[1]
        geoms = np.concatenate([self.geoms.geometries(), other.geoms.geometries()])[key]
        frame = pd.concat([self.frame, other.frame], ignore_index=True).iloc[key].reset_index(drop=True)
        return LookedUp(frame, GeometryColumn(geoms), layer[key], fid[key])


def _looked_up(parts: list[tuple[pd.DataFrame, np.ndarray, np.ndarray]]) -> LookedUp:
    """The (frame, geometries, fids) found in each layer of a kind, in order, as one LookedUp."""
    frame = pd.concat([p[0] for p in parts], ignore_index=True)
    layer = np.concatenate([np.full(len(p[2]), k, dtype=np.int64) for k, p in enumerate(parts)])
    return LookedUp(frame, GeometryColumn(np.concatenate([p[1] for p in parts])), layer,
                    np.concatenate([p[2] for p in parts]).astype(np.int64))


class LayerColumns:
    """The layers of one kind in a city's store, read a few columns at a time."""

    def __init__(self, store: Store, records: Sequence[LayerRecord], crs) -> None:
        self.store = store
        self.records = list(records)
        self.crs = crs
        self._gpkg = getattr(store, "path", None) if type(store).__name__ == "GeoPackageStore" else None
        self._postgis = store if type(store).__name__ == "PostgisStore" else None

    @staticmethod
    def catalogue(store: Store) -> list[LayerRecord]:
        """The store's layer catalogue (on a GeoPackage, read over the pooled connection)."""
        if type(store).__name__ != "GeoPackageStore":
            return store.layers()
        with pooled_reader(store.path) as conn:
            # data_version changes when another connection commits: until then the catalogue is the one read
            version = (conn.serial, conn.execute("PRAGMA data_version").fetchone()[0])
            cached = _CATALOGUES.get(str(store.path))
            if cached is None or cached[0] != version:
                cursor = conn.execute(f"SELECT * FROM {CATALOGUE} ORDER BY name")
                names = [d[0] for d in cursor.description]
                cached = _CATALOGUES[str(store.path)] = (version, [LayerRecord.from_row(dict(zip(names, row)))
                                                                   for row in cursor.fetchall()])
        return [copy.copy(record) for record in cached[1]]

    # one table --------------------------------------------------------------------------

    def _connect(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return pooled_reader(self._gpkg)

    def _table_columns(self, conn: sqlite3.Connection, table: str) -> tuple[list[str], str | None]:
        names = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        geom = conn.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)).fetchone()
        return names, geom[0] if geom else None

    def _read_one(self, record: LayerRecord, columns: Sequence[str] | None, geometry: bool,
                  where: tuple[str, Sequence[str]] | None = None) -> tuple[pd.DataFrame, GeometryColumn | None]:
        if self._gpkg is None:
            frame = self.store.read_features(record.name, columns=list(columns) if columns is not None else None)
            if where is not None:
                frame = frame[frame[where[0]].isin(list(where[1])).to_numpy(dtype=bool)] \
                    if where[0] in frame.columns else frame.iloc[:0]
            geoms = GeometryColumn(np.asarray(frame.geometry.values, dtype=object)) if geometry else None
            return pd.DataFrame(frame.drop(columns=frame.geometry.name)).reset_index(drop=True), geoms
        with self._connect() as conn:
            names, geom = self._table_columns(conn, record.table)
            wanted = [c for c in (names if columns is None else columns) if c in names and c not in ("fid", geom)]
            read_geometry = geometry and geom is not None
            condition = None
            if where is not None:
                if where[0] not in names:  # no such column: no feature has one of those values
                    condition = "0"
                else:
                    condition = f'"{where[0]}" IN ({", ".join(_literal(v) for v in where[1]) or "NULL"})'
            if record.feature_count <= SMALL or not read_geometry:
                select = [f'"{c}"' for c in wanted] + ([f'"{geom}"'] if read_geometry else [])
                rows = conn.execute(f'SELECT {", ".join(select) or "1"} FROM "{record.table}"'
                                    f'{" WHERE " + condition if condition else ""} ORDER BY fid').fetchall()
                geoms = GeometryColumn(gpkg_geometries([row[-1] for row in rows])) if read_geometry else None
                if not wanted:
                    return pd.DataFrame(index=pd.RangeIndex(len(rows))), geoms
                frame = pd.DataFrame.from_records([row[:len(wanted)] for row in rows], columns=wanted)
                return self._types(conn, record.table, frame), geoms
        import pyogrio

        _, table = pyogrio.read_arrow(self._gpkg, layer=record.table, columns=wanted, read_geometry=True,
                                      where=condition)
        geoms = GeometryColumn.from_wkb(table.column(table.num_columns - 1))
        return _string_columns(table.remove_column(table.num_columns - 1)), geoms

    def _types(self, conn: sqlite3.Connection, table: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Booleans as booleans (the GeoPackage keeps them as integers), as the Arrow reader gives them."""
        booleans = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")') if row[2].upper() == "BOOLEAN"}
        for column in booleans & set(frame.columns):
            values = frame[column]
            frame[column] = values.astype("boolean") if values.isna().any() else values.astype(bool)
        return frame

    # the kind's layers together ---------------------------------------------------------

    def read(self, columns: Sequence[str] | None = None, geometry: bool = True,
             where: tuple[str, Sequence[str]] | None = None) -> tuple[pd.DataFrame, GeometryColumn | None]:
        """The kind's attributes (every layer of it, one after another) with `columns` (None: all), and its
        geometries (decoded when first asked for); only the features whose `where[0]` is one of `where[1]`."""
        parts = [self._read_one(r, columns, geometry, where) for r in self.records]
        frame = parts[0][0] if len(parts) == 1 else pd.concat([p[0] for p in parts], ignore_index=True)
        if not geometry:
            return frame, None
        if len(parts) == 1:
            return frame, parts[0][1]
        return frame, GeometryColumn(np.concatenate([p[1].geometries() if p[1] is not None
                                                     else np.full(len(p[0]), None, dtype=object) for p in parts]))

    def frame(self, columns: Sequence[str] | None = None, geometry: bool = True) -> gpd.GeoDataFrame | pd.DataFrame:
        """The kind's features with `columns` (None: all) as a GeoDataFrame (a DataFrame without geometry)."""
        frame, geoms = self.read(columns, geometry)
        if geoms is None:
            return frame
        return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geoms.geometries(), index=frame.index, crs=self.crs),
                                crs=self.crs)

    def line_lengths(self) -> list[LineLength] | None:
        """The length sums the store made when it wrote each layer of the kind (twin.store.measures);
        None when a layer has none (not lines, an older city, or a store that makes none)."""
        if self._postgis is not None:
            by_table = self._postgis.line_lengths([record.table for record in self.records])
            if any(record.table not in by_table for record in self.records):
                return None
            return [row for record in self.records for row in by_table[record.table]]
        if self._gpkg is None:
            return None
        sums: list[LineLength] = []
        with self._connect() as conn:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (LINE_LENGTHS,)).fetchone():
                return None
            for record in self.records:
                rows = conn.execute(f"SELECT by_column, value, segments, length_m FROM {LINE_LENGTHS} "
                                    f"WHERE table_name = ?", (record.table,)).fetchall()
                if not rows:
                    return None
                sums.extend(LineLength(*row) for row in rows)
        return sums

    def look_up(self, columns: Sequence[str], *, uids: Sequence[str] = (),
                near: tuple[np.ndarray, float] | None = None) -> "LookedUp | None":
        """The features whose `uid` is one of `uids`, or whose box comes within `near[1]` of one of the
        points `near[0]` (an (n, 2) array), found through the store's indexes: a few thousand of a
        million pipes without reading the others. Their `columns` and geometries, in the order the
        kind's features are read (layer by layer, then by fid). None when the store has no such
        indexes (read the whole kind instead)."""
        if self._postgis is not None:
            return self._look_up_postgis(columns, uids, near)
        if self._gpkg is None:
            return None
        parts = []
        with self._connect() as conn:
            for record in self.records:
                names, geom = self._table_columns(conn, record.table)
                rtree = f"rtree_{record.table}_{geom}"
                indexed = conn.execute("SELECT count(*) FROM sqlite_master WHERE name IN (?, ?)",
                                       (f"{record.table}_uid", rtree)).fetchone()[0]
                if geom is None or "uid" not in names or indexed < 2:
                    return None
                fids = set()
                if len(uids):
                    fids.update(r[0] for r in conn.execute(
                        f'SELECT fid FROM "{record.table}" WHERE uid IN (SELECT value FROM json_each(?))',
                        (json.dumps([str(u) for u in uids], ensure_ascii=False),)))
                if near is not None and len(near[0]):
                    xy, reach = np.asarray(near[0], dtype=float), float(near[1])
                    # nearby points first, so that consecutive R-tree searches walk the same nodes
                    xy = xy[np.lexsort((xy[:, 1], np.floor(xy[:, 0] / max(64 * reach, 1.0))))]
                    boxes = np.column_stack([xy - reach, xy + reach]).tolist()
                    fids.update(r[0] for r in conn.execute(
                        f'SELECT r.id FROM json_each(?) AS b CROSS JOIN "{rtree}" AS r '
                        f"ON r.minx <= b.value ->> 2 AND r.maxx >= b.value ->> 0 "
                        f"AND r.miny <= b.value ->> 3 AND r.maxy >= b.value ->> 1", (json.dumps(boxes),)))
                wanted = [c for c in columns if c in names and c not in ("fid", geom)]
                select = ", ".join(["fid", *(f'"{c}"' for c in wanted), f'"{geom}"'])
                rows = conn.execute(f'SELECT {select} FROM "{record.table}" WHERE fid IN '
                                    f"(SELECT value FROM json_each(?)) ORDER BY fid",
                                    (json.dumps(sorted(fids)),)).fetchall()
                found = pd.DataFrame.from_records(rows, columns=["fid", *wanted, "geometry"])
                parts.append((self._types(conn, record.table, found[wanted]),
                               gpkg_geometries(found["geometry"].tolist()), found["fid"].to_numpy(dtype=np.int64)))
        return _looked_up(parts)

    def _look_up_postgis(self, columns: Sequence[str], uids: Sequence[str],
                         near: tuple[np.ndarray, float] | None) -> "LookedUp | None":
        parts = []
        for record in self.records:
            found = self._postgis.look_up(record.table, columns, uids=uids, near=near)
            if found is None:
                return None
            parts.append(found)
        return _looked_up(parts)

    def count_rows(self, conditions: Sequence[Sequence[str]]) -> list[int] | None:
        """For each list of columns, how many features have all of them true (no columns: all features).

        Truth as `twin.indicators` reads it: non-zero numbers, and words such as 'true',
        'yes', '是'. None when the store cannot count (then read the columns instead).
        """
        if self._gpkg is None:
            return None
        counts = [0] * len(conditions)
        with self._connect() as conn:
            stored = bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (FLAG_COUNTS,)).fetchone())
            for record in self.records:
                combos = [(json.loads(flags), n) for flags, n in conn.execute(
                    f"SELECT flags, count FROM {FLAG_COUNTS} WHERE table_name = ?", (record.table,))] if stored else []
                if combos and all(c in combos[0][0] for cond in conditions for c in cond):
                    # counted at ingest (twin.store.measures): true is true, false and null are not
                    counts = [total + sum(n for flags, n in combos if all(flags[c] is True for c in cond))
                              for total, cond in zip(counts, conditions)]
                    continue
                declared = {row[1]: row[2].upper() for row in conn.execute(f'PRAGMA table_info("{record.table}")')}
                if any(c not in declared for cond in conditions for c in cond):
                    return None
                words = ", ".join("'" + w.replace("'", "''") + "'" for w in sorted(TRUE_WORDS))

                def truth(c: str) -> str:
                    if declared[c] in ("BOOLEAN", "INTEGER", "SMALLINT", "MEDIUMINT", "TINYINT"):
                        return f'"{c}" <> 0'  # GDAL writes booleans as 0 and 1; NULL is not true
                    return (f"(CASE WHEN typeof(\"{c}\") IN ('integer', 'real') THEN \"{c}\" <> 0 "
                            f"WHEN typeof(\"{c}\") = 'text' THEN lower(trim(\"{c}\")) IN ({words}) ELSE 0 END)")

                # count(*) FILTER is a third quicker in SQLite than summing 0s and 1s
                terms = [f"count(*) FILTER (WHERE {' AND '.join(truth(c) for c in cond)})" if cond else "count(*)"
                         for cond in conditions]
                query = f'SELECT {", ".join(terms)} FROM "{record.table}"'
                if record.feature_count < PARALLEL_COUNT or WORKERS < 2:
                    rows = [conn.execute(query).fetchone()]
                else:  # a big table is counted in fid ranges at once, as PostgreSQL's parallel scan does
                    # one aggregate per SELECT: SQLite reads min() and max() of a key off the b-tree only then
                    first, last = conn.execute(f'SELECT (SELECT min(fid) FROM "{record.table}"), '
                                               f'(SELECT max(fid) FROM "{record.table}")').fetchone()
                    cuts = np.linspace(first, last + 1, WORKERS + 1).astype(np.int64).tolist()
                    rows = in_parallel(lambda k: self._count_range(query, cuts[k], cuts[k + 1]), list(range(WORKERS)))
                for row in rows:
                    counts = [total + int(v or 0) for total, v in zip(counts, row)]
        return counts

    def _count_range(self, query: str, start: int, stop: int) -> tuple:
        with self._connect() as conn:  # this thread's own connection: SQLite counts while the others do
            return conn.execute(f"{query} WHERE fid >= ? AND fid < ?", (start, stop)).fetchone()
