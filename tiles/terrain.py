"""Terrain tiles from the DEM COG: Terrarium-encoded elevation and a hillshade.

A district's DEM is held in memory as a small pyramid and sampled at the tile's pixel
centres (bilinear, from the level whose cell matches the pixel); a DEM too large for
memory is read per tile through rio-tiler.

Terrarium packs an elevation h into RGB as ``h + 32768 = R * 256 + G + B / 256``, which
is what deck.gl's TerrainLayer decodes with
``elevationDecoder: {rScaler: 256, gScaler: 1, bScaler: 1/256, offset: -32768}``.
"""

from __future__ import annotations

import math
from pathlib import Path

from functools import lru_cache

import numpy as np
import rasterio
from pyproj import CRS
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.utils import render

from layers.raster import bilinear
from tiles.grid import check_tile, mercator_bounds
from twin.crs import WEB_MERCATOR, transformer

__all__ = ["TERRARIUM_DECODER", "NoTerrain", "elevation_tile", "terrarium_png", "hillshade_png", "hillshade_rgba",
           "terrarium_rgb", "terrain_mosaic", "decode_terrarium"]

TERRARIUM_DECODER = {"rScaler": 256, "gScaler": 1, "bScaler": 1 / 256, "offset": -32768}
TILE_SIZE = 256


class NoTerrain(LookupError):
    """The tile lies wholly outside the DEM."""


# DEMs up to this many cells are held in memory and sampled directly; larger ones are
# read tile by tile through rio-tiler (whose per-tile reprojection set-up costs ~100 ms).
IN_MEMORY_CELLS = 64_000_000


class _Pyramid:
    """A DEM in memory with 2x-averaged levels, sampled bilinearly at any point."""

    def __init__(self, cog: Path) -> None:
        with rasterio.open(cog) as src:
            data = src.read(1, masked=True).astype("float64").filled(np.nan)
            self.crs = CRS.from_user_input(src.crs.to_wkt())
            transform = src.transform
        self.levels = [(data, transform)]
        while min(data.shape) > 64:
            h, w = data.shape[0] // 2 * 2, data.shape[1] // 2 * 2
            blocks = data[:h, :w].reshape(h // 2, 2, w // 2, 2)
            with np.errstate(invalid="ignore"):
                data = np.nanmean(blocks, axis=(1, 3)) if np.isnan(blocks).any() else blocks.mean(axis=(1, 3))
            transform = transform * transform.scale(2, 2)
            self.levels.append((data, transform))

    def sample(self, x: np.ndarray, y: np.ndarray, spacing: float) -> np.ndarray:
        """Elevation at points whose spacing is `spacing` metres, from the level that matches it."""
        level = 0
        while level + 1 < len(self.levels) and abs(self.levels[level + 1][1].a) <= spacing:
            level += 1
        data, transform = self.levels[level]
        return bilinear(data, transform, x, y)


@lru_cache(maxsize=8)
def _pyramid(cog: Path) -> _Pyramid | None:
    with rasterio.open(cog) as src:
        if src.width * src.height > IN_MEMORY_CELLS:
            return None
    return _Pyramid(cog)


def _sampled_tile(pyramid: _Pyramid, z: int, x: int, y: int, buffer: int) -> np.ndarray:
    west, south, east, north = mercator_bounds(z, x, y)
    size = TILE_SIZE + 2 * buffer
    step = (east - west) / TILE_SIZE
    # project a coarse grid exactly and interpolate between its nodes: over a tile the
    # projection is smooth to far below a DEM cell, and it saves projecting 65,536 points
    nodes = np.linspace(-buffer, TILE_SIZE + buffer, 17)
    gx, gy = np.meshgrid(west + nodes * step, north - nodes * step)
    nx, ny = (np.asarray(v).reshape(17, 17) for v in
              transformer(WEB_MERCATOR, pyramid.crs).transform(gx.ravel(), gy.ravel()))
    at = (np.arange(size) + 0.5) / size * 16  # pixel centres in node units
    i0 = np.minimum(np.floor(at).astype("int64"), 15)
    f = at - i0
    def interpolate(grid: np.ndarray) -> np.ndarray:
        rows = grid[i0] * (1 - f)[:, None] + grid[i0 + 1] * f[:, None]
        return rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    px, py = interpolate(nx).ravel(), interpolate(ny).ravel()
    latitude = math.degrees(2 * math.atan(math.exp((south + north) / 2 / 6378137.0)) - math.pi / 2)
    spacing = step * math.cos(math.radians(latitude))
    return pyramid.sample(np.asarray(px), np.asarray(py), spacing).reshape(size, size)


def elevation_tile(cog: Path, z: int, x: int, y: int, buffer: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Elevations (metres, float32) of a tile and the mask of cells the DEM covers.

    Cells outside the DEM or at nodata take the lowest elevation of the tile, so a tile at
    the DEM's edge has no cliff down to zero.
    """
    check_tile(z, x, y)
    pyramid = _pyramid(Path(cog))
    if pyramid is not None:
        values = _sampled_tile(pyramid, z, x, y, buffer)
        valid = np.isfinite(values)
        if not valid.any():
            raise NoTerrain(f"tile {z}/{x}/{y} is outside the DEM")
        values = values.astype("float32")
        values[~valid] = values[valid].min()
        return values, valid
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


def terrarium_rgb(h: np.ndarray) -> np.ndarray:
    """Elevations (metres) as a Terrarium image (3, h, w) uint8."""
    v = np.clip(h.astype("float64") + 32768.0, 0, 65535.996)
    r = np.floor(v / 256)
    g = np.floor(v - r * 256)
    b = np.floor((v - np.floor(v)) * 256)
    return np.stack([r, g, b]).astype("uint8")


def terrarium_png(cog: Path, z: int, x: int, y: int) -> bytes:
    """A Terrarium PNG of the tile's elevation."""
    h, _ = elevation_tile(cog, z, x, y)
    return render(terrarium_rgb(h), img_format="PNG", ZLEVEL=1)


def decode_terrarium(rgb: np.ndarray) -> np.ndarray:
    """Elevations from a Terrarium image (3, h, w), as a client decodes them."""
    r, g, b = (rgb[i].astype("float64") for i in range(3))
    return r * 256 + g + b / 256 - 32768


def hillshade_png(cog: Path, z: int, x: int, y: int, azimuth: float = 315.0, altitude: float = 45.0) -> bytes:
    """A grey hillshade of the tile (transparent off the DEM), for draping over the terrain."""
    h, valid = elevation_tile(cog, z, x, y, buffer=1)
    return render(hillshade_rgba(h, valid, z, x, y, azimuth, altitude), img_format="PNG", ZLEVEL=1)


def hillshade_rgba(h: np.ndarray, valid: np.ndarray, z: int, x: int, y: int, azimuth: float = 315.0,
                   altitude: float = 45.0) -> np.ndarray:
    """The hillshade (4, n, n) uint8 of a tile's elevations `h` sampled with a one-pixel buffer."""
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
    return np.stack([grey, grey, grey, alpha])


def terrain_mosaic(cog: Path, bounds_wgs84: tuple[float, float, float, float],
                   max_tiles: int = 16) -> tuple[bytes, bytes, tuple[float, float, float, float]]:
    """One Terrarium PNG and one hillshade PNG over `bounds_wgs84`, and the bounds they cover.

    For a page that cannot fetch tiles (an exported file): the tiles of the finest zoom at
    which the bounds need at most `max_tiles`, stitched. The result is in Web Mercator rows;
    over a city the difference from rows linear in latitude is far below a pixel.
    """
    import morecantile

    grid = morecantile.tms.get("WebMercatorQuad")
    west, south, east, north = bounds_wgs84
    zoom = 8
    for z in range(17, 7, -1):
        if len(list(grid.tiles(west, south, east, north, [z]))) <= max_tiles:
            zoom = z
            break
    tiles = list(grid.tiles(west, south, east, north, [zoom]))
    xs = sorted({t.x for t in tiles})
    ys = sorted({t.y for t in tiles})
    heights = np.zeros((len(ys) * TILE_SIZE, len(xs) * TILE_SIZE), "float32")
    shade = np.zeros((4, len(ys) * TILE_SIZE, len(xs) * TILE_SIZE), "uint8")
    lowest = np.inf
    missing = []
    for row, ty in enumerate(ys):
        for col, tx in enumerate(xs):
            window = (slice(row * TILE_SIZE, (row + 1) * TILE_SIZE), slice(col * TILE_SIZE, (col + 1) * TILE_SIZE))
            try:
                h, valid = elevation_tile(cog, zoom, tx, ty, buffer=1)
            except NoTerrain:
                missing.append(window)
                continue
            heights[window] = h[1:-1, 1:-1]
            lowest = min(lowest, float(h.min()))
            shade[(slice(None), *window)] = hillshade_rgba(h, valid, zoom, tx, ty)
    for window in missing:  # off the DEM: flat at its lowest, no cliff to sea level
        heights[window] = lowest if np.isfinite(lowest) else 0.0
    w = grid.bounds(morecantile.Tile(xs[0], ys[0], zoom))
    e = grid.bounds(morecantile.Tile(xs[-1], ys[-1], zoom))
    return (render(terrarium_rgb(heights), img_format="PNG", ZLEVEL=6), render(shade, img_format="PNG", ZLEVEL=6),
            (w.left, e.bottom, e.right, w.top))
