"""Live pipe monitoring: which sensor watches which pipe, the thresholds that turn readings into
statuses, and the one ingest path every transport (HTTP, MQTT, CSV replay, the simulator) uses.

After OGC SensorThings: a sensor of the city's `sensor` layers is a Thing with one Datastream
(its `property` in its `unit`), and its observations live in the city store. A sensor's
status comes from its latest reading and the thresholds of its property and utility, or is
"no_data" when that reading is older than the staleness window; a pipe segment's status is
the worst of its sensors'. Status changes are recorded as events in the store, inside the
transaction that wrote the readings, so every process serving the city sees the same ones.
"""

from __future__ import annotations

import logging
import math
import threading
import tomllib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.errors import BadObservation
from layers.sensors import MAX_FUTURE_MS, ObservationRow, now_ms, parse_batch
from twin.errors import SpecError, UnknownSensor
from twin.store import Reading, StatusChange, Store

__all__ = ["DEFAULT_THRESHOLDS", "STATUS_RANK", "Band", "Thresholds", "SensorInfo", "SensorRegistry",
           "IngestReport", "SensorMonitor", "assess_statuses", "link_to_pipes", "missing_value", "worst"]

log = logging.getLogger("twin.sensors")

# Worst first wins: an alarm on any sensor makes the pipe an alarm; a silent sensor hides less
# than a warning but more than a normal reading.
STATUS_RANK = {"normal": 0, "no_data": 1, "warning": 2, "alarm": 3}

DEFAULT_THRESHOLDS = """\
# Warning and alarm bands of sensor readings, per property and refined per utility
# ([property.utility]). A reading outside `warning` is a warning, outside `alarm` an alarm.
# Bands are in the table's `unit`; pressures in other units (kPa, bar, m of head, psi) are
# converted. A sensor without a reading for `stale_after_s` seconds has no data.
stale_after_s = 300

[pressure]                  # water mains
unit = "MPa"
warning = [0.20, 0.60]
alarm = [0.14, 0.75]

[pressure.gas]              # medium-pressure gas distribution
unit = "MPa"
warning = [0.15, 0.42]
alarm = [0.10, 0.50]

[flow]
unit = "m3/h"
warning = [0.0, 450.0]
alarm = [-inf, 600.0]

[level]                     # water level above the invert of a drain or sewer
unit = "m"
warning = [-inf, 0.9]
alarm = [-inf, 1.4]

[leak]                      # a leak switch: 1 is a leak
unit = "bool"
warning = [-inf, 0.5]
alarm = [-inf, 0.5]
stale_after_s = 3600
"""

# Pressure units in MPa; a metre of head is a metre of water.
_PRESSURE_MPA = {"mpa": 1.0, "kpa": 1e-3, "pa": 1e-6, "bar": 0.1, "m": 0.00980665, "mh2o": 0.00980665,
                 "psi": 0.00689476}


@dataclass(frozen=True)
class Band:
    """The warning and alarm bands of one property (and utility), with its staleness window."""

    unit: str | None
    warning: tuple[float, float] = (-math.inf, math.inf)
    alarm: tuple[float, float] = (-math.inf, math.inf)
    stale_after_ms: int = 300_000

    def status(self, value: float, unit: str | None = None) -> str:
        """The status of a fresh reading, converted from `unit` to the band's unit where known."""
        value = _convert(value, unit, self.unit)
        if not self.alarm[0] <= value <= self.alarm[1]:
            return "alarm"
        if not self.warning[0] <= value <= self.warning[1]:
            return "warning"
        return "normal"


def _convert(value: float, unit: str | None, to: str | None) -> float:
    if unit is None or to is None or unit == to:
        return value
    a, b = _PRESSURE_MPA.get(unit.lower().replace(" ", "")), _PRESSURE_MPA.get(to.lower().replace(" ", ""))
    return value * a / b if a is not None and b is not None else value


@dataclass(frozen=True)
class Thresholds:
    """Bands by (property, utility); `band` falls back from the utility's to the property's."""

    bands: dict[tuple[str, str | None], Band]
    stale_after_ms: int = 300_000

    @classmethod
    def parse(cls, text: str, source: str | Path | None = None) -> "Thresholds":
        """Thresholds from TOML text (see DEFAULT_THRESHOLDS for the form)."""
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(source, f"is not valid TOML: {exc}") from None
        stale = _seconds(doc.get("stale_after_s", 300), source, "stale_after_s")
        bands: dict[tuple[str, str | None], Band] = {}
        for prop, table in doc.items():
            if not isinstance(table, dict):
                continue
            bands[(prop, None)] = base = _band(table, None, stale, source, prop)
            for utility, sub in table.items():
                if isinstance(sub, dict):
                    bands[(prop, utility)] = _band(sub, base, stale, source, f"{prop}.{utility}")
        return cls(bands, stale)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Thresholds":
        """Thresholds from a TOML file, or the defaults when `path` is None."""
        if path is None:
            return cls.parse(DEFAULT_THRESHOLDS, "default thresholds")
        path = Path(path)
        if not path.is_file():
            raise SpecError(path, "thresholds file does not exist")
        return cls.parse(path.read_text(encoding="utf-8"), path)

    def band(self, prop: str | None, utility: str | None) -> Band | None:
        """The band for a property on a utility's pipe (None: any reading is normal)."""
        return self.bands.get((prop or "", utility)) or self.bands.get((prop or "", None))

    def status(self, info: "SensorInfo", reading: Reading, now: int) -> str:
        """A sensor's status from its latest reading at time `now` (ms)."""
        band = self.band(info.property, info.utility)
        stale = band.stale_after_ms if band is not None else self.stale_after_ms
        if now - reading.time_ms > stale:
            return "no_data"
        return band.status(reading.value, info.unit) if band is not None else "normal"


def _seconds(value, source, key) -> int:
    if not isinstance(value, (int, float)) or value <= 0:
        raise SpecError(source, f"{key} must be a positive number of seconds, got {value!r}")
    return int(value * 1000)


def _pair(value, source, key) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value)
            or value[0] > value[1]):
        raise SpecError(source, f"{key} must be [low, high] with low <= high, got {value!r}")
    return float(value[0]), float(value[1])


def _band(table: dict, base: Band | None, stale: int, source, key: str) -> Band:
    return Band(
        unit=table.get("unit", base.unit if base else None),
        warning=_pair(table["warning"], source, f"{key}.warning") if "warning" in table
        else (base.warning if base else (-math.inf, math.inf)),
        alarm=_pair(table["alarm"], source, f"{key}.alarm") if "alarm" in table
        else (base.alarm if base else (-math.inf, math.inf)),
        stale_after_ms=_seconds(table["stale_after_s"], source, f"{key}.stale_after_s") if "stale_after_s" in table
        else (base.stale_after_ms if base else stale))


@dataclass(frozen=True)
class SensorInfo:
    """What the model knows of one sensor: its feature, what it measures and the pipe it watches."""

    sensor_id: str
    layer: str
    uid: str
    property: str | None
    unit: str | None
    pipe: str | None = None  # the watched pipe segment's uid
    pipe_layer: str | None = None
    utility: str | None = None


@dataclass
class SensorRegistry:
    """The city's sensors by id and the pipe segments they watch."""

    sensors: dict[str, SensorInfo] = field(default_factory=dict)
    pipe_sensors: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (layer, uid) -> sensor ids
    snapped: int = 0

    @classmethod
    def build(cls, sensor_layers: Mapping[str, gpd.GeoDataFrame], pipe_layers: Mapping[str, gpd.GeoDataFrame],
              snap_m: float = 10.0) -> "SensorRegistry":
        """Link each sensor to its pipe by `pipe_id`, else to the nearest pipe within `snap_m` metres."""
        uids, layers, utilities, geoms = [], [], [], []
        for layer, frame in pipe_layers.items():
            uids.append(frame["uid"].astype(str).to_numpy(dtype=object))
            layers.append(np.full(len(frame), layer, dtype=object))
            utilities.append(frame["utility"].to_numpy(dtype=object) if "utility" in frame.columns
                             else np.full(len(frame), None, dtype=object))
            geoms.append(np.asarray(frame.geometry.values, dtype=object))
        pipe_uids = np.concatenate(uids) if uids else np.empty(0, dtype=object)
        pipe_layer = np.concatenate(layers) if layers else np.empty(0, dtype=object)
        pipe_utility = np.concatenate(utilities) if utilities else np.empty(0, dtype=object)
        pipe_geoms = np.concatenate(geoms) if geoms else np.empty(0, dtype=object)
        # a uid in two pipe layers: the later layer's segment is the one named (as a dict would keep it)
        registry = cls()
        for layer, frame in sensor_layers.items():
            uid = frame["uid"].astype(str).to_numpy(dtype=object)
            ids = (frame["sensor_id"] if "sensor_id" in frame.columns else frame["uid"].str.split(".", n=1).str[-1]
                   ).to_numpy(dtype=object)
            keep = np.array([not missing_value(v) for v in ids], dtype=bool)
            pipe_ids = frame["pipe_id"].to_numpy(dtype=object) if "pipe_id" in frame.columns \
                else np.full(len(frame), None, dtype=object)
            points = np.asarray(frame.geometry.values, dtype=object)
            at, snapped = link_to_pipes(points[keep], pipe_ids[keep], pipe_uids, pipe_geoms, snap_m)
            registry.snapped += int(snapped.sum())
            props, units = _strings(frame, "property")[keep], _strings(frame, "unit")[keep]
            for k, (sid, sensor_uid) in enumerate(zip(ids[keep], uid[keep])):
                sid = str(sid)
                if sid in registry.sensors:
                    log.warning("sensor %s appears twice (layers %s and %s); the first is used",
                                sid, registry.sensors[sid].layer, layer)
                    if snapped[k]:
                        registry.snapped -= 1
                    continue
                row = int(at[k])
                pipe = pipe_uids[row] if row >= 0 else None
                layer_of = pipe_layer[row] if row >= 0 else None
                utility = pipe_utility[row] if row >= 0 else None
                utility = None if missing_value(utility) else str(utility)
                info = SensorInfo(sid, layer, sensor_uid, props[k], units[k], pipe, layer_of, utility)
                registry.sensors[sid] = info
                if pipe is not None:
                    registry.pipe_sensors.setdefault((layer_of, pipe), []).append(sid)
        return registry

    def info(self, sensor_id: str) -> SensorInfo:
        """One sensor; raises UnknownSensor."""
        try:
            return self.sensors[sensor_id]
        except KeyError:
            raise UnknownSensor(f"no sensor {sensor_id!r} in the city's sensor layers") from None


def missing_value(value) -> bool:
    """Whether a cell holds no value (None, NA or NaN): no sensor id, no pipe_id, no utility."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _strings(frame: gpd.GeoDataFrame, name: str) -> np.ndarray:
    """A column as str or None per feature (None when the column is missing)."""
    if name not in frame.columns:
        return np.full(len(frame), None, dtype=object)
    return np.array([None if missing_value(v) else str(v) for v in frame[name].to_numpy(dtype=object)], dtype=object)


def link_to_pipes(points: np.ndarray, pipe_ids: np.ndarray, pipe_uids, pipe_geoms: np.ndarray,
                  snap_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The row of the pipe each sensor watches (-1: none), and whether it was snapped.

    A sensor watches the pipe its `pipe_id` names (a uid, or a key of the `pipe` layer),
    else the nearest pipe within `snap_m` of it. `pipe_uids` may be any array-like of
    strings; a uid given twice names its last segment. `pipe_geoms` is an array of
    geometries, or anything with `bounds()` and `geometries(rows)` (twin.columns.GeometryColumn),
    so that only the pipes near a sensor are decoded.
    """
    n = len(points)
    rows = np.full(n, -1, dtype=np.int64)
    snapped = np.zeros(n, dtype=bool)
    if not n:
        return rows, snapped
    named = np.array([not missing_value(v) for v in pipe_ids], dtype=bool)
    if named.any() and len(pipe_uids):
        wanted = np.array([str(v) for v in pipe_ids[named]], dtype=object)
        rows[named] = _rows_of(pipe_uids, wanted)
        retry = np.flatnonzero(named)[rows[named] < 0]
        if len(retry):
            rows[retry] = _rows_of(pipe_uids, np.array(["pipe." + str(pipe_ids[k]) for k in retry], dtype=object))
    need = np.flatnonzero(rows < 0)
    if snap_m > 0 and len(need) and len(pipe_geoms):
        pts = np.asarray(points, dtype=object)[need]
        pts = shapely.force_2d(pts) if shapely.has_z(pts).any() else pts
        ok = ~shapely.is_missing(pts) & ~shapely.is_empty(pts)
        need, pts = need[ok], pts[ok]
        bounds = pipe_geoms.bounds() if hasattr(pipe_geoms, "bounds") else \
            shapely.bounds(np.asarray(pipe_geoms, dtype=object))
        # among a few pipes (those looked up near the sensors) a tree of them all is quicker than the grid
        candidates = _near(bounds, shapely.get_coordinates(pts), snap_m) if len(bounds) > 100_000 \
            else np.flatnonzero(np.isfinite(bounds).all(axis=1))
        if len(need) and len(candidates):
            near = pipe_geoms.geometries(candidates) if hasattr(pipe_geoms, "geometries") \
                else np.asarray(pipe_geoms, dtype=object)[candidates]
            tree = shapely.STRtree(shapely.force_2d(near) if shapely.has_z(near).any() else near)
            which, hit = tree.query_nearest(pts, max_distance=snap_m)
            which, first = np.unique(which, return_index=True)
            rows[need[which]] = candidates[hit[first]]
            snapped[need[which]] = True
    return rows, snapped


def _rows_of(uids, wanted: np.ndarray) -> np.ndarray:
    """Row of each wanted uid among `uids` (its last), -1 where there is none; hashing the few wanted ones."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = uids if isinstance(uids, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(uids, dtype=object),
                                                                                   type=pa.string())
    unique, inverse = np.unique(wanted.astype(str), return_inverse=True)
    match = pc.index_in(values, value_set=pa.array(unique, type=pa.string()))
    match = np.asarray(match.to_numpy(zero_copy_only=False) if hasattr(match, "to_numpy") else match)
    match = np.where(pd.isna(match), -1, match).astype(np.int64)
    found = np.full(len(unique), -1, dtype=np.int64)
    at = np.flatnonzero(match >= 0)
    found[match[at]] = at  # later rows overwrite earlier ones
    return found[inverse]


def _near(bounds: np.ndarray, xy: np.ndarray, reach: float) -> np.ndarray:
    """Rows of the boxes that, grown by `reach`, may hold one of the points.

    The points are marked on a grid of cells `2 reach` wide, and a summed-area table of
    the marks tells for any box in four look-ups whether a marked cell lies under it.
    """
    ok = np.isfinite(bounds).all(axis=1)
    cell = max(2.0 * reach, 1e-6)
    minx, miny = xy.min(axis=0) - cell
    maxx, maxy = xy.max(axis=0) + cell
    while ((maxx - minx) / cell + 2) * ((maxy - miny) / cell + 2) > 16_000_000:
        cell *= 2
    nx, ny = int((maxx - minx) // cell) + 2, int((maxy - miny) // cell) + 2
    marks = np.zeros((nx + 1, ny + 1), dtype=np.int32)
    np.add.at(marks, (((xy[:, 0] - minx) // cell).astype(np.int64) + 1,
                      ((xy[:, 1] - miny) // cell).astype(np.int64) + 1), 1)
    table = marks.cumsum(axis=0).cumsum(axis=1)
    with np.errstate(invalid="ignore"):
        ix0 = np.clip(np.floor((bounds[:, 0] - reach - minx) / cell), 0, nx - 1)
        iy0 = np.clip(np.floor((bounds[:, 1] - reach - miny) / cell), 0, ny - 1)
        ix1 = np.clip(np.floor((bounds[:, 2] + reach - minx) / cell), 0, nx - 1)
        iy1 = np.clip(np.floor((bounds[:, 3] + reach - miny) / cell), 0, ny - 1)
    rows = np.flatnonzero(ok)
    a0, b0 = ix0[rows].astype(np.int64), iy0[rows].astype(np.int64)
    a1, b1 = ix1[rows].astype(np.int64) + 1, iy1[rows].astype(np.int64) + 1
    count = table[a1, b1] - table[a0, b1] - table[a1, b0] + table[a0, b0]
    return rows[count > 0]


def worst(statuses: Iterable[str]) -> str:
    """The worst of some statuses ("no_data" when there are none)."""
    return max(statuses, key=STATUS_RANK.__getitem__, default="no_data")


def assess_statuses(registry: SensorRegistry, thresholds: Thresholds, now: int,
                    readings: Mapping[str, Reading], stored: Mapping[tuple[str, str], str]) -> list[StatusChange]:
    """The status changes that `readings` bring about, given the `stored` statuses (pure).

    A sensor or pipe with no stored status counts as "no_data"; a pipe takes the worst status
    of all its sensors, the ones without a new reading at their stored status.
    """
    changes: list[StatusChange] = []
    fresh: dict[str, tuple[str, float]] = {}
    for sid, reading in readings.items():
        info = registry.sensors.get(sid)
        if info is None:
            continue
        status = thresholds.status(info, reading, now)
        fresh[sid] = (status, reading.value)
        if status != stored.get((info.layer, info.uid), "no_data"):
            changes.append(StatusChange(info.layer, info.uid, status, sid, reading.value))
    pipes = {(info.pipe_layer, info.pipe) for sid in fresh if (info := registry.sensors[sid]).pipe is not None}
    for key in sorted(pipes):
        members = []
        for sid in registry.pipe_sensors.get(key, []):
            info = registry.sensors[sid]
            status, value = fresh.get(sid, (stored.get((info.layer, info.uid), "no_data"), None))
            members.append((STATUS_RANK[status], sid, status, value))
        _, sid, status, value = max(members, key=lambda m: m[0])
        if status != stored.get(key, "no_data"):
            changes.append(StatusChange(key[0], key[1], status, sid, value))
    return changes


@dataclass
class IngestReport:
    """What became of one batch: counts by outcome and the reasons of the first rejections."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    late: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    events: int = 0

    @property
    def rejected_total(self) -> int:
        """How many observations were rejected, for any reason."""
        return sum(self.rejected.values())

    def to_dict(self) -> dict:
        """The report as JSON-ready data."""
        return {"received": self.received, "stored": self.stored, "duplicates": self.duplicates, "late": self.late,
                "rejected": self.rejected_total, "rejected_by_reason": self.rejected, "errors": self.errors,
                "status_changes": self.events}


MAX_REPORTED_ERRORS = 20


class SensorMonitor:
    """The one ingest path of observations into a city, and the status rules over them.

    `registry` is called for the current sensor registry on every batch (a server rebuilds it
    when the sensor or pipe layers change); thread-safe.
    """

    def __init__(self, store: Store, registry: Callable[[], SensorRegistry], thresholds: Thresholds | None = None,
                 max_future_ms: int = MAX_FUTURE_MS) -> None:
        self.store = store
        self.registry = registry
        self.thresholds = thresholds or Thresholds.load()
        self.max_future_ms = max_future_ms
        self._sweep_lock = threading.Lock()

    def ingest_payload(self, body: bytes | str | object, *, sensor_id: str | None = None,
                       source: str = "http") -> IngestReport:
        """Parse a JSON body (one observation or an array) and ingest what is valid."""
        rows, rejected = parse_batch(body, sensor_id=sensor_id, max_future_ms=self.max_future_ms, source=source)
        return self.ingest(rows, rejected, source=source)

    def ingest(self, rows: list[ObservationRow], rejected: list[BadObservation] | None = None,
               source: str = "ingest") -> IngestReport:
        """Store the rows of known sensors, count every rejection, record the status changes."""
        registry = self.registry()
        rejected = list(rejected or [])
        known = registry.sensors
        if any(r[0] not in known for r in rows):
            kept = []
            for index, row in enumerate(rows):
                if row[0] in known:
                    kept.append(row)
                else:
                    rejected.append(BadObservation(source, "unknown_sensor", f"no sensor {row[0]!r} in the city"))
            rows = kept
        counts = Counter(exc.reason for exc in rejected)
        now = now_ms()
        result = self.store.append_observations(
            rows, counts=counts,
            assess=lambda readings, stored: assess_statuses(registry, self.thresholds, now, readings, stored))
        report = IngestReport(received=len(rows) + len(rejected), stored=result.stored, duplicates=result.duplicates,
                              late=result.late, rejected=dict(counts), events=len(result.events))
        if rejected:
            report.errors = [{"index": exc.index, "reason": exc.reason, "message": exc.message}
                             for exc in rejected[:MAX_REPORTED_ERRORS]]
            # one line per batch: a flood of bad readings must not flood the log
            log.warning("%s: rejected %d of %d observations (%s); first: %s", source, len(rejected),
                        report.received, ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), rejected[0])
        return report

    def pending_changes(self) -> list[StatusChange]:
        """The status changes that time alone has made (readings gone stale), without writing."""
        registry, now = self.registry(), now_ms()
        readings = {r.sensor_id: r for r in self.store.latest()}
        return assess_statuses(registry, self.thresholds, now, readings, self.store.statuses())

    def sweep(self) -> list[dict]:
        """Record the status changes time has made (sensors gone silent); returns the events."""
        with self._sweep_lock:
            if not self.pending_changes():  # read-only first: most sweeps find nothing to write
                return []
            registry, now = self.registry(), now_ms()
            return self.store.update_statuses(
                lambda readings, stored: assess_statuses(registry, self.thresholds, now, readings, stored))


def registry_from_frames(frames: Mapping[str, tuple[str, gpd.GeoDataFrame]], snap_m: float) -> SensorRegistry:
    """A registry from layers given as name -> (kind, frame)."""
    return SensorRegistry.build({n: f for n, (k, f) in frames.items() if k == "sensor"},
                                {n: f for n, (k, f) in frames.items() if k == "pipe"}, snap_m)


_BUCKET_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_bucket(text: str) -> int:
    """A bucket width such as "30s", "5m", "1h", "1d" or ISO 8601 "PT5M", in milliseconds."""
    import re

    value = text.strip()
    iso = re.fullmatch(r"P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?", value.upper())
    if iso and any(iso.groups()):
        d, h, m, s = (float(g) if g else 0.0 for g in iso.groups())
        ms = int(((d * 24 + h) * 60 + m) * 60_000 + s * 1000)
    else:
        match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ms|s|min|m|h|d)", value.lower())
        if not match:
            raise ValueError(f"bucket {text!r} is not a width like 30s, 5m, 1h, 1d or PT5M")
        ms = int(float(match.group(1)) * _BUCKET_UNITS[match.group(2)])
    if ms <= 0:
        raise ValueError(f"bucket {text!r} must be longer than 0")
    return ms


def latest_readings(store: Store, registry: SensorRegistry, statuses: Mapping[str, str]) -> list[dict]:
    """Every sensor's latest reading with what it measures, its pipe and its status (by sensor uid)."""
    from layers.sensors import format_time

    out = []
    for reading in store.latest():
        info = registry.sensors.get(reading.sensor_id)
        out.append({"sensor_id": reading.sensor_id, "uid": info.uid if info else None,
                    "property": info.property if info else None, "unit": info.unit if info else None,
                    "pipe_id": info.pipe if info else None, "time": format_time(reading.time_ms),
                    "value": reading.value, "quality": reading.quality,
                    "status": statuses.get(info.uid, "no_data") if info else None})
    return out
