"""Areas of unions of many polygons, without one big union.

Union before intersection is what keeps an indicator honest (two overlapping green
polygons count once), but a union of 300,000 footprints in one GEOS call takes minutes.
Here a union is split into groups of polygons whose interiors overlap: groups meet at
most along their edges, so the area of the union is the sum of the groups' union areas.
Most groups are a single polygon (its area), many are two (area(a) + area(b) -
area(a ∩ b), vectorised), and only the rest are unioned, group by group.

    union_area(footprints)                   # area(∪ footprints)
    union_area(clip_polygons(green, urban))  # area(urban ∩ ∪ green)
"""

from __future__ import annotations

import numpy as np
import shapely

from twin.columns import in_parallel, split_work

__all__ = ["clip_polygons", "group_unions", "overlap_groups", "union_area", "union_parts"]

BUCKET_MAX = 64  # groups up to this size are unioned many at a time (padded rows); larger ones alone


def _valid_polygons(geoms: np.ndarray) -> np.ndarray:
    geoms = np.asarray(geoms, dtype=object)
    keep = ~shapely.is_missing(geoms)
    keep[keep] = ~shapely.is_empty(geoms[keep]) & (shapely.area(geoms[keep]) > 0)
    return geoms[keep]


def clip_polygons(geoms: np.ndarray, region: shapely.Geometry | None) -> np.ndarray:
    """The parts of `geoms` inside `region` (polygonal, empty ones dropped); all of them when region is None.

    Examples
    --------
    >>> parts = clip_polygons(np.array([shapely.box(0, 0, 2, 2), shapely.box(5, 5, 6, 6)]), shapely.box(1, 1, 3, 3))
    >>> [p.area for p in parts]
    [1.0]
    """
    geoms = _valid_polygons(geoms)
    if region is None:
        return geoms
    if region.is_empty or not len(geoms):
        return np.empty(0, dtype=object)
    shapely.prepare(region)
    touching = shapely.intersects(region, geoms)
    geoms = geoms[touching]
    inside = shapely.contains_properly(region, geoms)
    out = geoms.copy()
    if (~inside).any():
        cut = shapely.intersection(geoms[~inside], region)
        out[~inside] = _polygonal_parts(cut)
    return _valid_polygons(out)


def _polygonal_parts(geoms: np.ndarray) -> np.ndarray:
    """Each geometry's polygonal part (an intersection may add stray lines and points)."""
    out = np.asarray(geoms, dtype=object).copy()
    mixed = np.flatnonzero(~np.isin(shapely.get_type_id(out), [3, 6]))
    for k in mixed:
        parts = shapely.get_parts(out[k])
        polys = parts[np.isin(shapely.get_type_id(parts), [3, 6])]
        out[k] = shapely.union_all(polys) if len(polys) else None
    return out


def overlap_groups(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label each polygon by the group of polygons whose interiors overlap it, directly or in a chain.

    Returns the labels and the overlapping pairs (i < j) with the area each pair shares.
    Polygons that only touch along an edge or at a point are in different groups.

    Examples
    --------
    >>> labels, _, _ = overlap_groups(np.array([shapely.box(0, 0, 2, 2), shapely.box(1, 1, 3, 3),
    ...                                         shapely.box(3, 0, 4, 1)]))
    >>> labels.tolist()
    [0, 0, 2]
    """
    n = len(geoms)
    labels = np.arange(n)
    if n < 2:
        return labels, np.empty(0, dtype=np.intp), np.empty(0, dtype=np.intp)
    tree = shapely.STRtree(geoms)
    i, j = tree.query(geoms)  # boxes overlap: cheap, then the exact test on those pairs only
    pair = i < j
    i, j = i[pair], j[pair]
    # boxes that only share an edge (sheets on a grid) cannot hold an overlap of interiors
    b = shapely.bounds(geoms)
    inner = (np.minimum(b[i, 2], b[j, 2]) > np.maximum(b[i, 0], b[j, 0])) & \
        (np.minimum(b[i, 3], b[j, 3]) > np.maximum(b[i, 1], b[j, 1]))
    i, j = i[inner], j[inner]
    hit = split_work(shapely.intersects, geoms[i], geoms[j])
    i, j = i[hit], j[hit]
    hit = ~split_work(shapely.touches, geoms[i], geoms[j])
    i, j = i[hit], j[hit]
    return _components(n, i, j), i, j


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Label each of n nodes by the smallest node it is linked to through the pairs (i, j)."""
    labels = np.arange(n)
    if not len(i):
        return labels
    # connected components: hook each pair's roots together, then jump pointers, until stable
    while True:
        li, lj = labels[i], labels[j]
        low = np.minimum(li, lj)
        before = labels.copy()
        np.minimum.at(labels, li, low)
        np.minimum.at(labels, lj, low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped
        if np.array_equal(labels, before):
            break
    return labels


def _covered(geoms: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Which polygons lie inside another of the overlapping pairs (i, j) (of equal ones, all but the first):
    they add nothing to a union, and leaving them out makes the groups to union smaller (a 1:500 sheet
    inside a surveyed 1:2000 one)."""
    b = shapely.bounds(geoms)
    covered = np.zeros(len(geoms), dtype=bool)
    for outer, inner, later in ((i, j, True), (j, i, False)):
        boxed = (b[outer, 0] <= b[inner, 0]) & (b[outer, 1] <= b[inner, 1]) & \
            (b[outer, 2] >= b[inner, 2]) & (b[outer, 3] >= b[inner, 3])
        o, k = outer[boxed], inner[boxed]
        if not len(o):
            continue
        inside = split_work(shapely.covers, geoms[o], geoms[k], min_size=5_000)
        if not later:  # i inside j with j inside i too: equal, and j (the later) is the one left out
            inside &= ~split_work(shapely.covers, geoms[k], geoms[o], min_size=5_000)
        covered[k[inside]] = True
    return covered


def union_parts(geoms: np.ndarray) -> np.ndarray:
    """The union of each group of overlapping polygons: parts that meet at most along their edges.

    Their areas add up to the area of the union of `geoms`.
    """
    geoms = _valid_polygons(geoms)
    labels, _, _ = overlap_groups(geoms)
    return group_unions(geoms, labels)[1]


def group_unions(geoms: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The labels, sorted, and the union of the polygons of each label."""
    geoms = np.asarray(geoms, dtype=object)
    if not len(geoms):
        return np.empty(0, dtype=labels.dtype), np.empty(0, dtype=object)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]])
    sizes = np.diff(np.r_[starts, len(labels)])
    out = np.empty(len(starts), dtype=object)
    single = sizes == 1
    out[single] = geoms[order[starts[single]]]
    low = 2
    while low <= BUCKET_MAX:
        high = low * 2 - 1
        sel = np.flatnonzero((sizes >= low) & (sizes <= high))
        if len(sel):
            rows = np.full((len(sel), high), None, dtype=object)
            for k in range(high):
                has = sizes[sel] > k
                rows[has, k] = geoms[order[starts[sel[has]] + k]]
            out[sel] = split_work(lambda part: shapely.union_all(part, axis=1), rows, min_size=256)
        low *= 2
    big = np.flatnonzero(sizes > BUCKET_MAX)
    out[big] = in_parallel(lambda g: shapely.union_all(geoms[order[starts[g]:starts[g] + sizes[g]]]), list(big))
    return sorted_labels[starts], out


def union_area(geoms: np.ndarray) -> float:
    """Area of the union of polygons: overlaps count once.

    Examples
    --------
    >>> union_area(np.array([shapely.box(0, 0, 2, 2), shapely.box(1, 0, 3, 2), shapely.box(0, 0, 2, 2)]))
    6.0
    """
    geoms = _valid_polygons(geoms)
    if not len(geoms):
        return 0.0
    labels, i, j = overlap_groups(geoms)
    if len(i):
        covered = _covered(geoms, i, j)
        if covered.any():
            keep = ~covered[i] & ~covered[j]
            i, j = i[keep], j[keep]
            labels = _components(len(geoms), i, j)
            labels[covered] = -1  # in no group: left out
    areas = shapely.area(geoms)
    sizes = np.bincount(labels[labels >= 0], minlength=len(geoms))
    size = np.where(labels >= 0, sizes[np.maximum(labels, 0)], 0)
    total = float(areas[size == 1].sum())
    # a group of two: inclusion-exclusion, vectorised
    two = size[i] == 2
    if two.any():
        shared = shapely.area(split_work(shapely.intersection, geoms[i[two]], geoms[j[two]], min_size=5_000))
        total += float(areas[size == 2].sum() - shared.sum())
    many = size > 2
    if many.any():
        total += float(shapely.area(group_unions(geoms[many], labels[many])[1]).sum())
    return total
