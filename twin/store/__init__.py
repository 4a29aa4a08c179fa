"""The city store: a catalogue of layers plus their features and rasters, behind one protocol.

`GeoPackageStore` (one `city.gpkg`, rasters as COGs beside it) is the embedded default; a
PostGIS store implements the same `Store` protocol, so callers never see which one holds
the city.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

import geopandas as gpd

__all__ = ["Bounds", "LayerRecord", "Store", "open_store"]


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


def open_store(root: Path, url: str) -> Store:
    """Open the store a city's config names (``geopackage:city.gpkg`` by default)."""
    scheme, _, rest = url.partition(":")
    if scheme == "geopackage":
        from twin.store.geopackage import GeoPackageStore

        return GeoPackageStore(root / (rest or "city.gpkg"))
    raise ValueError(f"unknown store {url!r}; this version knows geopackage:<file>")
