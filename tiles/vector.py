"""Mapbox Vector Tiles 2.1 from layer snapshots: clipped with a buffer, simplified per zoom.

Each layer kind has a zoom range and the attributes a map needs (a building's height,
ground z and BIM flag; a pipe's utility, diameter, depth and status). The layers of a
tileset are stacked once per set of versions (`VectorLayers`), so a tile is one bounding-box
test, one clip and one encoder pass over all of them, not a round of calls per layer.
"""

from __future__ import annotations

import threading

import numpy as np
import shapely

from tiles.grid import TMS, mercator_bounds
from tiles.mvt import AttributeTable, LayerStack, attribute_table, tile_message
from twin.snapshots import LayerSnapshot

__all__ = ["EXTENT", "BUFFER", "ZOOMS", "TILE_PROPERTIES", "zoom_range", "VectorLayers", "encode_tile"]

EXTENT = 4096
BUFFER = 64  # in tile units: what a line's width or a label needs beyond the edge

ZOOMS: dict[str, tuple[int, int]] = {
    "building": (13, 22), "bim": (12, 22), "facility": (12, 22), "pipe": (12, 22), "manhole": (15, 22),
    "sensor": (14, 22), "lamp": (15, 22), "camera": (15, 22), "base_station": (12, 22),
    "weather_station": (10, 22), "community": (12, 22), "school": (12, 22), "map_sheet": (10, 22),
    "planning_area": (6, 22), "district": (6, 22), "urban_area": (6, 22), "key_area": (10, 22),
    "green": (11, 22), "bim_element": (17, 22),
}
_COMMON = ["uid", "name"]
TILE_PROPERTIES: dict[str, list[str]] = {
    "building": _COMMON + ["height_m", "floors", "ground_z", "represented_by_bim", "bim_uid"],
    "bim": _COMMON + ["height_m", "floors", "ground_z", "base_z", "top_z", "ifc_class", "unified_id", "model"],
    "facility": _COMMON + ["ifc_class", "base_z", "top_z", "model"],
    "pipe": ["uid", "utility", "material", "diameter_mm", "depth_m", "install_year", "status", "bim_model"],
    "sensor": ["uid", "sensor_id", "property", "unit", "pipe_id", "ground_z", "status", "value"],
    "manhole": _COMMON + ["utility", "depth_m", "ground_z"],
    "lamp": _COMMON + ["smart", "ground_z"],
    "camera": _COMMON + ["range_m", "ground_z"],
    "base_station": _COMMON + ["range_m", "ground_z"],
    "weather_station": _COMMON + ["ground_z"],
    "community": _COMMON + ["smart"],
    "school": _COMMON + ["smart"],
    "map_sheet": ["uid", "sheet_id", "scale", "survey_date"],
    "bim_element": ["uid", "global_id", "ifc_class", "name", "storey", "building"],
}


def zoom_range(kind: str) -> tuple[int, int]:
    """The zooms at which a kind of layer is in the tiles."""
    return ZOOMS.get(kind, (10, 22))


_ALL_FOUR = np.frombuffer(bytes([1, 1, 1, 1]), dtype=np.uint32)[0]


class _Zoom:
    """What a zoom's tiles are cut from: the stacked geometries (simplified below z16) and their boxes.

    The boxes of layers not shown at this zoom are NaN, so no tile selects their features.
    """

    def __init__(self, geoms: np.ndarray, bounds: np.ndarray) -> None:
        self.geoms = geoms
        self.west, self.south, self.east, self.north = (np.ascontiguousarray(b) for b in bounds.T)
        # west, south, -east, -north: a box is inside another when each of these is >= the other's
        self.signed = np.ascontiguousarray(bounds * (1, 1, -1, -1))


class VectorLayers:
    """The layers of a tileset, stacked for tiles: one version of each, encoded attributes,
    feature boxes and per-zoom geometries, made once and shared by every tile."""

    def __init__(self, snapshots: list[LayerSnapshot]) -> None:
        self.snapshots = list(snapshots)
        self.versions = {}
        for s in self.snapshots:
            self.versions[s.record.name] = s.version
            if hasattr(s, "status_version"):  # live statuses are a version of their own
                self.versions[f"{s.record.name}@status"] = s.status_version
        self.stack = LayerStack([s.record.name for s in self.snapshots], [_attributes(s) for s in self.snapshots])
        tile_geometry = [_tile_geometry(s) for s in self.snapshots]
        self._bounds = np.concatenate([b for b, _ in tile_geometry]) if tile_geometry else np.zeros((0, 4))
        self._clipped = np.concatenate([c for _, c in tile_geometry]) if tile_geometry else np.zeros(0, dtype=bool)
        self._zooms: dict[int, _Zoom] = {}
        self._lock = threading.Lock()

    def _zoom(self, z: int) -> _Zoom:
        """The stacked geometries and boxes of zoom `z`, made on its first tile."""
        cached = self._zooms.get(z)
        if cached is not None:
            return cached
        with self._lock:
            if z not in self._zooms:
                # a tile unit is the finest detail a tile can show; beyond z16 the survey's own detail
                unit = TMS.matrix(z).cellSize * TMS.matrix(z).tileWidth / EXTENT
                geoms = [s.mercator_simplified(unit) if z < 16 else s.mercator()[0] for s in self.snapshots]
                bounds = self._bounds.copy()
                for snapshot, first, end in zip(self.snapshots, self.stack.row_offsets, self.stack.row_offsets[1:]):
                    minzoom, maxzoom = zoom_range(snapshot.record.kind)
                    if not minzoom <= z <= max(maxzoom, 22):
                        bounds[first:end] = np.nan
                self._zooms[z] = _Zoom(np.concatenate(geoms) if geoms else np.zeros(0, dtype=object), bounds)
            return self._zooms[z]

    def tile(self, z: int, x: int, y: int) -> bytes:
        """One MVT with a layer for each layer that has features in the tile (empty bytes when none has).

        Features are clipped to the tile and its buffer, simplified to a tile unit below z16,
        and snapped to the tile grid by the encoder, which drops what collapses there
        (slivers narrower than a tile unit).
        """
        west, south, east, north = mercator_bounds(z, x, y)
        unit = (east - west) / EXTENT
        pad = unit * BUFFER
        box = (west - pad, south - pad, east + pad, north + pad)
        zoom = self._zoom(z)
        # a box test in numpy picks the candidates; the clip drops those that only share a box
        rows = np.flatnonzero((zoom.west <= box[2]) & (zoom.east >= box[0]) & (zoom.south <= box[3])
                              & (zoom.north >= box[1]))
        if not len(rows):
            return b""
        geoms = zoom.geoms[rows]
        # lines and areas wholly inside the box are left as they are (clipping would copy them);
        # the four comparisons of a feature are four bytes, read as one 32-bit word
        inside = (zoom.signed[rows] >= (box[0], box[1], -box[2], -box[3])).view(np.uint32)[:, 0] == _ALL_FOUR
        crossing = (self._clipped[rows] & ~inside).nonzero()[0]
        if len(crossing):
            geoms[crossing] = shapely.clip_by_rect(geoms[crossing], *box)
        return tile_message(self.stack, rows, geoms, west, north, unit, extent=EXTENT)


def _tile_geometry(snapshot: LayerSnapshot) -> tuple[np.ndarray, np.ndarray]:
    """The Web Mercator box of each feature (n x 4), and which features are clipped to a tile
    (lines and areas; points are in a tile or not), made once per snapshot."""
    cached = snapshot.derived.get("mvt_geometry")
    if cached is None:
        geoms, _ = snapshot.mercator()
        types = shapely.get_type_id(geoms)
        cached = (shapely.bounds(geoms), (types != 0) & (types != 4))
        snapshot.derived["mvt_geometry"] = cached
    return cached


def _attributes(snapshot: LayerSnapshot) -> AttributeTable:
    """The layer's tile attributes, encoded once per snapshot."""
    table = snapshot.derived.get("mvt_attributes")
    if table is None:
        columns = [c for c in TILE_PROPERTIES.get(snapshot.record.kind, _COMMON) if c in snapshot.frame.columns]
        frame = snapshot.frame
        table = attribute_table({c: frame[c].to_numpy(dtype=object, na_value=None) for c in columns}, len(frame))
        snapshot.derived["mvt_attributes"] = table
    return table


def encode_tile(snapshots: list[LayerSnapshot], z: int, x: int, y: int) -> bytes:
    """One MVT with a layer per snapshot that has features in the tile (stacks the layers for this tile only;
    a server keeps a VectorLayers)."""
    return VectorLayers(snapshots).tile(z, x, y)
