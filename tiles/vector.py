"""Mapbox Vector Tiles 2.1 from layer snapshots: clipped with a buffer, simplified per zoom.

Each layer kind has a zoom range and the attributes a map needs (a building's height,
ground z and BIM flag; a pipe's utility, diameter, depth and status).
"""

from __future__ import annotations


import numpy as np
import shapely

from tiles.grid import mercator_bounds
from tiles.mvt import AttributeTable, attribute_table, encode_layer, tile_message
from twin.snapshots import LayerSnapshot

__all__ = ["EXTENT", "BUFFER", "ZOOMS", "TILE_PROPERTIES", "zoom_range", "layer_message", "encode_tile"]

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


def layer_message(snapshot: LayerSnapshot, z: int, x: int, y: int) -> bytes | None:
    """A layer's features in one tile as an MVT layer: clipped to the tile and its buffer,
    simplified to a tile unit, quantised; None when nothing of the layer is in the tile."""
    minzoom, maxzoom = zoom_range(snapshot.record.kind)
    if not minzoom <= z <= max(maxzoom, 22):
        return None
    _, tree = snapshot.mercator()
    west, south, east, north = mercator_bounds(z, x, y)
    unit = (east - west) / EXTENT
    # a tile unit is the finest detail a tile can show; beyond z16 the survey's own detail
    geoms = snapshot.mercator_simplified(unit) if z < 16 else snapshot.mercator()[0]
    pad = unit * BUFFER
    box = (west - pad, south - pad, east + pad, north + pad)
    hits = np.sort(tree.query(shapely.box(*box), predicate="intersects"))
    if not len(hits):
        return None
    chosen = geoms[hits]
    types = shapely.get_type_id(chosen)
    lines_or_areas = (types != 0) & (types != 4)
    if lines_or_areas.any():
        chosen = chosen.copy()
        chosen[lines_or_areas] = shapely.clip_by_rect(chosen[lines_or_areas], *box)
    # into tile units, y down, on the integer grid; the encoder drops the repeated points
    # and the rings and lines that collapse there (slivers narrower than a tile unit)
    chosen = shapely.transform(chosen, lambda c: np.round((c - (west, north)) / (unit, -unit)))
    polygonal = np.isin(shapely.get_type_id(chosen), (3, 6))
    if polygonal.any():
        # exterior rings with positive area in tile coordinates, as MVT 2.1 wants
        chosen[polygonal] = shapely.orient_polygons(chosen[polygonal], exterior_cw=False)
    keep = ~shapely.is_empty(chosen)
    hits, chosen = hits[keep], chosen[keep]
    if not len(hits):
        return None
    return encode_layer(snapshot.record.name, chosen, hits.astype(np.uint64) + 1, _attributes(snapshot), hits,
                        extent=EXTENT) or None


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
    """One MVT with a layer per snapshot that has features in the tile."""
    return tile_message([m for m in (layer_message(s, z, x, y) for s in snapshots) if m is not None])
