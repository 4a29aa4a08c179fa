"""Rasters: a DEM into a Cloud-Optimized GeoTIFF in the city CRS, and ground sampling from it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from pyproj import CRS
from rasterio.enums import Resampling
from rasterio.errors import RasterioIOError
from rasterio.io import MemoryFile
from rasterio.warp import calculate_default_transform, reproject

from layers.errors import InvalidRaster, MissingCRS, SourceNotFound
from layers.vector import parse_crs

__all__ = ["DEM_NODATA", "bilinear", "write_dem_cog", "GroundModel"]

DEM_NODATA = -9999.0


def write_dem_cog(path: str | Path, out_path: str | Path, target_crs: CRS, *, crs: str | None = None,
                  elevation_scale: float = 1.0) -> dict:
    """Reproject a single-band DEM to `target_crs` and write it as a COG at `out_path`.

    Horizontal units follow the CRS (a DEM in US survey feet comes out in metres); the
    values are elevations in metres after `elevation_scale`. The COG is written beside
    `out_path` and renamed into place, so a failed write leaves an existing DEM intact.
    Returns the COG's bounds, size, resolution and value range.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceNotFound(path, "file does not exist")
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise InvalidRaster(path, f"is not a raster GDAL can read: {exc}") from exc
    with src:
        if crs is not None:
            src_crs = parse_crs(crs, source=path)
        elif src.crs is None:
            raise MissingCRS(path, "has no CRS; give it with --crs EPSG:NNNN (the DEM's horizontal CRS)")
        else:
            src_crs = CRS.from_user_input(src.crs.to_wkt())
        if src.count != 1:
            raise InvalidRaster(path, f"has {src.count} bands; a DEM has one band of elevations")
        if not np.issubdtype(np.dtype(src.dtypes[0]), np.number):
            raise InvalidRaster(path, f"band type {src.dtypes[0]} is not numeric")
        data = src.read(1, masked=True).astype("float64")
        if np.ma.count(data) == 0:
            raise InvalidRaster(path, "holds only nodata")
        transform, width, height = calculate_default_transform(
            src_crs.to_wkt(), target_crs.to_wkt(), src.width, src.height, *src.bounds)
        values = np.ma.filled(data * elevation_scale, np.nan).astype("float32")
        out = np.full((height, width), np.nan, dtype="float32")
        reproject(values, out, src_transform=src.transform, src_crs=src_crs.to_wkt(), src_nodata=np.nan,
                  dst_transform=transform, dst_crs=target_crs.to_wkt(), dst_nodata=np.nan,
                  resampling=Resampling.bilinear)
    valid = np.isfinite(out)
    if not valid.any():
        raise InvalidRaster(path, "has no valid elevations after reprojection")
    out[~valid] = DEM_NODATA
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
               "crs": target_crs.to_wkt(), "transform": transform, "nodata": DEM_NODATA}
    out_path = Path(out_path)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(out, 1)
        with mem.open() as staged:
            rasterio.shutil.copy(staged, tmp, driver="COG", COMPRESS="DEFLATE", PREDICTOR="3",
                                 BLOCKSIZE="256", OVERVIEWS="AUTO", RESAMPLING="BILINEAR")
    os.replace(tmp, out_path)
    with rasterio.open(out_path) as cog:
        bounds = tuple(cog.bounds)
        res = cog.res
    return {"bounds": bounds, "width": width, "height": height, "resolution": res,
            "min": float(out[valid].min()), "max": float(out[valid].max())}


def bilinear(data: np.ndarray, transform, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of a grid (NaN for nodata) at points, interpolated between the four nearest cells.

    Near nodata only the valid neighbours count; outside the grid the result is NaN.
    """
    inv = ~transform
    # pixel centres sit at +0.5
    col = inv.a * x + inv.b * y + inv.c - 0.5
    row = inv.d * x + inv.e * y + inv.f - 0.5
    h, w = data.shape
    c0 = np.floor(col).astype("int64")
    r0 = np.floor(row).astype("int64")
    fc, fr = col - c0, row - r0
    values = np.stack([data[np.clip(r, 0, h - 1), np.clip(c, 0, w - 1)]
                       for r, c in ((r0, c0), (r0, c0 + 1), (r0 + 1, c0), (r0 + 1, c0 + 1))])
    weights = np.stack([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc])
    ok = np.isfinite(values)
    wsum = np.where(ok, weights, 0).sum(axis=0)
    z = np.where(ok, values * weights, 0).sum(axis=0) / np.where(wsum > 0, wsum, np.nan)
    inside = (col >= -0.5) & (col <= w - 0.5) & (row >= -0.5) & (row <= h - 0.5)
    return np.where(inside & (wsum > 1e-9), z, np.nan)


class GroundModel:
    """Ground elevation sampled from a DEM COG by bilinear interpolation, NaN off the DEM."""

    def __init__(self, path: str | Path) -> None:
        with rasterio.open(path) as src:
            self.transform = src.transform
            self.crs = CRS.from_user_input(src.crs.to_wkt())
            self.bounds = tuple(src.bounds)
            self.resolution = src.res
            self._data = src.read(1, masked=True).astype("float64").filled(np.nan)
        self.path = Path(path)

    def sample(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground elevation in metres at the given coordinates of the DEM's CRS.

        Examples
        --------
        >>> ground.sample(np.array([512000.0]), np.array([4155000.0]))  # doctest: +SKIP
        array([23.7])
        """
        return bilinear(self._data, self.transform, np.asarray(x, dtype="float64"), np.asarray(y, dtype="float64"))
