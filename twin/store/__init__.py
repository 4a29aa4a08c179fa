"""The city store: a catalogue of layers plus their features and rasters, behind one protocol.

`GeoPackageStore` (one `city.gpkg`, rasters as COGs beside it) is the embedded default;
`PostgisStore` (one schema of a PostgreSQL database, rasters still files in the city folder)
implements the same `Store` protocol, so callers never see which one holds the city.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import geopandas as gpd
import numpy as np
import shapely

from layers.kinds import GEOMETRY_TYPE_NAMES
from layers.sensors import ObservationRow

__all__ = ["Bounds", "LayerRecord", "Store", "open_store", "ObservationRow", "Reading", "StatusChange",
           "Assess", "AppendResult", "HistoryBucket", "CATALOGUE_COLUMNS", "event_from_row", "uniform_geometries",
           "table_name", "version_tables", "free_version"]


# The catalogue's columns (a LayerRecord's fields) with their SQLite declarations; the PostGIS
# migration declares the same columns.
CATALOGUE_COLUMNS = {
    "name": "TEXT PRIMARY KEY", "kind": "TEXT NOT NULL", "crs": "TEXT NOT NULL", "source": "TEXT",
    "source_sha256": "TEXT", "feature_count": "INTEGER NOT NULL", "bounds": "TEXT", "bounds_wgs84": "TEXT",
    "geometry_type": "TEXT", "updated": "TEXT", "version": "INTEGER NOT NULL", "table": "TEXT", "notes": "TEXT",
}


@dataclass
class LayerRecord:
    """One row of the layer catalogue."""

    name: str
    kind: str
    crs: str
    source: str | None = None
    source_sha256: str | None = None
    feature_count: int = 0
    bounds: tuple[float, float, float, float] | None = None
    bounds_wgs84: tuple[float, float, float, float] | None = None
    geometry_type: str | None = None
    updated: str | None = None
    version: int = 0
    table: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """The record as plain JSON-ready data."""
        return asdict(self)

    @classmethod
    def from_row(cls, row: dict) -> "LayerRecord":
        """Build a record from a catalogue row (bounds and notes stored as JSON text)."""
        data = dict(row)
        for key in ("bounds", "bounds_wgs84"):
            data[key] = tuple(json.loads(data[key])) if data.get(key) else None
        data["notes"] = json.loads(data["notes"]) if data.get("notes") else []
        return cls(**data)


Progress = Callable[[int], None]
Bounds = tuple[float, float, float, float]


class Reading(NamedTuple):
    """A sensor's latest observation."""

    sensor_id: str
    time_ms: int
    value: float
    quality: str | None = None


class StatusChange(NamedTuple):
    """A feature's new status and the reading behind it (`sensor`, `value` None when none)."""

    layer: str
    uid: str
    status: str
    sensor: str | None = None
    value: float | None = None


class HistoryBucket(NamedTuple):
    """Observations of one sensor within one time bucket (a single observation when not bucketed)."""

    time_ms: int
    min: float
    mean: float
    max: float
    count: int


# assess(readings, statuses) -> changes: the domain's status rule, run by the store inside the
# transaction that wrote the readings, so that writers in several processes never race on a
# status. `readings` are the latest readings to judge (sensor id -> Reading); `statuses` the
# stored status of every feature that has one, by (layer, uid).
Assess = Callable[[Mapping[str, Reading], Mapping[tuple[str, str], str]], list[StatusChange]]


@dataclass
class AppendResult:
    """What one batch of observations did to the store."""

    stored: int = 0
    duplicates: int = 0  # (sensor, time) already held: ignored, the first value stands
    late: int = 0  # older than the sensor's latest reading: kept as history, status untouched
    events: list[dict] = field(default_factory=list)


def advance_latest(rows: Sequence[ObservationRow], known: Mapping[str, int],
                   result: AppendResult) -> dict[str, Reading]:
    """The readings that become their sensor's latest, given the times `known` as latest before
    this batch; counts in `result.late` the rows older than that. Shared by the stores, so
    "latest" and "late" mean the same in each."""
    newest: dict[str, ObservationRow] = {}
    for row in rows:
        seen = known.get(row[0])
        if seen is not None and row[1] < seen:
            result.late += 1
        best = newest.get(row[0])
        if best is None or row[1] > best[1]:  # the first of equal times is the one stored
            newest[row[0]] = row
    return {sid: Reading(*row) for sid, row in newest.items() if known.get(sid) is None or row[1] > known[sid]}


def event_from_row(row: tuple) -> dict:
    """The status event (as `twin.events` shapes it) of a stored events row:
    (id, time, layer, uid, status, previous, sensor, value)."""
    id_, time, layer, uid, status, previous, sensor, value = row
    return {"id": id_, "type": "status", "time": time, "layer": layer, "uid": uid, "status": status,
            "previous": previous, "sensor": sensor, "value": value}


MAX_TABLE_NAME_BYTES = 63  # PostgreSQL's limit; GeoPackage has none, but one rule serves both stores


def _plain(layer: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", layer)


def table_name(layer: str, version: int) -> str:
    """The table of a layer's version: `<layer>_v<version>`, within PostgreSQL's 63-byte names; a
    layer name with other characters than letters, digits and _ (or a long one) gets a hash of it,
    so `a-b` and `a_b` never share a table. A raster's file is this name with a suffix.

    Examples
    --------
    >>> table_name("pipe", 3)
    'pipe_v3'
    >>> table_name("bim-elements", 1)
    'bim_elements_ea168c40_v1'
    >>> [table_name(layer, 1) for layer in ("a_b", "a-b", "a b")]
    ['a_b_v1', 'a_b_34fafddd_v1', 'a_b_7dbde935_v1']
    >>> len(table_name("x" * 80, 12))
    63
    """
    name = f"{_plain(layer)}_v{version}"
    if len(name) <= MAX_TABLE_NAME_BYTES and re.fullmatch(r"[0-9A-Za-z_]+", layer):
        return name
    suffix = f"_{hashlib.sha1(layer.encode()).hexdigest()[:8]}_v{version}"
    return _plain(layer)[:MAX_TABLE_NAME_BYTES - len(suffix)] + suffix


def version_tables(layer: str, tables: Iterable[str]) -> list[str]:
    """The tables among `tables` named as versions of `layer`: by `table_name`, or as twins before it
    named them (`<layer, other characters as _>_v<version>`, a name `a-b` and `a_b` shared).

    A store drops those no catalogue row points at: leftovers of crashed ingests.

    Examples
    --------
    >>> version_tables("a-b", ["a_b_34fafddd_v2", "a_b_v1", "a_b_7dbde935_v1", "a_b_v", "a_b_v01", "pipe_v1"])
    ['a_b_34fafddd_v2', 'a_b_v1']
    """
    found = []
    for table in tables:
        match = re.fullmatch(r".*_v(\d+)", table)
        if match and table in (table_name(layer, int(match[1])), f"{_plain(layer)}_v{int(match[1])}"):
            found.append(table)
    return found


def free_version(layer: str, version: int, held: Collection[str], suffix: str = "") -> int:
    """`version`, or the first one above it whose table (`table_name` + `suffix`) no catalogue row
    holds: in a city made by an older twin, layer `a-b` may hold `a_b_v1`, which is `a_b`'s name for
    its version 1 now.

    Examples
    --------
    >>> free_version("a_b", 1, {"a_b_v1", "a_b_v3"})
    2
    >>> free_version("a_b", 1, {"a_b_v1.tif"}, suffix=".tif")
    2
    """
    while f"{table_name(layer, version)}{suffix}" in held:
        version += 1
    return version


_SINGLE_TO_MULTI = {0: (4, shapely.multipoints), 1: (5, shapely.multilinestrings), 3: (6, shapely.multipolygons)}


def uniform_geometries(frame: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, str]:
    """Promote singles to multis where a layer mixes them, and name the layer's geometry type."""
    geoms = np.asarray(frame.geometry.values, dtype=object)
    ids = set(np.unique(shapely.get_type_id(geoms)).tolist())
    for single, (multi, make) in _SINGLE_TO_MULTI.items():
        if single in ids and multi in ids:
            sel = shapely.get_type_id(geoms) == single
            geoms = geoms.copy()
            geoms[sel] = make(geoms[sel], indices=np.arange(int(sel.sum())))
            ids.discard(single)
            frame = frame.set_geometry(gpd.GeoSeries(geoms, index=frame.index, crs=frame.crs))
    if len(ids) != 1 or next(iter(ids)) not in (0, 1, 3, 4, 5, 6):
        return frame, "Unknown"
    has_z = shapely.has_z(geoms)
    name = GEOMETRY_TYPE_NAMES[next(iter(ids))]
    if has_z.all():
        return frame, f"{name} Z"
    return frame, name if not has_z.any() else "Unknown"


@runtime_checkable
class Store(Protocol):
    """What the model needs from a store; every write replaces a layer atomically."""

    url: str

    def layers(self) -> list[LayerRecord]:
        """All layers in the catalogue, by name."""
        ...

    def layer(self, name: str) -> LayerRecord:
        """One catalogue record; raises UnknownLayer."""
        ...

    def read_features(self, name: str, *, bbox: tuple[float, float, float, float] | None = None,
                      columns: list[str] | None = None) -> gpd.GeoDataFrame:
        """A vector layer's features (in the city CRS), optionally within a bbox of that CRS."""
        ...

    def replace_features(self, record: LayerRecord, frame: gpd.GeoDataFrame,
                         progress: Progress | None = None, changed: list[Bounds] | None = None) -> LayerRecord:
        """Write `frame` as the new content of layer `record.name`; the old one stays until it succeeds.

        The new version is one above the layer's last, or `record.version` when that is higher
        (a layer copied from another store keeps its version); a number whose table name another
        layer holds, in a city made by an older twin, is skipped (`free_version`).

        `changed` lists the boxes (city CRS) where the new version differs from the old
        one, None meaning anywhere; tile caches read it back through `changes`.
        """
        ...

    def changes(self, name: str, since_version: int) -> list[tuple[int, list[Bounds] | None]]:
        """What changed in a layer after `since_version`: (version, boxes or None for anywhere)."""
        ...

    def replace_raster(self, record: LayerRecord, staged: Path) -> LayerRecord:
        """Move a staged raster file in as layer `record.name`, replacing the previous one (changed anywhere)."""
        ...

    def raster_path(self, name: str) -> Path:
        """The file of a raster layer."""
        ...

    def delete_layer(self, name: str) -> None:
        """Remove a layer and its data."""
        ...

    # observations, statuses and status events ---------------------------------------------

    def append_observations(self, rows: Sequence[ObservationRow], *, assess: Assess | None = None,
                            counts: Mapping[str, int] | None = None) -> AppendResult:
        """Store a batch in one transaction: duplicates of (sensor, time) ignored, latest readings
        moved forward, `assess` run on the moved ones and its changes recorded as events, and
        `counts` (outcome -> n) added to the ingest counters."""
        ...

    def update_statuses(self, assess: Assess) -> list[dict]:
        """Run `assess` over every latest reading in one transaction; record its changes as events."""
        ...

    def latest(self, sensor_ids: Sequence[str] | None = None) -> list[Reading]:
        """The latest reading of each sensor (of `sensor_ids`, or all)."""
        ...

    def history(self, sensor_id: str, start_ms: int | None = None, end_ms: int | None = None,
                bucket_ms: int | None = None, limit: int = 10_000) -> list[HistoryBucket]:
        """A sensor's observations in [start, end), oldest first, optionally min/mean/max per bucket."""
        ...

    def reporting_sensors(self, start_ms: int, end_ms: int) -> set[str]:
        """Ids of the sensors with at least one observation in (start, end]."""
        ...

    def statuses(self) -> dict[tuple[str, str], str]:
        """The stored status of every feature that has one, by (layer, uid)."""
        ...

    def events_since(self, after_id: int, limit: int = 1000) -> list[dict]:
        """Status events with an id above `after_id`, oldest first."""
        ...

    def last_event_id(self) -> int:
        """The id of the newest status event (0 when none)."""
        ...

    def ingest_counts(self) -> dict[str, int]:
        """How many observations each ingest outcome has had, over the city's life."""
        ...

    # moving a city between stores (`twin export`) ------------------------------------------

    def live_counts(self) -> dict[str, int]:
        """Rows in each live table: observations, latest, status, events, counts."""
        ...

    def read_live(self, name: str, batch: int = 50_000) -> Iterator[list[tuple]]:
        """All rows of one live table (a key of `live_counts`), in key order, `batch` at a time."""
        ...

    def write_live(self, name: str, rows: Sequence[tuple]) -> None:
        """Add rows to one live table as they are (ids, times and counts kept; no status rules run)."""
        ...


def open_store(root: Path, url: str) -> Store:
    """Open the store a city's config names: ``geopackage:city.gpkg`` (the default) or a
    ``postgresql://user@host:port/db?schema=NAME`` URL (schema: by default the city folder's name)."""
    scheme, _, rest = url.partition(":")
    if scheme == "geopackage":
        from twin.store.geopackage import GeoPackageStore

        return GeoPackageStore(root / (rest or "city.gpkg"))
    if scheme in ("postgresql", "postgres"):
        from twin.store.postgis import PostgisStore

        return PostgisStore(url, root)
    from twin.store.postgis import redact_url

    raise ValueError(f"unknown store {redact_url(url)!r}; this version knows geopackage:<file> and "
                     f"postgresql://user@host:port/database[?schema=NAME]")
