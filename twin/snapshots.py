"""The read side of a city: each layer held in memory per version, with spatial indexes.

Servers ask a `CityView` for a layer; it re-reads the catalogue at most every `ttl`
seconds and a layer's features only when its version changed, so a request costs a
dictionary look-up and an R-tree query, and an ingest by any process shows up within
`ttl`. A server that hears the store's change notices (twin.notify) calls `expire` on
each, and trusts its copy for `notified_ttl` while notices flow.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import geopandas as gpd
import numpy as np
import shapely

from twin.crs import WEB_MERCATOR, transformer
from twin.errors import UnknownLayer
from twin.store import LayerRecord
from twin.workspace import City

if TYPE_CHECKING:
    from twin.live import LiveStatus
    from twin.sensors import SensorRegistry

__all__ = ["LayerSnapshot", "StatusSnapshot", "CityView"]

Bounds = tuple[float, float, float, float]
# Above this many changed features a status change counts as changed everywhere.
STATUS_BOXES_LIMIT = 256


@dataclass
class LayerSnapshot:
    """One version of a vector layer in memory: features in the city CRS and their R-tree."""

    record: LayerRecord
    frame: gpd.GeoDataFrame
    tree: shapely.STRtree
    _mercator: np.ndarray | None = field(default=None, repr=False)
    _mercator_tree: shapely.STRtree | None = field(default=None, repr=False)
    _simplified: dict[float, np.ndarray] = field(default_factory=dict, repr=False)
    derived: dict = field(default_factory=dict, repr=False)  # what consumers compute once per version
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def load(cls, city: City, record: LayerRecord) -> "LayerSnapshot":
        """Read a layer from the store and index it."""
        frame = city.features(record.name).reset_index(drop=True)
        geoms = shapely.force_2d(np.asarray(frame.geometry.values, dtype=object))
        return cls(record, frame, shapely.STRtree(geoms))

    @property
    def version(self) -> int:
        """The layer version this snapshot holds."""
        return self.record.version

    def mercator(self) -> tuple[np.ndarray, shapely.STRtree]:
        """2D geometries in Web Mercator and their R-tree, made on first use (for tiles)."""
        with self._lock:
            if self._mercator is None:
                t = transformer(self.frame.crs, WEB_MERCATOR)
                geoms = shapely.force_2d(np.asarray(self.frame.geometry.values, dtype=object))
                self._mercator = shapely.transform(geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
                self._mercator_tree = shapely.STRtree(self._mercator)
            return self._mercator, self._mercator_tree

    def mercator_simplified(self, tolerance: float) -> np.ndarray:
        """Web Mercator geometries simplified to `tolerance` metres, made once per tolerance (zoom)."""
        cached = self._simplified.get(tolerance)
        if cached is None:
            geoms, _ = self.mercator()
            types = shapely.get_type_id(geoms)
            cached = geoms.copy()
            lines_or_areas = (types != 0) & (types != 4)
            cached[lines_or_areas] = shapely.simplify(geoms[lines_or_areas], tolerance, preserve_topology=True)
            self._simplified[tolerance] = cached
        return cached


@dataclass
class StatusSnapshot(LayerSnapshot):
    """A layer snapshot with the live `status` of its features (and a sensor's `value`) as columns.

    It shares the base snapshot's geometries, R-trees and simplified copies; only the
    attribute columns (and what consumers derive from them) are new per status version.
    """

    base: LayerSnapshot | None = None
    status_version: int = 0

    def mercator(self) -> tuple[np.ndarray, shapely.STRtree]:
        """The base snapshot's Web Mercator geometries and R-tree."""
        return self.base.mercator()

    def mercator_simplified(self, tolerance: float) -> np.ndarray:
        """The base snapshot's simplified Web Mercator geometries."""
        return self.base.mercator_simplified(tolerance)


class CityView:
    """Cached, versioned read access to a city's layers, safe to share between threads."""

    def __init__(self, root: str | Path, ttl: float = 0.5, notified_ttl: float = 30.0) -> None:
        self.city = City.open(root)
        self.ttl = ttl
        self.notified_ttl = notified_ttl
        # set by a server that hears change notices: True while they flow
        self.notified: Callable[[], bool] = lambda: False
        self._records: dict[str, LayerRecord] = {}
        self._read_at = -float("inf")
        self._generations = itertools.count(1)
        self._generation = 0  # grows on every `expire`
        self._read_generation = -1  # the generation the held catalogue was read in
        self._snapshots: dict[str, LayerSnapshot] = {}
        self._overlays: dict[str, StatusSnapshot] = {}
        self._lock = threading.Lock()
        self._overlay_lock = threading.Lock()  # apart: building an overlay loads layers (for the registry)
        # set by a server that follows live statuses: pipes and sensors then carry them
        self.live: LiveStatus | None = None
        self.registry: Callable[[], SensorRegistry] | None = None

    def records(self) -> dict[str, LayerRecord]:
        """The catalogue by layer name: at most `ttl` seconds old, or as of the last change notice."""
        if self._stale():
            with self._lock:
                if self._stale():
                    # an `expire` during the read leaves the generation ahead: read again next time
                    generation = self._generation
                    self._records = {r.name: r for r in self.city.layers()}
                    self._read_at = time.monotonic()
                    self._read_generation = generation
        return self._records

    def _stale(self) -> bool:
        if self._read_generation != self._generation:
            return True
        ttl = self.notified_ttl if self.notified() else self.ttl
        return time.monotonic() - self._read_at > ttl

    def expire(self) -> None:
        """Re-read the catalogue on the next request (a change notice came): safe from any thread."""
        self._generation = next(self._generations)

    def record(self, name: str) -> LayerRecord:
        """One layer's catalogue record; raises UnknownLayer."""
        try:
            return self.records()[name]
        except KeyError:
            raise UnknownLayer(f"no layer {name!r}; layers: {sorted(self.records())}") from None

    def vector_layers(self) -> list[LayerRecord]:
        """The layers that hold features (not rasters)."""
        return [r for r in self.records().values() if r.kind != "dem"]

    def snapshot(self, name: str) -> LayerSnapshot:
        """The current version of a vector layer, in memory, with live statuses where followed."""
        base = self.base_snapshot(name)
        if self.live is None or base.record.kind not in ("pipe", "sensor"):
            return base
        version = self.live.version(name)
        current = self._overlays.get(name)
        if current is not None and current.base is base and current.status_version == version:
            return current
        with self._overlay_lock:
            current = self._overlays.get(name)
            if current is None or current.base is not base or current.status_version != version:
                current = self._overlay(base, version)
                self._overlays[name] = current
        return current

    def _overlay(self, base: LayerSnapshot, version: int) -> StatusSnapshot:
        statuses, values = self.live.statuses(base.record.name)
        uids = base.frame["uid"].astype(str)
        status = uids.map(statuses)
        registry = self.registry() if self.registry is not None else None
        if registry is not None:
            # a watched feature that has never reported has no data; an unwatched one has no status
            watched = ({uid for (_, uid) in registry.pipe_sensors} if base.record.kind == "pipe"
                       else {info.uid for info in registry.sensors.values()})
            status = status.where(status.notna() | ~uids.isin(watched), "no_data")
        frame = base.frame.assign(status=status.astype(object).where(status.notna(), None))
        if base.record.kind == "sensor":
            frame["value"] = uids.map(values).astype(object).where(uids.map(values).notna(), None)
        return StatusSnapshot(base.record, frame, base.tree, base=base, status_version=version)

    def versions(self, name: str) -> dict[str, int]:
        """What a tile of layer `name` depends on: its version, and its status version if live."""
        record = self.record(name)
        if self.live is not None and record.kind in ("pipe", "sensor"):
            return {name: record.version, f"{name}@status": self.live.version(name)}
        return {name: record.version}

    def status_changes(self, name: str, since: int) -> list[tuple[int, list[Bounds] | None]]:
        """Where the statuses of layer `name` changed after status version `since` (city CRS boxes)."""
        if self.live is None:
            return [(since + 1, None)]
        version = self.live.version(name)
        if version <= since:
            return []
        uids = self.live.changed_since(name, since)
        if uids is None:
            return [(version, None)]
        base = self.base_snapshot(name)
        bounds = base.derived.get("uid_bounds")
        if bounds is None:
            bounds = base.frame.set_index(base.frame["uid"].astype(str)).bounds
            base.derived["uid_bounds"] = bounds
        boxes = bounds.loc[bounds.index.intersection(uids)].to_numpy()
        if len(boxes) > STATUS_BOXES_LIMIT:
            boxes = np.array([[boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]])
        return [(version, [tuple(float(v) for v in b) for b in boxes])]

    def base_snapshot(self, name: str) -> LayerSnapshot:
        """The current version of a vector layer as stored, in memory."""
        record = self.record(name)
        if record.kind == "dem":
            raise UnknownLayer(f"layer {name!r} is a raster, not a collection of features")
        current = self._snapshots.get(name)
        if current is not None and current.version == record.version:
            return current
        with self._lock:
            current = self._snapshots.get(name)
            if current is None or current.version != record.version:
                current = LayerSnapshot.load(self.city, record)
                self._snapshots[name] = current
        return current

    def dem_path(self) -> Path | None:
        """The COG of the city's DEM (the layer named 'dem', else the newest dem layer)."""
        dems = [r for r in self.records().values() if r.kind == "dem"]
        if not dems:
            return None
        chosen = next((r for r in dems if r.name == "dem"), max(dems, key=lambda r: r.updated or ""))
        return self.city.root / chosen.table
