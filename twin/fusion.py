"""BIM-GIS fusion: a BIM building takes the unified id of the GIS footprint it overlaps most.

Pure functions over GeoDataFrames in the city CRS.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

__all__ = ["MIN_OVERLAP_SHARE", "match_footprints", "fuse"]

# A GIS footprint counts as the same building when the overlap covers at least this share
# of the smaller of the two outlines (surveyed and modelled outlines rarely agree exactly).
MIN_OVERLAP_SHARE = 0.2


def match_footprints(bim: gpd.GeoDataFrame, gis: gpd.GeoDataFrame) -> pd.Series:
    """For each BIM footprint, the uid of the GIS footprint it overlaps most (None if none).

    Examples
    --------
    >>> import shapely, geopandas as gpd
    >>> bim = gpd.GeoDataFrame({"uid": ["bim.a"]}, geometry=[shapely.box(0, 0, 10, 10)])
    >>> gis = gpd.GeoDataFrame({"uid": ["building.1", "building.2"]},
    ...                        geometry=[shapely.box(8, 0, 20, 10), shapely.box(1, 1, 9, 9)])
    >>> match_footprints(bim, gis).tolist()
    ['building.2']
    """
    result = pd.Series([None] * len(bim), index=bim.index, dtype="object")
    if bim.empty or gis.empty:
        return result
    bim_geoms = np.asarray(shapely.force_2d(bim.geometry.values), dtype=object)
    gis_geoms = np.asarray(shapely.force_2d(gis.geometry.values), dtype=object)
    tree = shapely.STRtree(gis_geoms)
    left, right = tree.query(bim_geoms, predicate="intersects")
    if not len(left):
        return result
    overlap = shapely.area(shapely.intersection(bim_geoms[left], gis_geoms[right]))
    smaller = np.minimum(shapely.area(bim_geoms[left]), shapely.area(gis_geoms[right]))
    share = np.divide(overlap, smaller, out=np.zeros_like(overlap), where=smaller > 0)
    keep = share >= MIN_OVERLAP_SHARE
    left, right, overlap = left[keep], right[keep], overlap[keep]
    uids = gis["uid"].to_numpy()
    for i in np.unique(left):
        sel = left == i
        result.iloc[i] = uids[right[sel][np.argmax(overlap[sel])]]
    return result


def fuse(gis: gpd.GeoDataFrame, bim: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Set `unified_id` on BIM buildings and `bim_uid`/`represented_by_bim` on GIS footprints.

    A BIM building with no GIS match keeps its own uid as its unified id.
    """
    gis = gis.copy()
    bim = bim.copy()
    matched = match_footprints(bim, gis)
    bim["unified_id"] = matched.where(matched.notna(), bim["uid"]).astype("string")
    by_gis = {gis_uid: bim_uid for gis_uid, bim_uid in zip(matched, bim["uid"]) if gis_uid is not None}
    gis["bim_uid"] = pd.Series([by_gis.get(u) for u in gis["uid"]], index=gis.index, dtype="string")
    gis["represented_by_bim"] = gis["bim_uid"].notna().astype("bool")
    return gis, bim
