"""Feature queries over a layer snapshot: bbox, property filters, time, paging, output CRS.

Pure functions over snapshots; the HTTP layer parses parameters into a `FeatureQuery`.
Coordinates go out in the axis order of the requested CRS (latitude first for EPSG:4326
and EPSG:4490, northing first for the Gauss-Krüger CRSs), as OGC API - Features Part 2
asks; CRS84 is longitude, latitude.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError

from twin.crs import coordinate_transformer, transformer
from twin.snapshots import LayerSnapshot

__all__ = [
    "CRS84_URI", "BadQuery", "FeatureQuery", "crs_uri", "parse_crs_uri", "parse_bbox", "parse_datetime",
    "select", "feature_collection", "feature", "LARGE_COLUMNS",
]

CRS84_URI = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CRS84 = CRS.from_user_input("OGC:CRS84")
# Columns too large for lists and tiles; a single feature carries them.
LARGE_COLUMNS = {"properties", "storeys", "transform"}


class BadQuery(ValueError):
    """A query parameter a client sent cannot be used; the message says which and why."""


def crs_uri(crs: CRS) -> str:
    """The OGC URI of a CRS (CRS84 or an EPSG code)."""
    if crs.equals(CRS84) or crs.to_string() == "OGC:CRS84":
        return CRS84_URI
    epsg = crs.to_epsg()
    if epsg is None:
        raise BadQuery(f"CRS {crs.name} has no EPSG code")
    return f"http://www.opengis.net/def/crs/EPSG/0/{epsg}"


def parse_crs_uri(text: str, allowed: list[CRS]) -> CRS:
    """Parse a CRS given as an OGC URI, a `[EPSG:NNNN]` safe CURIE or `EPSG:NNNN`, among `allowed`."""
    value = text.strip().strip("[]")
    match = re.fullmatch(r"https?://www\.opengis\.net/def/crs/(OGC|EPSG)/[^/]+/([0-9A-Za-z]+)", value)
    if match:
        value = "OGC:CRS84" if match.group(1) == "OGC" else f"EPSG:{match.group(2)}"
    try:
        crs = CRS.from_user_input(value)
    except CRSError:
        raise BadQuery(f"unknown CRS {text!r}; use one of {[crs_uri(c) for c in allowed]}") from None
    for candidate in allowed:
        if crs.equals(candidate) and (crs.to_epsg() == candidate.to_epsg()):
            return candidate
    raise BadQuery(f"CRS {text!r} is not offered here; use one of {[crs_uri(c) for c in allowed]}")


def _north_first(crs: CRS) -> bool:
    return crs.axis_info[0].direction.lower() in ("north", "south")


def parse_bbox(text: str, crs: CRS, target: CRS) -> tuple[float, float, float, float]:
    """A bbox parameter (4 numbers, or 6 with heights) in `crs`'s axis order, as a box in `target`."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise BadQuery(f"bbox {text!r} is not a list of numbers") from None
    if len(values) == 6:
        values = [values[0], values[1], values[3], values[4]]
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise BadQuery(f"bbox {text!r} needs 4 numbers (or 6 with heights)")
    a1, b1, a2, b2 = values
    if _north_first(crs):
        a1, b1, a2, b2 = b1, a1, b2, a2
    if crs.is_geographic:
        if not (-90 <= b1 <= 90 and -90 <= b2 <= 90 and -180 <= a1 <= 180 and -180 <= a2 <= 180):
            raise BadQuery(f"bbox {text!r} is outside longitude -180..180 / latitude -90..90 "
                           f"(axis order of {crs_uri(crs)})")
    if b2 < b1 or (a2 < a1 and not crs.is_geographic):
        raise BadQuery(f"bbox {text!r}: the lower corner must come first")
    if crs.equals(target):
        return (a1, b1, a2, b2)
    return tuple(transformer(crs, target).transform_bounds(a1, b1, a2, b2, densify_pts=21))


def parse_datetime(text: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    """An instant or interval (``a/b``, ``../b``, ``a/..``) as an inclusive range in UTC.

    A date without a time stands for the whole day.
    """
    def one(value: str, end: bool = False) -> pd.Timestamp | None:
        if value in ("..", ""):
            return None
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError):
            raise BadQuery(f"datetime {text!r}: {value!r} is not an RFC 3339 date or time") from None
        stamp = stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp
        if end and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            stamp = stamp + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
        return stamp
    if "/" in text:
        start, end = text.split("/", 1)
        lo, hi = one(start), one(end, end=True)
        if lo is not None and hi is not None and hi < lo:
            raise BadQuery(f"datetime {text!r}: the interval ends before it starts")
        return lo, hi
    instant = one(text)
    if instant is None:
        raise BadQuery("datetime '..' needs an interval (a/.., ../b)")
    return instant, one(text, end=True)


@dataclass
class FeatureQuery:
    """What a client asked of a collection's items."""

    bbox: tuple[float, float, float, float] | None = None  # in the city CRS
    filters: dict[str, str] = field(default_factory=dict)
    datetime: tuple[pd.Timestamp | None, pd.Timestamp | None] | None = None
    limit: int = 100
    offset: int = 0
    simplify: float | None = None  # metres: drop vertices that lie closer than this to the line


def time_column(snapshot: LayerSnapshot) -> str | None:
    """The column a layer's `datetime` filter applies to, if it has one."""
    for name in ("time", "survey_date", "updated", "observed"):
        if name in snapshot.frame.columns:
            return name
    return None


def select(snapshot: LayerSnapshot, query: FeatureQuery) -> np.ndarray:
    """Positions of the matching features, in the layer's order."""
    frame = snapshot.frame
    if query.bbox is not None:
        hits = snapshot.tree.query(shapely.box(*query.bbox), predicate="intersects")
        mask = np.zeros(len(frame), dtype=bool)
        mask[hits] = True
    else:
        mask = np.ones(len(frame), dtype=bool)
    for name, value in query.filters.items():
        if name not in frame.columns or name in LARGE_COLUMNS or name == frame.geometry.name:
            raise BadQuery(f"{name!r} is not a property of this collection; filterable: "
                           f"{[c for c in frame.columns if c not in LARGE_COLUMNS and c != frame.geometry.name]}")
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            wanted = value.lower() in ("true", "1", "yes")
            mask &= (column.fillna(not wanted) == wanted).to_numpy()
        elif pd.api.types.is_numeric_dtype(column):
            try:
                number = float(value)
            except ValueError:
                raise BadQuery(f"{name}={value!r}: {name} is a number") from None
            mask &= (column.astype("float64") == number).fillna(False).to_numpy()
        else:
            mask &= (column.astype("string") == value).fillna(False).to_numpy()
    if query.datetime is not None:
        column_name = time_column(snapshot)
        if column_name is None:
            raise BadQuery("this collection has no time; datetime does not apply")
        times = pd.to_datetime(frame[column_name], errors="coerce", utc=True).dt.tz_localize(None)
        lo, hi = query.datetime
        keep = times.notna()
        if lo is not None:
            keep &= times >= lo
        if hi is not None:
            keep &= times <= hi
        mask &= keep.to_numpy()
    return np.flatnonzero(mask)


def _jsonable(value):
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, (pd.Timestamp, datetime, date)):
        return value.isoformat()
    return value


def _geometries_out(geoms: np.ndarray, source: CRS, target: CRS) -> list[dict]:
    if not source.equals(target):
        t = coordinate_transformer(source, target)
        swap = _north_first(target)

        def move(coords: np.ndarray) -> np.ndarray:
            x, y = t.transform(coords[:, 0], coords[:, 1])
            out = np.column_stack([y, x] if swap else [x, y])
            return np.column_stack([out, coords[:, 2:]]) if coords.shape[1] > 2 else out

        has_z = shapely.has_z(geoms)
        moved = np.empty(len(geoms), dtype=object)
        if (~has_z).any():
            moved[~has_z] = shapely.transform(geoms[~has_z], move)
        if has_z.any():
            moved[has_z] = shapely.transform(geoms[has_z], move, include_z=True)
        geoms = moved
    elif _north_first(target):
        geoms = shapely.transform(geoms, lambda c: c[:, ::-1] if c.shape[1] == 2 else c[:, [1, 0, 2]],
                                  include_z=bool(shapely.has_z(geoms).any()))
    return [json.loads(g) if g is not None else None for g in shapely.to_geojson(geoms)]


def _keep_3d(coords: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker in 3D: which vertices of a line to keep."""
    keep = np.zeros(len(coords), dtype=bool)
    keep[[0, -1]] = True
    spans = [(0, len(coords) - 1)]
    while spans:
        i, j = spans.pop()
        if j <= i + 1:
            continue
        axis = coords[j] - coords[i]
        offsets = coords[i + 1:j] - coords[i]
        length = float(np.sqrt(axis @ axis))
        distance = (np.linalg.norm(np.cross(offsets, axis), axis=1) / length if length > 0
                    else np.linalg.norm(offsets, axis=1))
        k = int(np.argmax(distance))
        if distance[k] > tolerance:
            keep[i + 1 + k] = True
            spans += [(i, i + 1 + k), (i + 1 + k, j)]
    return keep


def simplify_3d(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Lines with fewer vertices, none moved by more than `tolerance` in 3D (heights count:
    a pipe draped on hilly ground keeps its profile); other geometries simplified in plan.

    Examples
    --------
    >>> line = shapely.LineString([(0, 0, 0), (5, 0, 0.01), (10, 0, 0), (20, 0, 3)])
    >>> shapely.get_coordinates(simplify_3d(np.array([line]), 0.1)[0], include_z=True).tolist()
    [[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [20.0, 0.0, 3.0]]
    """
    out = np.asarray(geoms, dtype=object).copy()
    lines = (shapely.get_type_id(out) == 1) & shapely.has_z(out)
    for k in np.flatnonzero(lines):
        coords = shapely.get_coordinates(out[k], include_z=True)
        out[k] = shapely.linestrings(coords[_keep_3d(coords, tolerance)])
    if (~lines).any():
        out[~lines] = shapely.simplify(out[~lines], tolerance, preserve_topology=True)
    return out


def _simplified(snapshot: LayerSnapshot, tolerance: float) -> np.ndarray:
    """The layer's geometries simplified to `tolerance`, made once per layer version (a live
    status overlay shares its base layer's)."""
    base = getattr(snapshot, "base", None) or snapshot
    key = ("simplified", float(tolerance))
    cached = base.derived.get(key)
    if cached is None:
        cached = simplify_3d(np.asarray(base.frame.geometry.values, dtype=object), tolerance)
        if len(base.derived) < 64:
            base.derived[key] = cached
    return cached


def select_simplified(snapshot: LayerSnapshot, tolerance: float) -> None:
    """Make (and keep) the layer's geometries simplified to `tolerance` ahead of a request."""
    _simplified(snapshot, tolerance)


def _features(snapshot: LayerSnapshot, positions: np.ndarray, target: CRS, full: bool,
              simplify: float | None = None) -> list[dict]:
    frame = snapshot.frame.iloc[positions]
    geoms = np.asarray(frame.geometry.values, dtype=object)
    if simplify:
        geoms = _simplified(snapshot, simplify)[positions]
    geometries = _geometries_out(geoms, snapshot.frame.crs, target)
    columns = [c for c in frame.columns if c != frame.geometry.name and (full or c not in LARGE_COLUMNS)]
    records = frame[columns].to_dict(orient="records")
    out = []
    for record, geometry in zip(records, geometries):
        properties = {k: _jsonable(v) for k, v in record.items()}
        for key in LARGE_COLUMNS & set(properties):
            if isinstance(properties[key], str):
                try:
                    properties[key] = json.loads(properties[key])
                except json.JSONDecodeError:
                    pass
        out.append({"type": "Feature", "id": properties.get("uid"), "geometry": geometry, "properties": properties})
    return out


def feature_collection(snapshot: LayerSnapshot, positions: np.ndarray, query: FeatureQuery,
                       target: CRS) -> tuple[list[dict], int]:
    """The page of features the query asks for, and how many matched in all."""
    page = positions[query.offset:query.offset + query.limit]
    return _features(snapshot, page, target, full=False, simplify=query.simplify), len(positions)


def feature(snapshot: LayerSnapshot, uid: str, target: CRS) -> dict | None:
    """One feature by its uid, with every property."""
    matches = np.flatnonzero((snapshot.frame["uid"] == uid).to_numpy())
    if not len(matches):
        return None
    return _features(snapshot, matches[:1], target, full=True)[0]
