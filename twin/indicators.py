"""Smart-city coverage indicators, computed exactly from the city model.

Each indicator is a ratio (or, for weather stations, a spacing) with a written-down
definition: areas and lengths in the city's metric CRS, unions taken before intersections
so overlapping inputs never count twice, camera and 5G discs measured exactly (see
`twin.discs`). A result says its value, numerator and denominator, whether the target
in `indicators.toml` is met and by how much, and where the gap is.

    data = ModelData.from_city(City.open("yantai"))
    result = compute("video_coverage", data, by_district=True)
    result.value, result.met, [d.value for d in result.by]

Everything here reads GeoDataFrames through `ModelData`, so tests can hand it layouts of
squares and discs, and a city hands it its layers.
"""

from __future__ import annotations

import math
import re
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS, Proj

from twin import sheets
from twin.areas import clip_polygons, group_unions, overlap_groups, union_area
from twin.columns import TRUE_WORDS, GeometryColumn, LayerColumns, LookedUp, split_work
from twin.crs import WGS84, transformer
from twin.discs import covered_area, disc_polygons
from twin.errors import TwinError
from twin.sensors import SensorRegistry, link_to_pipes
from twin.store.measures import LineLength

__all__ = ["INDICATORS", "Indicator", "IndicatorResult", "MissingLayer", "ModelData", "Target", "compute",
           "compute_all", "load_targets", "parse_at", "parse_scales", "parse_window", "measurable_indicators"]

DEFAULT_TARGETS = Path(__file__).with_name("indicators.toml")
CITY_TARGETS = "indicators.toml"
GAP_ITEMS = 20  # items listed per gap (missing sheets, longest unmonitored segments, ...)


class MissingLayer(TwinError):
    """An indicator needs a layer (or a field) that the city does not have."""


# targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An indicator's target and star bands, from indicators.toml."""

    indicator: str
    title: str
    title_zh: str
    target: float
    compare: str  # ">=", ">", "<=", "<"
    stars: tuple[float, ...]
    options: Mapping[str, object] = field(default_factory=dict)

    def met(self, value: float) -> bool:
        """Whether `value` meets the target."""
        return {">=": value >= self.target, ">": value > self.target,
                "<=": value <= self.target, "<": value < self.target}[self.compare]

    def margin(self, value: float) -> float:
        """How far `value` is beyond the target (positive) or short of it (negative)."""
        return value - self.target if self.compare.startswith(">") else self.target - value

    def star_rating(self, value: float) -> int:
        """How many star bands `value` reaches (0 to 5)."""
        higher = self.compare.startswith(">")
        return sum(1 for band in self.stars if (value >= band if higher else value <= band))


_TARGETS_CACHE: dict[tuple, dict[str, Target]] = {}


def load_targets(city_root: str | Path | None = None, path: str | Path | None = None) -> dict[str, Target]:
    """The shipped targets, overridden entry by entry by CITY/indicators.toml or `path` (read again when
    one of the files changes: every indicator run asks for them)."""
    files = [DEFAULT_TARGETS, Path(city_root) / CITY_TARGETS if city_root else None, Path(path) if path else None]
    key = tuple(_version(f) for f in files)
    if key not in _TARGETS_CACHE:
        _TARGETS_CACHE[key] = _load_targets(files[1:])
    return dict(_TARGETS_CACHE[key])


def _version(path: Path | None) -> tuple | None:
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return (str(path), None)
    return (str(path), stat.st_mtime_ns, stat.st_size) if stat else None


def _load_targets(extras: list[Path | None]) -> dict[str, Target]:
    table = _read_toml(DEFAULT_TARGETS)
    for extra in extras:
        if extra is not None and extra.is_file():
            for key, entry in _read_toml(extra).items():
                if key not in table:
                    raise ValueError(f"{extra}: unknown indicator [{key}]; known: {', '.join(table)}")
                if not isinstance(entry, dict):
                    raise ValueError(f"{extra}: [{key}] must be a table of settings")
                table[key] = {**table[key], **entry}
    targets = {}
    for key, entry in table.items():
        source = f"indicators.toml [{key}]"
        compare = str(entry.get("compare", ">="))
        if compare not in (">=", ">", "<=", "<"):
            raise ValueError(f"{source}: compare must be one of >=, >, <=, <, not {compare!r}")
        stars = tuple(float(s) for s in entry.get("stars", []))
        if len(stars) not in (0, 5):
            raise ValueError(f"{source}: stars must list five values (where 1..5 stars begin)")
        try:
            target = float(entry["target"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: target must be a number") from None
        options = {k: v for k, v in entry.items() if k not in ("title", "title_zh", "target", "compare", "stars")}
        targets[key] = Target(key, str(entry.get("title", key)), str(entry.get("title_zh", "")), target, compare,
                              stars, options)
    return targets


def _read_toml(path: Path) -> dict:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML: {exc}") from None


def parse_window(text: str | None) -> int | None:
    """A window such as '24h', '30min', '7d' or 'none', in milliseconds (None for 'none').

    Examples
    --------
    >>> parse_window("24h"), parse_window("90s"), parse_window("none")
    (86400000, 90000, None)
    """
    if text is None or str(text).strip().lower() in ("none", "off", "installed"):
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|min|m|h|d|w)\s*", str(text).lower())
    if not match:
        raise ValueError(f"window {text!r} is not a duration like 24h, 30min, 7d, or 'none'")
    unit = {"ms": 1, "s": 1000, "sec": 1000, "min": 60_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000}[match.group(2)]
    return int(float(match.group(1)) * unit)


def parse_at(text: str | None) -> int | None:
    """An ISO 8601 time (UTC unless it carries an offset) in epoch milliseconds; None for now.

    Examples
    --------
    >>> parse_at("2026-01-01T08:00:00+08:00")
    1767225600000
    """
    if text is None or str(text).strip().lower() in ("", "now"):
        return None
    try:
        stamp = pd.Timestamp(str(text).strip())
    except (ValueError, TypeError):
        raise ValueError(f"time {text!r} is not an ISO 8601 time such as 2026-01-01T08:00:00+08:00") from None
    if stamp is pd.NaT:
        raise ValueError(f"time {text!r} is not an ISO 8601 time such as 2026-01-01T08:00:00+08:00")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return int(stamp.value // 1_000_000)


def parse_scales(text: str | None) -> tuple[int, ...] | None:
    """Map sheet scales such as '500,1000' or '1:1000,1:2000' (None: the configured maximum).

    Examples
    --------
    >>> parse_scales("1:500, 1000")
    (500, 1000)
    """
    if not text:
        return None
    scales = []
    for part in str(text).split(","):
        part = part.strip().removeprefix("1:")
        if not part.isdigit() or int(part) <= 0:
            raise ValueError(f"scale {part!r} in {text!r} is not a scale denominator like 1000 or 1:1000")
        scales.append(int(part))
    return tuple(scales)


# the model's data -------------------------------------------------------------------------


class ModelData:
    """The layers an indicator reads, by kind, in one metric CRS, plus sensor readings.

    `frames` maps a layer kind to a GeoDataFrame, a callable that loads it, or a
    `LayerColumns` that reads only the columns an indicator asks for (so a city reads no
    more than it needs); `reporting(start_ms, end_ms)` gives the ids of the sensors with a
    reading in (start, end]; `registry`, when given, is the sensor registry a server already
    keeps (which sensor watches which pipe), so it is not built again per request.
    """

    def __init__(self, crs: CRS | str, frames: Mapping[str, gpd.GeoDataFrame | Callable[[], gpd.GeoDataFrame]
                                                       | LayerColumns],
                 reporting: Callable[[int, int], set[str]] | None = None, *, snap_m: float = 10.0,
                 now_ms: int | None = None, registry: Callable[[], SensorRegistry] | SensorRegistry | None = None
                 ) -> None:
        self.crs = CRS.from_user_input(crs)
        self._frames = dict(frames)
        self._loaded: dict[str, gpd.GeoDataFrame] = {}
        self._partial: dict[tuple[str, tuple[str, ...]], pd.DataFrame] = {}
        self._geometry: dict[str, GeometryColumn] = {}
        self._reporting = reporting
        self._registry = registry
        self.snap_m = snap_m
        self.now_ms = now_ms
        self._cache: dict[object, object] = {}

    @classmethod
    def from_city(cls, city, *, snap_m: float = 10.0) -> "ModelData":
        """Every vector layer of a city, grouped by kind, read (a few columns at a time) when first needed."""
        by_kind: dict[str, list] = {}
        for record in LayerColumns.catalogue(city.store):
            if record.kind != "dem":
                by_kind.setdefault(record.kind, []).append(record)
        return cls(city.crs, {kind: LayerColumns(city.store, records, city.crs) for kind, records in by_kind.items()},
                   city.store.reporting_sensors, snap_m=snap_m)

    def has(self, kind: str) -> bool:
        """Whether the model has a layer of `kind`."""
        return kind in self._frames

    def _source(self, kind: str, needed_by: str):
        if kind not in self._frames:
            raise MissingLayer(f"{needed_by} needs a layer of kind {kind!r}, and the city has none; add one with "
                               f"`twin ingest CITY FILE --kind {kind}`")
        return self._frames[kind]

    def frame(self, kind: str, needed_by: str, columns: Iterable[str] | None = None) -> gpd.GeoDataFrame:
        """The features of `kind` (with at least `columns`, when the source can read only some; a `uid` made
        up when asked for and missing); raises MissingLayer naming the indicator that needs them."""
        source = self._source(kind, needed_by)
        if kind in self._loaded:
            return self._loaded[kind]
        if isinstance(source, LayerColumns) and columns is not None:
            wanted = tuple(dict.fromkeys(columns))
            if (kind, wanted) not in self._partial:
                frame, geoms = source.read(list(wanted), geometry=kind not in self._geometry)
                self._geometry.setdefault(kind, geoms)
                self._partial[(kind, wanted)] = self._with_uid(kind, frame) if "uid" in wanted else frame
            return self._partial[(kind, wanted)]
        frame = source.frame() if isinstance(source, LayerColumns) else source() if callable(source) else source
        self._loaded[kind] = self._with_uid(kind, frame)
        return self._loaded[kind]

    @staticmethod
    def _with_uid(kind: str, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
        if "uid" not in frame.columns:
            frame = frame.assign(uid=[f"{kind}.{k + 1}" for k in range(len(frame))])
        return frame

    def count_rows(self, kind: str, needed_by: str, conditions: list[list[str]]) -> list[int] | None:
        """How many features of `kind` have all of each list of flags true, counted by the store when it can
        (None: it cannot; read the columns instead)."""
        source = self._source(kind, needed_by)
        if isinstance(source, LayerColumns) and kind not in self._loaded:
            return source.count_rows(conditions)
        return None

    def geoms(self, kind: str, needed_by: str) -> np.ndarray:
        """The 2D geometries of `kind`, valid, as an array."""
        key = ("geoms", kind)
        if key not in self._cache:
            if kind in self._loaded:
                geoms = np.asarray(self._loaded[kind].geometry.values, dtype=object)
            else:
                if kind not in self._geometry:
                    self.frame(kind, needed_by, columns=[])
                geoms = self._geometry[kind].geometries() if kind in self._geometry else \
                    np.asarray(self.frame(kind, needed_by).geometry.values, dtype=object)
            if shapely.has_z(geoms).any():
                geoms = shapely.force_2d(geoms)
            invalid = ~split_work(shapely.is_valid, geoms) & ~shapely.is_missing(geoms)
            if invalid.any():
                geoms = geoms.copy()
                geoms[invalid] = shapely.make_valid(geoms[invalid])
            self._cache[key] = geoms
        return self._cache[key]

    def rows_where(self, kind: str, needed_by: str, columns: list[str], column: str,
                   values: Iterable[str]) -> tuple[pd.DataFrame, GeometryColumn]:
        """The features of `kind` whose `column` is one of `values`: their `columns` and geometries
        (filtered by the store when it can, so the others are never read)."""
        values = tuple(values)
        key = ("where", kind, tuple(columns), column, values)
        if key not in self._cache:
            source = self._source(kind, needed_by)
            if isinstance(source, LayerColumns) and kind not in self._loaded:
                frame, geoms = source.read(list(dict.fromkeys([*columns, column])), where=(column, values))
                frame = self._with_uid(kind, frame) if "uid" in columns else frame
            else:
                full = self.frame(kind, needed_by)
                keep = full[column].isin(list(values)).to_numpy(dtype=bool) if column in full.columns \
                    else np.zeros(len(full), dtype=bool)
                frame = pd.DataFrame(full.drop(columns=full.geometry.name))[keep].reset_index(drop=True)
                geoms = GeometryColumn(self.geoms(kind, needed_by)[keep])
            self._cache[key] = (frame, geoms)
        return self._cache[key]

    def lengths(self, kind: str, needed_by: str, clip: shapely.Geometry | None = None) -> np.ndarray:
        """Horizontal lengths of the lines of `kind`, clipped to `clip` (from the WKB, when nothing is clipped)."""
        if clip is None and kind not in self._loaded and ("geoms", kind) not in self._cache:
            if kind not in self._geometry and isinstance(self._frames.get(kind), LayerColumns):
                self.frame(kind, needed_by, columns=[])
            if kind in self._geometry:
                return self._geometry[kind].lengths()
        return _lengths(self.geoms(kind, needed_by), clip)

    def line_lengths(self, kind: str, needed_by: str) -> list[LineLength] | None:
        """Length sums of the lines of `kind` per utility, as the store made them at ingest (None: it made none)."""
        source = self._source(kind, needed_by)
        if isinstance(source, LayerColumns) and kind not in self._loaded:
            return source.line_lengths()
        return None

    def look_up(self, kind: str, needed_by: str, columns: list[str], *, uids: Iterable[str] = (),
                near: tuple[np.ndarray, float] | None = None) -> LookedUp | None:
        """Features of `kind` by uid or near points, through the store's indexes (None: the store cannot)."""
        source = self._source(kind, needed_by)
        if isinstance(source, LayerColumns) and kind not in self._loaded:
            return source.look_up(columns, uids=list(uids), near=near)
        return None

    def geometry_column(self, kind: str, needed_by: str) -> GeometryColumn:
        """The geometries of `kind`, decoded only where asked (bounds and lengths of lines come from the WKB)."""
        if kind in self._geometry and ("geoms", kind) not in self._cache:
            return self._geometry[kind]
        return GeometryColumn(self.geoms(kind, needed_by))

    def union(self, kind: str, needed_by: str) -> shapely.Geometry:
        """The union of the polygons of `kind` (their overlaps count once)."""
        key = ("union", kind)
        if key not in self._cache:
            self._cache[key] = _polygonal(shapely.union_all(self.geoms(kind, needed_by)))
        return self._cache[key]

    def reporting(self, start_ms: int, end_ms: int) -> set[str]:
        """Sensors with a reading in (start, end]."""
        return self._reporting(start_ms, end_ms) if self._reporting else set()

    def registry(self) -> SensorRegistry | None:
        """The sensor registry given by the caller (a server's), if any."""
        return self._registry() if callable(self._registry) else self._registry

    def to_crs(self, crs: CRS | str) -> "ModelData":
        """The same data in another CRS (for checking that answers do not depend on it)."""
        frames = {kind: self.frame(kind, "to_crs").to_crs(crs) for kind in self._frames}
        return ModelData(crs, frames, self._reporting, snap_m=self.snap_m, now_ms=self.now_ms)

    def scale_factor(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The CRS's point scale factor at (x, y): CRS metres per metre on the ground."""
        if not len(x):
            return np.ones(0)
        lon, lat = transformer(self.crs, WGS84).transform(x, y)
        try:
            factors = Proj(self.crs).get_factors(lon, lat)
            k = np.asarray(factors.meridional_scale, dtype=float)
        except Exception:  # a CRS that pyproj cannot differentiate: take distances as they are
            return np.ones(len(x))
        return np.where(np.isfinite(k) & (k > 0), k, 1.0)


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """Only the polygonal part of a geometry (an intersection may add stray lines and points)."""
    if geom is None or geom.is_empty:
        return shapely.Polygon()
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def _clip(area: shapely.Geometry, clip: shapely.Geometry | None) -> shapely.Geometry:
    return area if clip is None else _polygonal(shapely.intersection(area, clip))


def _truthy(values: pd.Series) -> np.ndarray:
    """Booleans from a column that may hold bools, numbers or words ('true', '是')."""
    if values.dtype == bool:
        return values.to_numpy()
    return np.array([bool(v) if isinstance(v, (bool, np.bool_, int, float, np.integer, np.floating))
                     and not (isinstance(v, float) and math.isnan(v))
                     else str(v).strip().lower() in TRUE_WORDS if v is not None and v is not pd.NA else False
                     for v in values], dtype=bool)


def _inside(geoms: np.ndarray, clip: shapely.Geometry | None, boundary: bool = False) -> np.ndarray:
    """Which point (or polygon, by a point on it) features lie inside `clip` (or on its boundary)."""
    if clip is None:
        return np.ones(len(geoms), dtype=bool)
    points = np.where(shapely.get_type_id(geoms) == 0, geoms, shapely.point_on_surface(geoms))
    shapely.prepare(clip)
    ok = ~shapely.is_missing(points) & ~shapely.is_empty(points)
    out = np.zeros(len(geoms), dtype=bool)
    test = shapely.intersects_xy if boundary else shapely.contains_xy
    out[ok] = test(clip, shapely.get_x(points[ok]), shapely.get_y(points[ok]))
    return out


def _lengths(geoms: np.ndarray, clip: shapely.Geometry | None) -> np.ndarray:
    """Horizontal lengths of lines, clipped to `clip`."""
    if clip is None:
        return shapely.length(geoms)
    shapely.prepare(clip)
    lengths = np.zeros(len(geoms))
    within = shapely.contains(clip, geoms)
    lengths[within] = shapely.length(geoms[within])
    rest = np.flatnonzero(~within & shapely.intersects(clip, geoms))
    lengths[rest] = shapely.length(shapely.intersection(geoms[rest], clip))
    return lengths


# results ----------------------------------------------------------------------------------


@dataclass
class Measured:
    """What an indicator's definition yields over one area: the parts of its ratio and its gap."""

    numerator: float
    denominator: float
    measure: str  # what numerator and denominator count: "m2", "m", "count"
    value: float | None = None  # set when the value is not numerator / denominator
    details: dict = field(default_factory=dict)
    gap_items: list[dict] = field(default_factory=list)
    # for maps: the measured area, its covered and uncovered parts, and points or lines to mark
    area: shapely.Geometry | None = None
    covered: shapely.Geometry | None = None
    uncovered: shapely.Geometry | None = None
    # a mark may be a function that makes it, when making it costs more than a map is worth waiting for
    marks: dict[str, shapely.Geometry | Callable[[], shapely.Geometry]] = field(default_factory=dict)
    empty_reason: str = "nothing to measure"


@dataclass
class IndicatorResult:
    """One indicator's value against its target, over the city or one district."""

    indicator: str
    title: str
    value: float | None
    unit: str
    numerator: float | None
    denominator: float | None
    measure: str
    target: float
    compare: str
    met: bool | None
    margin: float | None
    stars: int | None
    reason: str | None = None  # why the value is not measurable
    district: str | None = None
    details: dict = field(default_factory=dict)
    gap: list[dict] = field(default_factory=list)
    by: list["IndicatorResult"] | None = None
    seconds: float = 0.0
    measured: Measured | None = field(default=None, repr=False)

    @property
    def measurable(self) -> bool:
        return self.value is not None

    def to_dict(self, crs: CRS | None = None, geometry: bool = True) -> dict:
        """JSON-ready: the fields the CLI and API print; uncovered parts as GeoJSON in WGS 84."""
        out = {
            "indicator": self.indicator, "title": self.title, "value": self.value, "unit": self.unit,
            "numerator": self.numerator, "denominator": self.denominator, "measure": self.measure,
            "target": self.target, "compare": self.compare, "met": self.met, "margin": self.margin,
            "stars": self.stars, "measurable": self.measurable,
        }
        if self.reason:
            out["reason"] = self.reason
        if self.district is not None:
            out["district"] = self.district
        if self.details:
            out["details"] = self.details
        if self.gap:
            out["gap"] = self.gap
        if geometry and crs is not None and self.measured is not None and self.measured.uncovered is not None \
                and not self.measured.uncovered.is_empty:
            out["uncovered"] = _geojson(self.measured.uncovered, crs)
        if self.by is not None:
            out["by"] = [{k: v for k, v in d.to_dict(crs, geometry=False).items() if k not in ("title", "indicator")}
                         for d in self.by]
        return out


def _geojson(geom: shapely.Geometry, crs: CRS) -> dict:
    moved = shapely.transform(geom, lambda xy: np.column_stack(transformer(crs, WGS84).transform(xy[:, 0], xy[:, 1])))
    return shapely.geometry.mapping(_snap_to_1e7_degrees(moved))


def _snap_to_1e7_degrees(geom: shapely.Geometry) -> shapely.Geometry:
    """Coordinates to 1e-7 degrees (about 1 cm), keeping the geometry valid where GEOS can.

    Parts that meet along their edges (uncovered parts built group by group) or slivers
    thinner than the grid can make GEOS's snap-rounding fail with a TopologyException; such
    a geometry is made valid first, and if that still fails its coordinates are rounded as
    they are.
    """
    for attempt in (geom, shapely.make_valid(geom)):
        try:
            return shapely.set_precision(attempt, 1e-7)
        except shapely.errors.GEOSException:
            continue
    return shapely.transform(geom, lambda xy: np.round(xy, 7))


# the indicators ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Indicator:
    """An indicator's definition: what it reads and how it measures one area."""

    id: str
    unit: str  # "ratio" or "km"
    needs: tuple[str, ...]
    measure: Callable[["ModelData", shapely.Geometry | None, Target, "Options"], Measured]
    description: str


@dataclass(frozen=True)
class Options:
    """Choices a caller makes for one run."""

    at_ms: int | None = None  # the time monitoring is judged at (default: now)
    window_ms: int | None = -1  # -1: the window in indicators.toml; None: installed sensors count regardless
    scales: tuple[int, ...] | None = None  # map sheet scales that count (default: up to max_scale)
    explain: bool = True  # compute the gap (missing sheets, uncovered parts)


def _area_ratio(covered: float, area: float) -> tuple[float, float]:
    # Floating point can leave a covered area a hair above the area it lies in.
    return min(covered, area), area


def topo_map_coverage(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "topo_map_coverage"
    area = _clip(data.union("planning_area", me), clip)
    frame = data.frame("map_sheet", me, ["scale"])
    geoms = data.geoms("map_sheet", me)
    # scales may come as 1000 or as "1:1000"; a sheet without one does not count
    scale = pd.to_numeric(frame["scale"].astype("string").str.strip().str.removeprefix("1:"),
                          errors="coerce").to_numpy(dtype=float, na_value=np.nan) if "scale" in frame.columns \
        else np.full(len(frame), np.nan)
    if opts.scales:
        counted = np.isin(scale, list(opts.scales))
    else:
        counted = scale <= float(target.options.get("max_scale", 2000))
    covered = union_area(clip_polygons(geoms[counted], area)) if not area.is_empty else 0.0
    num, den = _area_ratio(covered, area.area)
    m = Measured(num, den, "m2", area=area, empty_reason="no planning area here",
                 details={"sheets_counted": int(counted.sum()), "sheets_not_counted": int((~counted).sum()),
                          "scales_counted": sorted({int(s) for s in scale[counted] if np.isfinite(s)})})
    if opts.explain and den > 0:
        sheets_union = _polygonal(shapely.disjoint_subset_union_all(geoms[counted])) if counted.any() \
            else shapely.Polygon()
        m.covered = _polygonal(shapely.intersection(area, sheets_union))
        m.uncovered = _polygonal(shapely.difference(area, sheets_union))
        grid_scale = int(pd.Series(scale[counted]).mode().iloc[0]) if counted.any() else 1000
        if grid_scale not in sheets.SHEET_SIZE_M:
            grid_scale = 1000
        if not m.uncovered.is_empty:
            grid = sheets.sheet_grid(m.uncovered.bounds, grid_scale)
            boxes = np.asarray(grid.geometry.values, dtype=object)
            adds = shapely.area(shapely.intersection(boxes, m.uncovered))
            keep = adds > 1e-9 * sheets.SHEET_SIZE_M[grid_scale] ** 2
            order = np.argsort(-adds[keep], kind="stable")
            ids = grid["sheet_id"].to_numpy()[keep][order]
            m.gap_items = [{"sheet_id": sid, "scale": grid_scale, "adds_m2": float(a), "adds_share": float(a / den)}
                           for sid, a in zip(ids, adds[keep][order])]
            m.details["missing_sheets"] = len(m.gap_items)
            m.marks["missing sheets"] = shapely.union_all(boxes[keep])
    return m


def pipeline_monitoring(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "pipeline_monitoring"
    if clip is None and not opts.explain:
        quick = _monitoring_from_sums(data, me, opts)
        if quick is not None:
            return quick
    pipes = data.frame("pipe", me, ["uid", "utility"])
    watched = _watched_pipes(data, me, opts)
    lengths = data.lengths("pipe", me, clip)
    codes, names = _utilities(pipes)
    present = lengths > 0
    totals = np.bincount(codes[present], weights=lengths[present], minlength=len(names))
    on = np.bincount(codes[present & watched], weights=lengths[present & watched], minlength=len(names))
    per_utility = {}
    for k in sorted(np.unique(codes[present]), key=lambda k: names[k]):
        total, watched_m = float(totals[k]), float(on[k])
        per_utility[names[k]] = {"value": watched_m / total if total > 0 else None, "numerator": watched_m,
                                 "denominator": total}
    m = Measured(float(lengths[watched].sum()), float(lengths.sum()), "m", empty_reason="no pipes here",
                 details={"by_utility": per_utility, "segments": int(present.sum()),
                          "monitored_segments": int((watched & present).sum()),
                          **_monitoring_window(data, opts)})
    if opts.explain:
        uids = pipes["uid"]
        gaps = []
        off = ~watched & present
        for name in per_utility:
            sel = np.flatnonzero(off & (codes == names.index(name)))
            for k in sel[np.argsort(-lengths[sel], kind="stable")][:GAP_ITEMS]:
                gaps.append({"uid": str(uids.iloc[k]), "utility": name, "length_m": float(lengths[k])})
        m.gap_items = gaps

        def lines(rows: np.ndarray) -> Callable[[], shapely.Geometry]:
            def draw() -> shapely.Geometry:  # only a map needs the million pipes as geometry
                geoms = data.geoms("pipe", me)[rows]
                if clip is not None:
                    geoms = shapely.intersection(geoms, clip)
                return shapely.multilinestrings(list(shapely.get_parts(geoms))) if len(geoms) \
                    else shapely.MultiLineString()
            return draw

        m.marks["monitored pipes"] = lines(watched & present)
        m.marks["unmonitored pipes"] = lines(off)
        if clip is not None:
            m.area = clip
    return m


def _monitoring_from_sums(data: ModelData, me: str, opts: Options) -> Measured | None:
    """pipeline_monitoring over the whole city without reading every pipe: the totals per utility
    from the sums the store made at ingest, the watched pipes looked up by their sensors' `pipe_id`
    and position. The same numbers as reading them all; None when the store keeps no such sums."""
    sums = data.line_lengths("pipe", me)
    if sums is None:
        return None
    watched = _watched_looked_up(data, me, opts)
    if watched is None:
        return None
    totals: dict[str, list] = {}
    for row in sums:
        total = totals.setdefault(row.value if row.value is not None else "unknown", [0, 0.0])
        total[0] += row.segments
        total[1] += row.length_m
    lengths = np.nan_to_num(watched.geoms.lengths(), nan=0.0)
    utility = watched.frame["utility"].astype("string") if "utility" in watched.frame.columns \
        else pd.Series(pd.NA, index=watched.frame.index, dtype="string")
    on = pd.Series(lengths).groupby(utility.fillna("unknown").to_numpy(dtype=object)).sum().to_dict()
    per_utility = {name: {"value": on.get(name, 0.0) / length if length > 0 else None,
                          "numerator": float(on.get(name, 0.0)), "denominator": length}
                   for name, (segments, length) in sorted(totals.items()) if segments > 0}
    return Measured(float(lengths.sum()), float(sum(length for _, length in totals.values())), "m",
                    empty_reason="no pipes here",
                    details={"by_utility": per_utility, "segments": int(sum(n for n, _ in totals.values())),
                             "monitored_segments": int((lengths > 0).sum()),
                             **_monitoring_window(data, opts)})


def _watched_looked_up(data: ModelData, me: str, opts: Options) -> LookedUp | None:
    """The pipes a counting sensor watches, found through the store's indexes: by the sensors'
    `pipe_id`, then near the sensors left without one (the same links as SensorRegistry makes)."""
    counting = _counting_sensors(data, opts)
    registry = data.registry()
    if registry is not None:
        sensors = registry.sensors if counting is None else {s: registry.sensors[s] for s in counting
                                                             if s in registry.sensors}
        return data.look_up("pipe", me, ["uid", "utility"],
                            uids=sorted({info.pipe for info in sensors.values() if info.pipe is not None}))
    sensors = data.frame("sensor", me, ["uid", "sensor_id", "pipe_id"])
    ids, use = _sensor_ids(sensors)
    if counting is not None:
        use = use & np.fromiter((i in counting for i in ids.to_numpy(dtype=object, na_value=None)), bool, len(ids))
    points = data.geoms("sensor", me)[use]
    pipe_ids = sensors["pipe_id"].astype(object).to_numpy()[use] if "pipe_id" in sensors.columns \
        else np.full(int(use.sum()), None, dtype=object)
    named = ~pd.isna(pipe_ids)
    wanted = sorted({str(v) for v in pipe_ids[named]} | {"pipe." + str(v) for v in pipe_ids[named]})
    found = data.look_up("pipe", me, ["uid", "utility"], uids=wanted)
    if found is None:
        return None
    known = set(found.frame["uid"].astype(str)) if len(found) else set()
    resolved = np.array([str(v) in known or "pipe." + str(v) in known for v in pipe_ids], dtype=bool) & named
    loose = points[~resolved]
    loose = loose[~shapely.is_missing(loose) & ~shapely.is_empty(loose)]
    if len(loose) and data.snap_m > 0:
        near = data.look_up("pipe", me, ["uid", "utility"], near=(shapely.get_coordinates(loose), data.snap_m))
        found = found.merge(near)
    if not len(found):
        return found
    import pyarrow as pa

    rows, _ = link_to_pipes(points, pipe_ids, pa.array(found.frame["uid"].astype(str).tolist(), type=pa.string()),
                            found.geoms, data.snap_m)
    keep = np.unique(rows[rows >= 0])
    return LookedUp(found.frame.iloc[keep].reset_index(drop=True), GeometryColumn(found.geoms.geometries(keep)),
                    found.layer[keep], found.fid[keep])


def _at_ms(data: ModelData, opts: Options) -> int:
    """The time readings are counted back from: --at, else the data's own now, else now."""
    return opts.at_ms if opts.at_ms is not None else (data.now_ms or _now_ms())


def _monitoring_window(data: ModelData, opts: Options) -> dict:
    """The window a monitoring result counted readings in, for its details."""
    return {"window": None if opts.window_ms is None else f"{opts.window_ms / 3_600_000:g}h",
            "at": _iso(_at_ms(data, opts))}


def _counting_sensors(data: ModelData, opts: Options) -> set[str] | None:
    """The sensors that count: those with a reading in the window before `at` (None: every installed one)."""
    if opts.window_ms is None:
        return None
    at = _at_ms(data, opts)
    return data.reporting(at - opts.window_ms, at)


def _utilities(pipes: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    """Each pipe's utility as a code into a list of names ('unknown' where it has none)."""
    if "utility" not in pipes.columns:
        return np.zeros(len(pipes), dtype=np.int64), ["unknown"]
    codes, uniques = pd.factorize(pipes["utility"].astype("string"), use_na_sentinel=True)
    names = [str(u) for u in uniques]
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names.append("unknown")
    return codes.astype(np.int64), names


def _watched_pipes(data: ModelData, me: str, opts: Options) -> np.ndarray:
    """Which pipe segments (by row) a sensor that counts watches: reporting in the window, or installed."""
    key = ("watched", opts.at_ms, opts.window_ms)
    if key in data._cache:
        return data._cache[key]
    pipes = data.frame("pipe", me, ["uid", "utility"])
    counting = _counting_sensors(data, opts)
    watched = np.zeros(len(pipes), dtype=bool)
    registry = data.registry()
    if registry is not None:  # the server's own links
        sensors = registry.sensors if counting is None else {s: registry.sensors[s] for s in counting
                                                             if s in registry.sensors}
        uids = {info.pipe for info in sensors.values() if info.pipe is not None}
        if uids:
            watched = pipes["uid"].astype("string").isin(list(uids)).to_numpy(dtype=bool, na_value=False)
    else:
        sensor_ids, rows = _sensor_links(data, me)
        counts = np.ones(len(sensor_ids), dtype=bool) if counting is None else \
            pd.Series(sensor_ids, dtype="string").isin(list(counting)).to_numpy(dtype=bool, na_value=False)
        watched[rows[counts & (rows >= 0)]] = True
    data._cache[key] = watched
    return watched


def _sensor_ids(sensors: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    """Each sensor's id (its `sensor_id`, else its uid without the layer), and which are sensors: one
    without an id is not a sensor, and one whose id came before already is its duplicate."""
    ids = (sensors["sensor_id"] if "sensor_id" in sensors.columns
           else sensors["uid"].astype(str).str.split(".", n=1).str[-1]).astype("string")
    return ids, (ids.notna() & ~ids.duplicated()).to_numpy(dtype=bool)


def _sensor_links(data: ModelData, me: str) -> tuple[np.ndarray, np.ndarray]:
    """Each sensor's id and the row of the pipe it watches (-1: none), as SensorRegistry links them."""
    if "links" not in data._cache:
        sensors = data.frame("sensor", me, ["uid", "sensor_id", "pipe_id"])
        pipes = data.frame("pipe", me, ["uid", "utility"])
        ids, keep = _sensor_ids(sensors)
        pipe_ids = sensors["pipe_id"].astype(object).to_numpy() if "pipe_id" in sensors.columns \
            else np.full(len(sensors), None, dtype=object)
        pipe_uids = pipes["uid"]
        import pyarrow as pa

        arrow = pa.array(pipe_uids.astype("string[pyarrow]").array if hasattr(pipe_uids, "array") else pipe_uids)
        rows, _ = link_to_pipes(data.geoms("sensor", me)[keep], pipe_ids[keep], arrow,
                                data.geometry_column("pipe", me), data.snap_m)
        data._cache["links"] = (ids[keep].to_numpy(dtype=object), rows)
    return data._cache["links"]


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat().replace("+00:00", "Z")


def _share_of_points(kind: str, flag: str, me: str) -> Callable:
    def measure(data: ModelData, clip, target: Target, opts: Options) -> Measured:
        if clip is None and not opts.explain:
            counts = data.count_rows(kind, me, [[], [flag]])
            if counts is not None:
                return Measured(float(counts[1]), float(counts[0]), "count", empty_reason=f"no {kind} here")
        frame = data.frame(kind, me, ["uid", flag, "name"])
        if flag not in frame.columns:
            raise MissingLayer(f"{me} needs the field {flag!r} on the {kind} layer (true for smart ones)")
        geoms = data.geoms(kind, me) if clip is not None or opts.explain else None
        inside = _inside(geoms, clip) if clip is not None else np.ones(len(frame), dtype=bool)
        smart = _truthy(frame[flag]) & inside
        m = Measured(float(smart.sum()), float(inside.sum()), "count", empty_reason=f"no {kind} here")
        if opts.explain:
            others = np.flatnonzero(inside & ~smart)
            names = frame["name"] if "name" in frame.columns else frame["uid"]
            m.gap_items = [{"uid": str(frame["uid"].iloc[k]), "name": _text(names.iloc[k])} for k in others[:GAP_ITEMS]]
            m.details[f"not_{flag}"] = int(len(others))
            m.marks[f"{flag} {kind}"] = shapely.union_all(geoms[smart]) if smart.any() else shapely.Point()
            m.marks[f"other {kind}"] = shapely.union_all(geoms[others]) if len(others) else shapely.Point()
            m.area = clip
        return m
    return measure


def _text(value) -> str | None:
    return None if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)) else str(value)


def weather_station_spacing(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "weather_station_spacing"
    area = _clip(data.union("urban_area", me), clip)
    stations = data.geoms("weather_station", me)
    stations = stations[~shapely.is_missing(stations) & ~shapely.is_empty(stations)]
    inside = _inside(stations, area, boundary=True) if not area.is_empty else np.zeros(len(stations), dtype=bool)
    n = int(inside.sum())
    m = Measured(area.area, float(n), "m2 / stations", area=area, empty_reason="no weather station in the urban area")
    if area.is_empty:
        m.denominator = 0.0
        m.empty_reason = "no urban area here"
        return m
    if n:
        m.value = math.sqrt(area.area / n) / 1000.0
    m.details["stations_inside"] = n
    if len(stations):
        far_point, far_m = _farthest_point(area, shapely.get_coordinates(stations))
        m.details["max_distance_km"] = far_m / 1000.0
        m.details["farthest_point"] = [float(far_point[0]), float(far_point[1])]
        if opts.explain:
            reach = shapely.union_all(disc_polygons(np.unique(shapely.get_coordinates(stations), axis=0),
                                                    np.full(len(np.unique(shapely.get_coordinates(stations), axis=0)),
                                                            target.target * 1000.0), 32))
            m.uncovered = _polygonal(shapely.difference(area, reach))
            m.covered = _polygonal(shapely.intersection(area, reach))
            m.gap_items = [{"farthest_point": m.details["farthest_point"], "distance_km": far_m / 1000.0,
                            "area_beyond_target_km2": m.uncovered.area / 1e6}]
            m.marks["weather stations"] = shapely.union_all(stations)
            m.marks["farthest point"] = shapely.Point(far_point)
    return m


def _farthest_point(area: shapely.Geometry, stations: np.ndarray) -> tuple[np.ndarray, float]:
    """The point of `area` farthest from its nearest station, and that distance.

    Within a station's Voronoi cell the distance to the nearest station is that station's,
    a convex function, so its maximum over cell ∩ area lies on a vertex of that piece.
    """
    stations = np.unique(stations, axis=0)
    if len(stations) == 1:
        xy = shapely.get_coordinates(area)
        d = np.hypot(xy[:, 0] - stations[0, 0], xy[:, 1] - stations[0, 1])
        k = int(np.argmax(d))
        return xy[k], float(d[k])
    minx, miny, maxx, maxy = area.bounds
    sx, sy = stations[:, 0], stations[:, 1]
    envelope = shapely.box(min(minx, sx.min()) - 1, min(miny, sy.min()) - 1, max(maxx, sx.max()) + 1,
                           max(maxy, sy.max()) + 1)
    cells = shapely.get_parts(shapely.voronoi_polygons(shapely.multipoints(stations), extend_to=envelope,
                                                       ordered=True))
    # a cell inside the area is its own piece, one outside has none; the others are overlaid with the
    # part of the area in the cell's box, which is quicker than with all of it
    shapely.prepare(area)
    inside = shapely.contains(area, cells)
    crossing = np.flatnonzero(~inside & shapely.intersects(area, cells))
    near = np.array([shapely.clip_by_rect(area, *box) for box in shapely.bounds(cells[crossing])], dtype=object)
    pieces = np.concatenate([cells[inside], shapely.intersection(cells[crossing], near)])
    owners = np.concatenate([np.flatnonzero(inside), crossing])
    xy, piece = shapely.get_coordinates(pieces, return_index=True)
    cell = owners[piece]
    if not len(xy):
        return stations[0], -1.0
    d = np.hypot(xy[:, 0] - stations[cell, 0], xy[:, 1] - stations[cell, 1])
    j = int(np.argmax(d))
    return xy[j], float(d[j])


def _disc_coverage(point_kind: str, areas: tuple[str, ...], me: str) -> Callable:
    def measure(data: ModelData, clip, target: Target, opts: Options) -> Measured:
        area = data.union(areas[0], me)
        for other in areas[1:]:
            area = _polygonal(shapely.intersection(area, data.union(other, me)))
        area = _clip(area, clip)
        frame = data.frame(point_kind, me, ["range_m"])
        if "range_m" not in frame.columns:
            raise MissingLayer(f"{me} needs the field 'range_m' on the {point_kind} layer (its reach in metres)")
        centers, radii, no_range = _discs(data, point_kind, me)
        covered = covered_area(area, centers, radii) if not area.is_empty else 0.0
        num, den = _area_ratio(covered, area.area)
        m = Measured(num, den, "m2", area=area, empty_reason=f"no {' ∩ '.join(areas)} here",
                     details={f"{point_kind}s": int(len(radii)), "without_range": no_range})
        if opts.explain and den > 0:
            shapely.prepare(area)
            near = shapely.dwithin(area, shapely.points(centers), radii) if len(radii) else np.zeros(0, dtype=bool)
            reach = shapely.union_all(disc_polygons(centers[near], radii[near], 16)) if near.any() \
                else shapely.Polygon()
            m.uncovered = _polygonal(shapely.difference(area, reach))
            m.covered = _polygonal(shapely.intersection(area, reach))
            parts = [p for p in shapely.get_parts(m.uncovered) if p.area > 0]
            parts.sort(key=lambda p: -p.area)
            m.gap_items = [{"area_m2": float(p.area), "centroid": [float(p.centroid.x), float(p.centroid.y)]}
                           for p in parts[:GAP_ITEMS]]
            m.details["uncovered_parts"] = len(parts)
            m.marks[f"{point_kind}s"] = shapely.multipoints(centers[near]) if near.any() else shapely.MultiPoint()
        return m
    return measure


def _discs(data: ModelData, kind: str, me: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Disc centres and radii in CRS units: range_m is on the ground, scaled by the CRS's scale factor."""
    key = ("discs", kind)
    if key not in data._cache:
        frame = data.frame(kind, me, ["range_m"])
        geoms = data.geoms(kind, me)
        reach = pd.to_numeric(frame["range_m"], errors="coerce").to_numpy(dtype=float)
        ok = ~shapely.is_missing(geoms) & ~shapely.is_empty(geoms) & np.isfinite(reach) & (reach > 0)
        points = geoms[ok]
        points = np.where(shapely.get_type_id(points) == 0, points, shapely.point_on_surface(points))
        xy = shapely.get_coordinates(points)
        radii = reach[ok] * data.scale_factor(xy[:, 0], xy[:, 1])
        data._cache[key] = (xy, radii, int((~ok).sum()))
    return data._cache[key]


def green_coverage(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "green_coverage"
    area = _clip(data.union("urban_area", me), clip)
    parts = clip_polygons(data.geoms("green", me), area)  # area(urban ∩ ∪ green) = area(∪ (green ∩ urban))
    num, den = _area_ratio(union_area(parts), area.area)
    m = Measured(num, den, "m2", area=area, empty_reason="no urban area here")
    if opts.explain and den > 0:
        m.covered = _polygonal(shapely.disjoint_subset_union_all(parts)) if len(parts) else shapely.Polygon()
        m.uncovered = _polygonal(shapely.difference(area, m.covered))
    return m


def energy_metering(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "energy_metering"
    if clip is None and not opts.explain:
        counts = data.count_rows("building", me, [["energy_key"], ["energy_key", "energy_metered"]])
        if counts is not None:
            return Measured(float(counts[1]), float(counts[0]), "count",
                            empty_reason="no key energy-using buildings here")
    frame = data.frame("building", me, ["uid", "energy_key", "energy_metered", "name"])
    for name in ("energy_key", "energy_metered"):
        if name not in frame.columns:
            raise MissingLayer(f"{me} needs the building field {name!r} (energy_key: a key energy-using building; "
                               f"energy_metered: its energy use is metered digitally)")
    geoms = data.geoms("building", me) if clip is not None or opts.explain else None
    key = _truthy(frame["energy_key"]) & (_inside(geoms, clip) if clip is not None else True)
    metered = key & _truthy(frame["energy_metered"])
    m = Measured(float(metered.sum()), float(key.sum()), "count", empty_reason="no key energy-using buildings here")
    if opts.explain:
        missing = np.flatnonzero(key & ~metered)
        names = frame["name"] if "name" in frame.columns else frame["uid"]
        m.gap_items = [{"uid": str(frame["uid"].iloc[k]), "name": _text(names.iloc[k])} for k in missing[:GAP_ITEMS]]
        m.details["not_metered"] = int(len(missing))
        m.area = clip
        m.covered = shapely.disjoint_subset_union_all(geoms[metered]) if metered.any() else None
        m.uncovered = shapely.disjoint_subset_union_all(geoms[missing]) if len(missing) else None
    return m


def combined_sewer_share(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "combined_sewer_share"
    drainage_kinds = ("storm", "sewage", "combined")
    sums = data.line_lengths("pipe", me) if clip is None and not opts.explain else None
    if sums is not None:  # the store summed the lengths per utility at ingest
        if all(row.by is None for row in sums):
            raise MissingLayer(f"{me} needs the pipe field 'utility' (storm, sewage or combined)")
        by_utility = {u: float(sum(row.length_m for row in sums if row.value == u)) for u in drainage_kinds}
        return Measured(by_utility["combined"], float(sum(by_utility.values())), "m",
                        empty_reason="no storm, sewage or combined pipes here", details=by_utility)
    # only drainage pipes are read (the store filters them), the rest never leave it
    pipes, lines = data.rows_where("pipe", me, ["uid", "utility"] if opts.explain else ["utility"], "utility",
                                   drainage_kinds)
    if "utility" not in pipes.columns:
        raise MissingLayer(f"{me} needs the pipe field 'utility' (storm, sewage or combined)")
    utility = pipes["utility"].astype("string")
    if clip is None:
        lengths = lines.lengths()
    else:
        lengths = _lengths(shapely.force_2d(lines.geometries()), clip)
    by_utility = {u: float(lengths[(utility == u).to_numpy(dtype=bool, na_value=False)].sum()) for u in drainage_kinds}
    combined = (utility == "combined").to_numpy(dtype=bool, na_value=False)
    m = Measured(float(lengths[combined].sum()), float(lengths.sum()), "m",
                 empty_reason="no storm, sewage or combined pipes here", details=by_utility)
    if opts.explain:
        geoms = shapely.force_2d(lines.geometries())
        order = np.flatnonzero(combined & (lengths > 0))
        order = order[np.argsort(-lengths[order], kind="stable")]
        uids = pipes["uid"].astype(str).to_numpy()
        m.gap_items = [{"uid": uids[k], "length_m": float(lengths[k])} for k in order[:GAP_ITEMS]]
        m.marks["combined pipes"] = shapely.multilinestrings(list(shapely.get_parts(geoms[order]))) \
            if len(order) else shapely.MultiLineString()
        m.marks["separate pipes"] = shapely.multilinestrings(
            list(shapely.get_parts(geoms[~combined]))) if (~combined).any() \
            else shapely.MultiLineString()
        m.area = clip
    return m


def bim_coverage(data: ModelData, clip, target: Target, opts: Options) -> Measured:
    me = "bim_coverage"
    bim = clip_polygons(data.geoms("bim", me), clip)
    every = np.concatenate([clip_polygons(data.geoms("building", me), clip), bim])
    # ∪ bim lies inside ∪ every footprint, so area(∪ every ∩ ∪ bim) is area(∪ bim)
    num, den = _area_ratio(union_area(bim), union_area(every))
    m = Measured(num, den, "m2", empty_reason="no buildings here")
    if opts.explain and den > 0:
        # built group by group (footprints that overlap): never one union of every footprint
        is_bim = np.r_[np.zeros(len(every) - len(bim), dtype=bool), np.ones(len(bim), dtype=bool)]
        labels, _, _ = overlap_groups(every)
        groups, unions = group_unions(every, labels)
        bim_groups, bim_unions = group_unions(every[is_bim], labels[is_bim])
        covered = np.full(len(groups), None, dtype=object)
        covered[np.searchsorted(groups, bim_groups)] = bim_unions
        uncovered = unions.copy()
        has = ~shapely.is_missing(covered)
        uncovered[has] = shapely.difference(unions[has], covered[has])
        m.area = _parts(unions)
        m.covered = _parts(covered[has])
        m.uncovered = _parts(uncovered)
    return m


def _parts(geoms: np.ndarray) -> shapely.Geometry:
    """The polygons of some geometries that meet at most along their edges, as one MultiPolygon (not dissolved)."""
    parts = shapely.get_parts(np.asarray(geoms, dtype=object)[~shapely.is_missing(geoms)])
    parts = parts[np.isin(shapely.get_type_id(parts), [3]) & (shapely.area(parts) > 0)] if len(parts) else parts
    return shapely.multipolygons(parts) if len(parts) else shapely.MultiPolygon()


INDICATORS: dict[str, Indicator] = {i.id: i for i in [
    Indicator("topo_map_coverage", "ratio", ("planning_area", "map_sheet"), topo_map_coverage,
              "area(planning_area ∩ ∪ surveyed map sheets of scale ≤ 1:2000) / area(planning_area)"),
    Indicator("pipeline_monitoring", "ratio", ("pipe", "sensor"), pipeline_monitoring,
              "length of pipe watched by a sensor reporting in the window / length of pipe"),
    Indicator("smart_lighting", "ratio", ("lamp",), _share_of_points("lamp", "smart", "smart_lighting"),
              "smart lamps / lamps"),
    Indicator("weather_station_spacing", "km", ("urban_area", "weather_station"), weather_station_spacing,
              "sqrt(area(urban_area) / weather stations inside it); and the farthest any point is from one"),
    Indicator("video_coverage", "ratio", ("key_area", "camera"), _disc_coverage("camera", ("key_area",),
                                                                               "video_coverage"),
              "area(key_area ∩ ∪ camera discs of range_m) / area(key_area)"),
    Indicator("fiveg_coverage", "ratio", ("key_area", "urban_area", "base_station"),
              _disc_coverage("base_station", ("key_area", "urban_area"), "fiveg_coverage"),
              "area(key_area ∩ urban_area ∩ ∪ base station discs of range_m) / area(key_area ∩ urban_area)"),
    Indicator("smart_community", "ratio", ("community",), _share_of_points("community", "smart", "smart_community"),
              "smart communities / communities"),
    Indicator("smart_campus", "ratio", ("school",), _share_of_points("school", "smart", "smart_campus"),
              "smart schools / schools"),
    Indicator("green_coverage", "ratio", ("urban_area", "green"), green_coverage,
              "area(urban_area ∩ ∪ green) / area(urban_area)"),
    Indicator("energy_metering", "ratio", ("building",), energy_metering,
              "buildings with energy_metered / buildings with energy_key"),
    Indicator("combined_sewer_share", "ratio", ("pipe",), combined_sewer_share,
              "length of combined pipes / length of storm + sewage + combined pipes"),
    Indicator("bim_coverage", "ratio", ("bim", "building"), bim_coverage,
              "area(∪ BIM footprints) / area(∪ all building footprints)"),
]}


def _indicator(name: str) -> Indicator:
    try:
        return INDICATORS[name]
    except KeyError:
        raise ValueError(f"unknown indicator {name!r}; known: {', '.join(INDICATORS)}") from None


def measurable_indicators(data: ModelData) -> list[str]:
    """The indicators whose layers the model has."""
    return [i.id for i in INDICATORS.values() if all(data.has(k) for k in i.needs)]


def _result(indicator: Indicator, target: Target, m: Measured, district: str | None, seconds: float) -> IndicatorResult:
    if m.denominator > 0 and (m.value is not None or indicator.unit == "ratio"):
        value = m.value if m.value is not None else m.numerator / m.denominator
        met, margin, stars, reason = target.met(value), target.margin(value), target.star_rating(value), None
    else:
        value, met, margin, stars = None, None, None, None
        reason = f"not measurable: {m.empty_reason}"
    return IndicatorResult(indicator.id, target.title, value, indicator.unit, m.numerator, m.denominator, m.measure,
                           target.target, target.compare, met, margin, stars, reason, district, m.details,
                           m.gap_items, None, seconds, m)


def compute(name: str, data: ModelData, *, by_district: bool = False, options: Options | None = None,
            targets: Mapping[str, Target] | None = None) -> IndicatorResult:
    """One indicator over the whole model, and per district when asked."""
    indicator = _indicator(name)
    targets = targets or load_targets()
    target = targets[name]
    opts = options or Options()
    if opts.window_ms == -1:
        opts = replace(opts, window_ms=parse_window(str(targets["pipeline_monitoring"].options.get("window", "24h"))))
    started = time.perf_counter()
    result = _result(indicator, target, indicator.measure(data, None, target, opts), None,
                     time.perf_counter() - started)
    if by_district:
        frame = data.frame("district", name)
        names = frame["name"] if "name" in frame.columns else frame["uid"]
        result.by = []
        for label, geom in zip(names, data.geoms("district", name)):
            started = time.perf_counter()
            part = indicator.measure(data, _polygonal(geom), target, opts)
            result.by.append(_result(indicator, target, part, _text(label) or "?", time.perf_counter() - started))
    return result


def compute_all(data: ModelData, names: Iterable[str] | None = None, *,
                skipped: list[str] | None = None, **kwargs) -> list[IndicatorResult]:
    """Several indicators; with no names, every one the model has the layers and fields for.

    Without names, an indicator whose layer or field is missing is left out and its
    reason appended to `skipped`; named ones raise MissingLayer.
    """
    if names:
        return [compute(n, data, **kwargs) for n in names]
    results = []
    for name in INDICATORS:
        try:
            results.append(compute(name, data, **kwargs))
        except MissingLayer as exc:
            if skipped is not None:
                skipped.append(str(exc))
    return results
