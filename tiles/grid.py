"""The WebMercatorQuad tile grid (morecantile) and tile boxes in any CRS."""

from __future__ import annotations

from functools import lru_cache

import morecantile
from pyproj import CRS

from twin.crs import WEB_MERCATOR, transformer

__all__ = ["TMS", "MAX_ZOOM", "TileOutOfRange", "check_tile", "mercator_bounds", "tile_bounds_in"]

TMS = morecantile.tms.get("WebMercatorQuad")
MAX_ZOOM = 24


class TileOutOfRange(ValueError):
    """z, x or y outside the WebMercatorQuad grid."""


def check_tile(z: int, x: int, y: int) -> None:
    """Raise TileOutOfRange unless (z, x, y) is a tile of the grid."""
    if not 0 <= z <= MAX_ZOOM:
        raise TileOutOfRange(f"zoom {z} is outside 0..{MAX_ZOOM}")
    n = 1 << z
    if not (0 <= x < n and 0 <= y < n):
        raise TileOutOfRange(f"tile z={z} x={x} y={y}: x and y must be in 0..{n - 1} at zoom {z}")


@lru_cache(maxsize=65536)
def mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """A tile's box in Web Mercator metres."""
    check_tile(z, x, y)
    b = TMS.xy_bounds(morecantile.Tile(x, y, z))
    return (b.left, b.bottom, b.right, b.top)


def tile_bounds_in(crs: CRS, z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """A tile's box in another CRS (densified, so it encloses the tile)."""
    return tuple(transformer(WEB_MERCATOR, crs).transform_bounds(*mercator_bounds(z, x, y), densify_pts=11))
