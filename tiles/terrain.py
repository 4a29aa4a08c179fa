"""Terrain tiles from the DEM COG (rio-tiler): Terrarium-encoded elevation and a hillshade.

Terrarium packs an elevation h into RGB as ``h + 32768 = R * 256 + G + B / 256``, which
is what deck.gl's TerrainLayer decodes with
``elevationDecoder: {rScaler: 256, gScaler: 1, bScaler: 1/256, offset: -32768}``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from tiles.grid import check_tile, mercator_bounds

__all__ = ["TERRARIUM_DECODER", "NoTerrain", "elevation_tile", "terrarium_png", "hillshade_png", "decode_terrarium"]

TERRARIUM_DECODER = {"rScaler": 256, "gScaler": 1, "bScaler": 1 / 256, "offset": -32768}
TILE_SIZE = 256


class NoTerrain(LookupError):
    """The tile lies wholly outside the DEM."""


def elevation_tile(cog: Path, z: int, x: int, y: int, buffer: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elevations (metres, float32) of a tile and the mask of cells the DEM covers.

    Cells outside the DEM or at nodata take the lowest elevation of the tile, so a tile at
    the DEM's edge has no cliff down to zero.
    """
    check_tile(z, x, y)
    with Reader(str(cog)) as src:
        try:
            image = src.tile(x, y, z, tilesize=TILE_SIZE, buffer=buffer or None, resampling_method="bilinear",
                             reproject_method="bilinear")
        except TileOutsideBounds:
            raise NoTerrain(f"tile {z}/{x}/{y} is outside the DEM") from None
    data = image.array[0]
    valid = ~np.ma.getmaskarray(data)
    values = np.ma.getdata(data).astype("float32")
    if not valid.any():
        raise NoTerrain(f"tile {z}/{x}/{y} holds no elevation")
    values[~valid] = values[valid].min()
    return values, valid


def terrarium_png(cog: Path, z: int, x: int, y: int) -> bytes:
    """A Terrarium PNG of the tile's elevation."""
    h, _ = elevation_tile(cog, z, x, y)
    v = np.clip(h.astype("float64") + 32768.0, 0, 65535.996)
    r = np.floor(v / 256)
    g = np.floor(v - r * 256)
    b = np.floor((v - np.floor(v)) * 256)
    return render(np.stack([r, g, b]).astype("uint8"), img_format="PNG")


def decode_terrarium(rgb: np.ndarray) -> np.ndarray:
    """Elevations from a Terrarium image (3, h, w), as a client decodes them."""
    r, g, b = (rgb[i].astype("float64") for i in range(3))
    return r * 256 + g + b / 256 - 32768


def hillshade_png(cog: Path, z: int, x: int, y: int, azimuth: float = 315.0, altitude: float = 45.0) -> bytes:
    """A grey hillshade of the tile (transparent off the DEM), for draping over the terrain."""
    h, valid = elevation_tile(cog, z, x, y, buffer=1)
    west, south, east, north = mercator_bounds(z, x, y)
    latitude = math.degrees(2 * math.atan(math.exp((south + north) / 2 / 6378137.0)) - math.pi / 2)
    cell = (east - west) / TILE_SIZE * math.cos(math.radians(latitude))  # ground metres per pixel
    dzdy, dzdx = np.gradient(h.astype("float64"), cell)
    slope = np.arctan(np.hypot(dzdx, dzdy))
    aspect = np.arctan2(dzdy, -dzdx)
    zenith = math.radians(90.0 - altitude)
    az = math.radians(360.0 - azimuth + 90.0)
    shade = np.cos(zenith) * np.cos(slope) + np.sin(zenith) * np.sin(slope) * np.cos(az - aspect)
    grey = (np.clip(shade, 0, 1) * 255)[1:-1, 1:-1].astype("uint8")
    alpha = np.where(valid[1:-1, 1:-1], 255, 0).astype("uint8")
    return render(np.stack([grey, grey, grey, alpha]), img_format="PNG")
