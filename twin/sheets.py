"""The standard grid of large-scale topographic map sheets (1:500, 1:1000, 1:2000).

Square 50 cm sheets: 250 m, 500 m and 1 km on the ground, named by the south-west corner's
grid coordinates in km, northing (the surveyor's X) first, then easting (Y), as in
GB/T 20257.1: to 0.1 km for 1:1000 and 1:2000, to 0.01 km for 1:500.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import shapely
from pyproj import CRS

__all__ = ["SHEET_SIZE_M", "sheet_id", "sheet_grid", "sheet_ids_for"]

SHEET_SIZE_M = {500: 250.0, 1000: 500.0, 2000: 1000.0}
_DECIMALS = {500: 2, 1000: 1, 2000: 1}


def _size(scale: int) -> float:
    try:
        return SHEET_SIZE_M[int(scale)]
    except KeyError:
        raise ValueError(f"scale {scale} is not a large-scale sheet scale; use one of {sorted(SHEET_SIZE_M)}") from None


def sheet_id(x_sw: float, y_sw: float, scale: int) -> str:
    """The name of the sheet whose south-west corner is (x_sw, y_sw) in metres.

    Examples
    --------
    >>> sheet_id(512500.0, 4155000.0, 1000)
    '4155.0-512.5'
    >>> sheet_id(512250.0, 4155750.0, 500)
    '4155.75-512.25'
    """
    d = _DECIMALS[int(scale)]
    return f"{y_sw / 1000:.{d}f}-{x_sw / 1000:.{d}f}"


def sheet_grid(bounds: tuple[float, float, float, float], scale: int, crs: CRS | str | None = None) -> gpd.GeoDataFrame:
    """Every standard sheet of `scale` that touches `bounds` (minx, miny, maxx, maxy in metres).

    Examples
    --------
    >>> len(sheet_grid((0, 0, 1000, 1000), 1000))
    4
    """
    size = _size(scale)
    minx, miny, maxx, maxy = bounds
    xs = np.arange(np.floor(minx / size) * size, maxx, size)
    ys = np.arange(np.floor(miny / size) * size, maxy, size)
    gx, gy = np.meshgrid(xs, ys)
    gx, gy = gx.ravel(), gy.ravel()
    boxes = shapely.box(gx, gy, gx + size, gy + size)
    ids = [sheet_id(x, y, scale) for x, y in zip(gx, gy)]
    return gpd.GeoDataFrame({"sheet_id": ids, "scale": np.full(len(ids), int(scale))}, geometry=boxes, crs=crs)


def sheet_ids_for(polygons: np.ndarray, scale: int) -> np.ndarray:
    """The standard sheet name of each surveyed sheet polygon, from its south-west corner.

    The corner is snapped to the sheet grid, so a sheet digitised a few metres off still
    matches its standard name.
    """
    size = _size(scale)
    b = shapely.bounds(polygons)
    x = np.round(b[:, 0] / size) * size
    y = np.round(b[:, 1] / size) * size
    return np.array([sheet_id(xi, yi, scale) for xi, yi in zip(x, y)], dtype=object)
