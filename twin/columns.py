"""Read only what an indicator needs from a city's layers: some columns, the geometry or not, counts.

An indicator over a million pipe segments needs their `uid`, `utility` and geometry, not
their material, diameter and depth; a share of smart lamps needs two numbers, not 200,000
rows. `LayerColumns` reads the layers of one kind that way. On the GeoPackage store it
reads the layer tables directly (pyogrio's Arrow reader for large tables, SQLite for small
ones and for counts); on any other store it asks `Store.read_features` for the columns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from twin.store import LayerRecord, Store

__all__ = ["LayerColumns", "TRUE_WORDS", "gpkg_geometries"]

TRUE_WORDS = {"true", "t", "yes", "y", "1", "是", "有", "smart", "智能", "智慧"}
SMALL = 5_000  # tables up to this many rows are read with sqlite3 (GDAL's open costs more than the read)


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


def _string_columns(table: pa.Table) -> pd.DataFrame:
    """A data frame of an Arrow table, strings kept in Arrow (comparing a million of them stays in C++)."""
    return table.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow"),
                                         pa.large_string(): pd.StringDtype("pyarrow")}.get)


class LayerColumns:
    """The layers of one kind in a city's store, read a few columns at a time."""

    def __init__(self, store: Store, records: Sequence[LayerRecord], crs) -> None:
        self.store = store
        self.records = list(records)
        self.crs = crs
        self._gpkg = getattr(store, "path", None) if type(store).__name__ == "GeoPackageStore" else None

    # one table --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self._gpkg}?mode=ro", uri=True, timeout=60)

    def _table_columns(self, conn: sqlite3.Connection, table: str) -> tuple[list[str], str | None]:
        names = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
        geom = conn.execute("SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?", (table,)).fetchone()
        return names, geom[0] if geom else None

    def _read_one(self, record: LayerRecord, columns: Sequence[str] | None, geometry: bool) -> pd.DataFrame:
        if self._gpkg is None:
            frame = self.store.read_features(record.name, columns=list(columns) if columns is not None else None)
            return frame if geometry else pd.DataFrame(frame.drop(columns=frame.geometry.name))
        with closing(self._connect()) as conn:
            names, geom = self._table_columns(conn, record.table)
            wanted = [c for c in (names if columns is None else columns) if c in names and c not in ("fid", geom)]
            if record.feature_count <= SMALL or not geometry:
                select = [f'"{c}"' for c in wanted] + ([f'"{geom}"'] if geometry and geom else [])
                rows = conn.execute(f'SELECT {", ".join(select) or "1"} FROM "{record.table}" ORDER BY fid').fetchall()
                frame = pd.DataFrame.from_records(rows, columns=wanted + (["geometry"] if geometry and geom else [])
                                                  if select else ["_"])
                frame = frame[wanted + (["geometry"] if geometry and geom else [])]
                if geometry and geom:
                    frame["geometry"] = gpkg_geometries(frame["geometry"].tolist())
                return self._types(conn, record.table, frame)
        import pyogrio

        _, table = pyogrio.read_arrow(self._gpkg, layer=record.table, columns=wanted, read_geometry=geometry)
        geoms = None
        if geometry:
            geoms = shapely.from_wkb(table.column(table.num_columns - 1).to_numpy(zero_copy_only=False))
            table = table.remove_column(table.num_columns - 1)
        frame = _string_columns(table)
        if geoms is not None:
            frame["geometry"] = geoms
        return frame

    def _types(self, conn: sqlite3.Connection, table: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Booleans as booleans (the GeoPackage keeps them as integers), as the Arrow reader gives them."""
        booleans = {row[1] for row in conn.execute(f'PRAGMA table_info("{table}")') if row[2].upper() == "BOOLEAN"}
        for column in booleans & set(frame.columns):
            values = frame[column]
            frame[column] = values.astype("boolean") if values.isna().any() else values.astype(bool)
        return frame

    # the kind's layers together ---------------------------------------------------------

    def frame(self, columns: Sequence[str] | None = None, geometry: bool = True) -> gpd.GeoDataFrame | pd.DataFrame:
        """The kind's features (every layer of it, one after another) with `columns` (None: all)."""
        frames = [self._read_one(r, columns, geometry) for r in self.records]
        frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
        if not geometry:
            return frame.drop(columns=[c for c in ("geometry",) if c in frame.columns])
        if not isinstance(frame, gpd.GeoDataFrame):
            frame = gpd.GeoDataFrame(frame, geometry="geometry", crs=self.crs)
        return frame.set_crs(self.crs, allow_override=True)

    def count_rows(self, conditions: Sequence[Sequence[str]]) -> list[int] | None:
        """For each list of columns, how many features have all of them true (no columns: all features).

        Truth as `twin.indicators` reads it: non-zero numbers, and words such as 'true',
        'yes', '是'. None when the store cannot count (then read the columns instead).
        """
        if self._gpkg is None:
            return None
        counts = [0] * len(conditions)
        with closing(self._connect()) as conn:
            for record in self.records:
                names, _ = self._table_columns(conn, record.table)
                if any(c not in names for cond in conditions for c in cond):
                    return None
                words = ", ".join("'" + w.replace("'", "''") + "'" for w in sorted(TRUE_WORDS))

                def truth(c: str) -> str:
                    return (f"(CASE WHEN typeof(\"{c}\") IN ('integer', 'real') THEN \"{c}\" <> 0 "
                            f"WHEN typeof(\"{c}\") = 'text' THEN lower(trim(\"{c}\")) IN ({words}) ELSE 0 END)")

                terms = [f"sum({' AND '.join(truth(c) for c in cond)})" if cond else "count(*)" for cond in conditions]
                row = conn.execute(f'SELECT {", ".join(terms)} FROM "{record.table}"').fetchone()
                counts = [total + int(v or 0) for total, v in zip(counts, row)]
        return counts
