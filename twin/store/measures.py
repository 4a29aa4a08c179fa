"""What the store measures once, when a layer version is written, so reports need not read it all.

A line layer's total length, and its length per `utility` (water, storm, sewage, ...), are
what the pipe indicators divide by; how many lamps are smart, or buildings metered, is
what the shares count. Summing a million segment lengths means reading a million
geometries; the store has them in hand at ingest, so it sums and counts them there and
keeps the results beside the layer version (`LINE_LENGTHS`, `FLAG_COUNTS`), dropped with
it. A layer version never changes once written, so they never go stale.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["FLAG_COUNTS", "LINE_LENGTHS", "LINE_LENGTHS_BY", "LineLength", "flag_counts", "line_lengths"]

LINE_LENGTHS = "twin_line_lengths"
LINE_LENGTHS_BY = "utility"  # the column lengths are summed by, when the layer has it
FLAG_COUNTS = "twin_flag_counts"
MAX_FLAGS = 8  # true/false columns of a layer counted together (3^8 combinations at most)


class LineLength(NamedTuple):
    """The lines of one `utility` value (None: no value) in a layer version."""

    by: str | None  # the column summed by (None: the layer has no such column, one row for all)
    value: str | None
    segments: int  # lines of positive length
    length_m: float  # sum of horizontal lengths, in the layer's CRS units


def line_lengths(frame: gpd.GeoDataFrame) -> list[LineLength] | None:
    """The length sums of a layer whose geometries are all lines (empty ones allowed); None for other layers.

    Values are grouped as `twin.indicators` groups them (as text); a missing geometry has length 0.

    Examples
    --------
    >>> frame = gpd.GeoDataFrame({"utility": ["water", "gas", "water", None]}, geometry=[
    ...     shapely.LineString([(0, 0), (3, 4)]), shapely.LineString([(0, 0), (0, 2)]),
    ...     shapely.LineString([(0, 0), (1, 0)]), shapely.LineString([(0, 0), (0, 0)])])
    >>> [tuple(row) for row in line_lengths(frame)]
    [('utility', 'gas', 1, 2.0), ('utility', 'water', 2, 6.0), ('utility', None, 0, 0.0)]
    >>> line_lengths(frame.set_geometry(shapely.force_3d(frame.geometry.values, 100.0)))[1].length_m  # horizontal
    6.0
    """
    geoms = np.asarray(frame.geometry.values, dtype=object)
    kinds = set(shapely.get_type_id(geoms[~shapely.is_missing(geoms)]).tolist())
    if not kinds or not kinds <= {1, 5}:  # line strings and multi line strings
        return None
    lengths = np.nan_to_num(shapely.length(geoms), nan=0.0)  # GEOS measures in x and y only
    if LINE_LENGTHS_BY not in frame.columns:
        return [LineLength(None, None, int((lengths > 0).sum()), float(lengths.sum()))]
    codes, values = pd.factorize(frame[LINE_LENGTHS_BY].astype("string"), use_na_sentinel=True)
    groups = len(values) + 1  # the last: no value
    codes = np.where(codes < 0, len(values), codes)
    totals = np.bincount(codes, weights=lengths, minlength=groups)
    segments = np.bincount(codes, weights=lengths > 0, minlength=groups)
    names = [str(v) for v in values] + [None]
    order = sorted((k for k in range(groups) if k < len(values) or (codes == len(values)).any()),
                   key=lambda k: (names[k] is None, names[k] or ""))
    return [LineLength(LINE_LENGTHS_BY, names[k], int(segments[k]), float(totals[k])) for k in order]


def flag_counts(frame: gpd.GeoDataFrame) -> list[tuple[str, int]] | None:
    """How many features have each combination of values of the layer's true/false columns, as
    (JSON object of column -> true, false or null, count); None when it has none (or too many).

    Examples
    --------
    >>> frame = gpd.GeoDataFrame({"smart": [True, True, False, None], "lit": [True, False, True, True]},
    ...                          geometry=[shapely.Point(k, 0) for k in range(4)])
    >>> flag_counts(frame.astype({"smart": "boolean"}))
    [('{"smart": false, "lit": true}', 1), ('{"smart": null, "lit": true}', 1), \
('{"smart": true, "lit": false}', 1), ('{"smart": true, "lit": true}', 1)]
    """
    flags = [c for c in frame.columns if c != frame.geometry.name and pd.api.types.is_bool_dtype(frame[c].dtype)]
    if not flags or len(flags) > MAX_FLAGS or not len(frame):
        return None
    combos = frame[flags].astype("boolean").value_counts(dropna=False)
    rows = [(json.dumps({c: (None if v is pd.NA else bool(v)) for c, v in zip(flags, values)}), int(n))
            for values, n in combos.items()]
    return sorted(rows)
