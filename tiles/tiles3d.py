"""A 3D Tiles 1.1 tileset of the city's BIM models: one tile per building, GLB content.

Each building's GLB is in local model metres (glTF Y-up, which 3D Tiles turns Z-up); the
tile's `transform` takes those local coordinates to Earth-centred, Earth-fixed metres
(EPSG:4978). It is fitted from the building's placement (local -> city CRS, stored with
the building) at the corners of its box, which over a building is affine to well under
a millimetre. Heights are taken as ellipsoidal, as the terrain's are.
"""

from __future__ import annotations

import json
import math
from urllib.parse import quote

import numpy as np
from pyproj import CRS

from twin.crs import transformer
from twin.snapshots import LayerSnapshot

__all__ = ["ECEF", "GEODETIC_3D", "tile_transform", "tileset"]

ECEF = CRS.from_epsg(4978)
GEODETIC_3D = CRS.from_epsg(4979)


def _local_box(row) -> np.ndarray:
    """Corners of a building's local box (model metres), from its footprint and heights."""
    matrix = np.array(json.loads(row["transform"]))
    inverse = np.linalg.inv(matrix)
    xs, ys = np.asarray(row.geometry.exterior.coords if row.geometry.geom_type == "Polygon"
                        else np.concatenate([np.asarray(p.exterior.coords) for p in row.geometry.geoms])).T[:2]
    base, top = float(row["base_z"]), float(row["top_z"])
    local = (inverse @ np.vstack([xs, ys, np.full_like(xs, base), np.ones_like(xs)]))[:3].T
    lo, hi = local.min(axis=0), local.max(axis=0)
    lo[2], hi[2] = 0.0, top - base
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def tile_transform(row, city_crs: CRS) -> tuple[np.ndarray, np.ndarray]:
    """The 4x4 local -> ECEF matrix of a building, and its local box corners."""
    matrix = np.array(json.loads(row["transform"]))
    corners = _local_box(row)
    placed = (matrix @ np.column_stack([corners, np.ones(len(corners))]).T)[:3].T
    lon, lat = transformer(city_crs, CRS.from_epsg(4326)).transform(placed[:, 0], placed[:, 1])
    ecef = np.column_stack(transformer(GEODETIC_3D, ECEF).transform(lon, lat, placed[:, 2]))
    design = np.column_stack([corners, np.ones(len(corners))])
    solution, *_ = np.linalg.lstsq(design, ecef, rcond=None)
    result = np.eye(4)
    result[:3, :] = solution.T
    return result, corners


def _region(row, city_crs: CRS) -> list[float]:
    west, south, east, north = transformer(city_crs, CRS.from_epsg(4326)).transform_bounds(*row.geometry.bounds)
    return [math.radians(west), math.radians(south), math.radians(east), math.radians(north),
            float(row["base_z"]), float(row["top_z"])]


def tileset(snapshots: list[LayerSnapshot], content_url: str = "content/{uid}.glb",
            extent: tuple[float, float, float, float] | None = None) -> dict:
    """The tileset JSON for the BIM buildings and facilities in `snapshots`.

    `extent` (west, south, east, north in degrees) bounds an empty tileset, so a city
    without BIM models still gets a valid one.
    """
    children = []
    regions = []
    for snapshot in snapshots:
        frame = snapshot.frame
        for _, row in frame.iterrows():
            if not isinstance(row.get("transform"), str):
                continue
            matrix, corners = tile_transform(row, frame.crs)
            region = _region(row, frame.crs)
            regions.append(region)
            size = float(np.linalg.norm(corners.max(axis=0) - corners.min(axis=0)))
            children.append({
                "boundingVolume": {"region": region},
                "geometricError": 0.0,
                "refine": "ADD",
                "transform": matrix.T.ravel().round(6).tolist(),  # column-major, as 3D Tiles stores it
                "content": {"uri": content_url.format(uid=quote(row["uid"], safe=""))},
                "extras": {"uid": row["uid"], "name": row.get("name") if isinstance(row.get("name"), str) else None,
                           "size_m": round(size, 2)},
            })
    if not regions:
        west, south, east, north = extent or (-180.0, -90.0, 180.0, 90.0)
        region = [math.radians(west), math.radians(south), math.radians(east), math.radians(north), 0.0, 1.0]
        return {"asset": {"version": "1.1", "generator": "twin"}, "geometricError": 0.0,
                "root": {"boundingVolume": {"region": region}, "geometricError": 0.0, "refine": "ADD",
                         "children": []}}
    r = np.array(regions)
    root_region = [float(r[:, 0].min()), float(r[:, 1].min()), float(r[:, 2].max()), float(r[:, 3].max()),
                   float(r[:, 4].min()), float(r[:, 5].max())]
    # the screen error of showing nothing: the extent of the district in metres
    extent = math.hypot((root_region[2] - root_region[0]) * 6378137 * math.cos(root_region[1]),
                        (root_region[3] - root_region[1]) * 6378137)
    error = max(round(extent / 4, 1), 50.0)
    return {
        "asset": {"version": "1.1", "generator": "twin"},
        "geometricError": error,
        "root": {"boundingVolume": {"region": root_region}, "geometricError": error, "refine": "ADD",
                 "children": children},
    }
