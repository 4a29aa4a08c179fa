"""Ground elevation applied to the model: ground z for buildings and points, 3D pipes below ground.

Pure functions over geometry arrays and a ground sampler (``sample(x, y) -> z``); the DEM
file is opened by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely

__all__ = ["DEFAULT_COVER_DEPTH_M", "point_ground_z", "footprint_ground_z", "pipe_axis_z", "drape_pipes"]

Sampler = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Cover depth assumed for a pipe whose survey gives none (typical minimum cover in GB 50268).
DEFAULT_COVER_DEPTH_M = 1.0


def point_ground_z(geoms: np.ndarray, sample: Sampler) -> np.ndarray:
    """Ground elevation under each geometry's representative point (NaN off the DEM)."""
    points = shapely.point_on_surface(geoms)
    return sample(shapely.get_x(points), shapely.get_y(points))


def footprint_ground_z(geoms: np.ndarray, sample: Sampler) -> np.ndarray:
    """Lowest ground along each footprint's exterior, so an extruded building never floats.

    Falls back to the ground at the representative point where no vertex is on the DEM.
    """
    coords, index = shapely.get_coordinates(shapely.boundary(geoms), return_index=True)
    z = sample(coords[:, 0], coords[:, 1])
    lowest = np.full(len(geoms), np.nan)
    valid = np.isfinite(z)
    np.fmin.at(lowest, index[valid], z[valid])
    missing = ~np.isfinite(lowest)
    if missing.any():
        lowest[missing] = point_ground_z(geoms[missing], sample)
    return lowest


def pipe_axis_z(ground_z: np.ndarray, depth_m: np.ndarray, diameter_mm: np.ndarray) -> np.ndarray:
    """Elevation of a pipe's axis: ground minus cover depth minus half the diameter.

    Examples
    --------
    >>> pipe_axis_z(np.array([10.0]), np.array([1.5]), np.array([400.0]))
    array([8.3])
    """
    radius = np.where(np.isfinite(diameter_mm), diameter_mm, 0.0) / 2000.0
    return ground_z - depth_m - radius


def drape_pipes(geoms: np.ndarray, depth_m: np.ndarray, diameter_mm: np.ndarray, sample: Sampler,
                max_segment_m: float) -> tuple[np.ndarray, int, int]:
    """Give 2D pipe lines a z at every vertex: ground minus cover depth minus radius.

    Lines are densified to `max_segment_m` so the pipe follows the terrain between
    survey points. Where the depth is unknown, DEFAULT_COVER_DEPTH_M is assumed; vertices
    off the DEM take the ground of the nearest vertex on it, and lines wholly off the DEM
    take ground 0. Returns the 3D lines and the counts of assumed depths and lines off the DEM.
    """
    depth = np.where(np.isfinite(depth_m), depth_m, DEFAULT_COVER_DEPTH_M)
    assumed = int((~np.isfinite(depth_m)).sum())
    lines = shapely.segmentize(shapely.force_2d(geoms), max_segment_m)
    coords, index = shapely.get_coordinates(lines, return_index=True)
    ground = sample(coords[:, 0], coords[:, 1])
    off = 0
    if not np.isfinite(ground).all():
        for i in np.unique(index[~np.isfinite(ground)]):
            sel = np.flatnonzero(index == i)
            g = ground[sel]
            ok = np.isfinite(g)
            if ok.any():
                pos = np.arange(len(sel))
                nearest = np.abs(pos[:, None] - pos[ok][None, :]).argmin(axis=1)
                ground[sel] = g[ok][nearest]
            else:
                ground[sel] = 0.0
                off += 1
    z = pipe_axis_z(ground, depth[index], np.asarray(diameter_mm, dtype="float64")[index])
    draped = shapely.set_coordinates(shapely.force_3d(lines), np.column_stack([coords, z]))
    return draped, assumed, off
