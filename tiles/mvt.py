"""A vectorised Mapbox Vector Tile 2.1 encoder.

The geometry of all features of a tile, whatever their layer, is put on the tile's integer
grid, delta- and zigzag-encoded and varint-packed with numpy in one pass per geometry
family; attributes are encoded once per layer version, so a tile picks rows from tables
instead of doing Python work per vertex, per value or per layer (what makes the
pure-Python encoders slow). The output is the protobuf of the MVT 2.1 specification:
`Tile { repeated Layer layers = 3 }`, layers of version 2.

A tile holds a few hundred numbers, so what it costs is the count of numpy calls, not
their work: the code calls ufuncs and array methods (`np.add.accumulate`, `.searchsorted`)
rather than numpy's Python-level wrappers (`np.cumsum`, `np.diff`, `np.column_stack`),
and takes shortcuts for the common cases (single-part geometries, one layer). Below about
ten features even those ~200 calls cost more than the work, so such tiles are built
feature by feature in plain Python instead, to the same bytes (`_few_features_tile`).
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

__all__ = ["AttributeTable", "attribute_table", "LayerStack", "tile_message", "family_of",
           "POINT", "LINESTRING", "POLYGON"]

POINT, LINESTRING, POLYGON = 1, 2, 3
# command integers are (count << 3) | id: MoveTo is 1, LineTo 2, ClosePath 7
_MOVE_TO_ONE, _LINE_TO, _CLOSE_PATH_ONE = (1 << 3) | 1, 2, (1 << 3) | 7
# a varint of k bytes holds values below 2 ** (7 * k); the values here are int64, below 2 ** 63.
# With 0 first, how many limits a value reaches is its varint's length.
_VARINT_LIMITS = np.array([0] + [1 << (7 * k) for k in range(1, 9)], dtype=np.int64)
_VARINT_SHIFTS = np.arange(0, 63, 7, dtype=np.int64)
_VARINT_BYTE_THERE = np.array([0] + [1] * 8, dtype=np.int64)  # byte 0 always, byte k when v >> 7k >= 1
_running_total = np.add.accumulate
_TWO_TRUE = np.frombuffer(bytes([1, 1]), dtype=np.uint16)[0]


def _varint_lengths(values: np.ndarray) -> np.ndarray:
    """How many bytes the varint of each value takes (values non-negative int64)."""
    if len(values) < 256:
        return _VARINT_LIMITS.searchsorted(values, side="right")
    # a binary search per value costs more than a few comparisons over long arrays
    lengths = (values >= _VARINT_LIMITS[1]).astype(np.int64) + 1
    top = int(values.max())
    for limit in _VARINT_LIMITS[2:].tolist():
        if top < limit:
            break
        lengths += values >= limit
    return lengths


def _varints(values: np.ndarray) -> np.ndarray:
    """The varint bytes of many values (non-negative int64), concatenated."""
    if not len(values):
        return np.zeros(0, dtype=np.uint8)
    width = max(1, (int(values.max()).bit_length() + 6) // 7)
    if width == 1:
        return values.astype(np.uint8)
    if len(values) >= _MANY_VARINTS:
        return _many_varints(values)
    # byte k of a value holds bits 7k.. (v >> 7k), is there while those are not all 0,
    # and has the continuation bit while v >> 7k needs more than 7 bits
    shifted = values[:, None] >> _VARINT_SHIFTS[:width]
    groups = (shifted.astype(np.uint8) & 0x7F) | ((shifted > 0x7F).view(np.uint8) << 7)
    return groups[shifted >= _VARINT_BYTE_THERE[:width]]


# From about this many values on, a pass writing every first byte and then passes over the
# few longer values beat the values-by-bytes table above (2-4x on a tile of dense lines).
_MANY_VARINTS = 1024


def _many_varints(values: np.ndarray) -> np.ndarray:
    """`_varints` for long arrays of mostly one-byte values."""
    lengths = _varint_lengths(values)
    ends = _running_total(lengths)
    starts = ends - lengths
    longer = lengths > 1
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    out[starts] = (values & 0x7F).astype(np.uint8) | (longer.view(np.uint8) << 7)
    rest, k = longer.nonzero()[0], 1
    while len(rest):
        left = lengths[rest]
        out[starts[rest] + k] = ((values[rest] >> (7 * k)) & 0x7F).astype(np.uint8) | ((left > k + 1).view(np.uint8) << 7)
        rest, k = rest[left > k + 1], k + 1
    return out


def _varint(value: int) -> bytes:
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int) -> bytes:
    return _varint((number << 3) | wire)


def _bytes_field(number: int, payload: bytes) -> bytes:
    return _field(number, 2) + _varint(len(payload)) + payload


def _zigzag(v: np.ndarray) -> np.ndarray:
    return (v << 1) ^ (v >> 63)


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of `lengths` begins."""
    return _running_total(lengths, dtype=np.int64) - lengths


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """0 and the running total of `lengths`: run i is offsets[i]:offsets[i + 1]."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    _running_total(lengths, dtype=np.int64, out=out[1:])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(starts[i], starts[i] + lengths[i]) for all i, in one pass."""
    ends = _running_total(lengths, dtype=np.int64)
    total = int(ends[-1]) if len(ends) else 0
    return (starts - ends + lengths).repeat(lengths) + np.arange(total)


def _gather(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of buffer[starts[i]:starts[i] + lengths[i]] for all i, in one pass."""
    return buffer[_ranges(starts, lengths)]


def _oriented(coords: np.ndarray, ring_of: np.ndarray, counts: np.ndarray, exterior: np.ndarray | None) -> np.ndarray:
    """Closed rings' integer coordinates (grouped by ring, `counts` each) with each ring
    reversed where needed: exterior rings with positive area by the surveyor's formula (in
    tile coordinates, y down: clockwise on screen), holes with negative area, as MVT 2.1 wants.

    The sign of the area is what decoders go by. It is what GEOS's orientation test says
    (shapely.orient_polygons) for every simple ring; they differ only on rings that
    snapping made self-intersecting, where the area is the one decoders will compute.
    """
    x, y = coords[:, 0], coords[:, 1]
    cross = x[:-1] * y[1:] - x[1:] * y[:-1]  # exact: integers far below 2 ** 53
    twice_area = np.bincount(ring_of[1:], weights=cross * (ring_of[1:] == ring_of[:-1]), minlength=len(counts))
    positive = twice_area > 0
    reverse = ~positive if exterior is None else positive != exterior
    if not reverse.any():
        return coords
    at = np.arange(len(coords))
    # the mirror of position i in its ring [first, first + count) is 2 first + count - 1 - i
    mirror = (2 * _starts(counts) + counts - 1)[ring_of] - at
    return coords[np.where(reverse[ring_of], mirror, at)]


def _geometry(geoms: np.ndarray, types: np.ndarray, family: int, origin: np.ndarray,
              scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every feature's geometry command integers, concatenated, and how many each has.

    The coordinates are put on the grid, (c - origin) / scale rounded. Consecutive repeated
    points (what snapping leaves) are dropped, and so are rings left with fewer than three
    points and lines with fewer than two; a feature with nothing left has no integers.
    Polygons are oriented on the grid (snapping can flip a thin ring), see `_oriented`.
    """
    n = len(geoms)
    nothing = np.zeros(0, dtype=np.int64), np.zeros(n, dtype=np.int64)
    if family == POINT:
        coords, feature = shapely.get_coordinates(geoms, return_index=True)
        if not len(coords):
            return nothing
        coords = np.rint((coords - origin) / scale).astype(np.int64)
        sizes = np.zeros(n, dtype=np.int64)
        if (types == 0).all():
            # MoveTo(1) x y per point
            stream = np.empty((len(coords), 3), dtype=np.int64)
            stream[:, 0] = _MOVE_TO_ONE
            stream[:, 1:] = _zigzag(coords)
            stream = stream.ravel()
            sizes[feature] = 3
        else:
            # MoveTo(k) and k points per feature, the cursor carrying from point to point
            first = np.ones(len(feature), dtype=bool)
            first[1:] = feature[1:] != feature[:-1]
            previous = np.empty_like(coords)
            previous[1:] = coords[:-1]
            previous[first] = 0
            first_at = first.nonzero()[0]
            points = np.diff(np.append(first_at, len(coords)))
            command_at = 2 * first_at + np.arange(len(first_at))
            stream = np.empty(2 * len(coords) + len(first_at), dtype=np.int64)
            stream[command_at] = (points << 3) | 1
            mask = np.ones(len(stream), dtype=bool)
            mask[command_at] = False
            stream[mask] = _zigzag(coords - previous).ravel()
            sizes[feature[first]] = 1 + 2 * points
    else:
        closed = family == POLYGON
        multipart = (types == (6 if closed else 5)).any()
        path_feature = None  # one path per feature, the feature's own position
        exterior = None  # whether each ring is its polygon's exterior one (None: all are)
        if closed and (multipart or shapely.get_num_interior_rings(geoms).any()):
            parts, part_feature = shapely.get_parts(geoms, return_index=True)
            rings, ring_part = shapely.get_rings(parts, return_index=True)
            coords, coord_path = shapely.get_coordinates(rings, return_index=True)
            path_feature = part_feature[ring_part]
            exterior = np.ones(len(rings), dtype=bool)
            exterior[1:] = ring_part[1:] != ring_part[:-1]
        elif multipart:
            parts, path_feature = shapely.get_parts(geoms, return_index=True)
            coords, coord_path = shapely.get_coordinates(parts, return_index=True)
        else:
            coords, coord_path = shapely.get_coordinates(geoms, return_index=True)
        if not len(coords):
            return nothing
        coords = np.rint((coords - origin) / scale).astype(np.int64)
        paths = n if path_feature is None else len(path_feature)
        if closed:
            ring_counts = np.bincount(coord_path, minlength=paths)
            coords = _oriented(coords, coord_path, ring_counts, exterior)
        # a point equal to the one before it on its path: x and y equal are two true bytes
        repeated = (coords[1:] == coords[:-1]).view(np.uint16)[:, 0] == _TWO_TRUE
        repeated &= coord_path[1:] == coord_path[:-1]
        if closed or repeated.any():
            keep = np.ones(len(coords), dtype=bool)
            keep[1:] = ~repeated
            if closed:
                keep[_running_total(ring_counts) - 1] = False  # the closing point is ClosePath's job
            coords, coord_path = coords[keep], coord_path[keep]
        counts = np.bincount(coord_path, minlength=paths)
        usable = counts >= (3 if closed else 2)
        one_path_each = path_feature is None
        if not usable.all():
            coords = coords[usable[coord_path]]
            counts = counts[usable]
            path_feature = usable.nonzero()[0] if one_path_each else path_feature[usable]
        if not len(counts):
            return nothing
        # every feature starts its cursor at (0, 0); within a feature it carries from path to path
        path_first = _starts(counts)
        previous = np.empty_like(coords)
        previous[1:] = coords[:-1]
        if one_path_each:
            previous[path_first] = 0
        else:
            feature_first = np.ones(len(counts), dtype=bool)
            feature_first[1:] = path_feature[1:] != path_feature[:-1]
            previous[path_first[feature_first]] = 0
        # per path: MoveTo(1) x y LineTo(k-1) (x y)*(k-1) [ClosePath]
        per_path = 2 * counts + (3 if closed else 2)
        path_at = _starts(per_path)
        stream = np.empty(int(path_at[-1] + per_path[-1]), dtype=np.int64)
        mask = np.ones(len(stream), dtype=bool)
        stream[path_at] = _MOVE_TO_ONE
        stream[path_at + 3] = ((counts - 1) << 3) | _LINE_TO
        mask[path_at] = False
        mask[path_at + 3] = False
        if closed:
            close_at = path_at + per_path - 1
            stream[close_at] = _CLOSE_PATH_ONE
            mask[close_at] = False
        stream[mask] = _zigzag(coords - previous).ravel()
        if path_feature is None:
            sizes = per_path
        elif one_path_each:
            sizes = np.zeros(n, dtype=np.int64)
            sizes[path_feature] = per_path
        else:
            sizes = np.bincount(path_feature, weights=per_path, minlength=n).astype(np.int64)
    return stream, sizes


def _value_message(value) -> bytes:
    if isinstance(value, (bool, np.bool_)):
        return _field(7, 0) + _varint(int(bool(value)))
    if isinstance(value, (int, np.integer)):
        v = int(value)
        return _field(6, 0) + _varint((v << 1) ^ (v >> 63))  # sint64: zigzag
    if isinstance(value, (float, np.floating)):
        return _field(3, 1) + struct.pack("<d", float(value))
    return _bytes_field(1, str(value).encode("utf-8"))


@dataclass
class AttributeTable:
    """A layer's attributes encoded once: MVT keys, MVT values, and each feature's value per key.

    `codes[i, k]` is the index into `values` of feature i's value for key k, or -1 where
    the feature has none.
    """

    keys: list[str]
    values: list[bytes]
    codes: np.ndarray


def attribute_table(columns: dict[str, np.ndarray], n: int) -> AttributeTable:
    """Factorise attribute columns into an AttributeTable (nulls and NaN are left out)."""
    keys: list[str] = []
    values: list[bytes] = []
    value_index: dict[tuple, int] = {}
    value_columns = []
    for name, column in columns.items():
        codes, uniques = pd.factorize(pd.Series(column, dtype=object), use_na_sentinel=True)
        if not len(uniques):
            continue
        mapping = np.empty(len(uniques), dtype=np.int64)
        for i, unique in enumerate(uniques):
            if isinstance(unique, (float, np.floating)) and not math.isfinite(unique):
                mapping[i] = -1
                continue
            ident = (type(unique).__name__, unique)
            if ident not in value_index:
                value_index[ident] = len(values)
                values.append(_value_message(unique))
            mapping[i] = value_index[ident]
        keys.append(name)
        value_columns.append(np.where(codes >= 0, mapping[np.maximum(codes, 0)], -1))
    codes = np.column_stack(value_columns) if value_columns else np.zeros((n, 0), dtype=np.int64)
    return AttributeTable(keys, values, codes)


class _Fields:
    """Encoded protobuf fields in one buffer, picked by number."""

    def __init__(self, fields: list[bytes]) -> None:
        self.fields = fields
        self.lengths = np.array([len(f) for f in fields], dtype=np.int64)
        self.starts = _starts(self.lengths)
        self.joined = b"".join(fields)
        self.buffer = np.frombuffer(self.joined, dtype=np.uint8)

    def __len__(self) -> int:
        return len(self.lengths)

    def pick(self, chosen: np.ndarray) -> bytes:
        """The chosen fields (ascending numbers), concatenated."""
        if len(chosen) == len(self.lengths):
            return self.joined
        return _gather(self.buffer, self.starts[chosen], self.lengths[chosen]).tobytes()

    def cuts(self, chosen: np.ndarray, firsts: np.ndarray) -> list[int]:
        """Where, in `pick(chosen)`, the fields numbered from each of `firsts` on begin."""
        return _offsets(self.lengths[chosen])[chosen.searchsorted(firsts)].tolist()


def _renumber(ids: np.ndarray, layer_first: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """The distinct ids (ascending), and each id's rank among them within its layer.

    `layer_first` is, per id, the first stack-wide number of its layer (None: one layer).
    """
    ordered = np.sort(ids)
    distinct = np.ones(len(ordered), dtype=bool)
    distinct[1:] = ordered[1:] != ordered[:-1]
    used = ordered[distinct]
    rank = used.searchsorted(ids)
    if layer_first is not None:
        rank -= used.searchsorted(layer_first)
    return used, rank


def _renumber_few(ids: np.ndarray, total: int, layer_first: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """`_renumber` for ids below a small `total` (keys): a count per id instead of a sort."""
    used = np.bincount(ids, minlength=total).nonzero()[0]
    if len(used) == total and layer_first is None:
        return used, ids
    rank = used.searchsorted(ids)
    if layer_first is not None:
        rank -= used.searchsorted(layer_first)
    return used, rank


class LayerStack:
    """Layers whose features are numbered one after another ("stacked rows"), their names and
    attributes encoded once, so one pass encodes a tile of all of them.

    Keys and values are numbered across the stack too; a tile renumbers the ones each layer
    uses, so a layer carries only what its features in the tile need.
    """

    def __init__(self, names: list[str], tables: list[AttributeTable]) -> None:
        self.names = list(names)
        self.row_offsets = _offsets(np.array([len(t.codes) for t in tables], dtype=np.int64))
        self.layer_firsts = self.row_offsets[:-1].tolist()  # for finding a few rows' layers in Python
        self.key_offsets = _offsets(np.array([len(t.keys) for t in tables], dtype=np.int64))
        self.value_offsets = _offsets(np.array([len(t.values) for t in tables], dtype=np.int64))
        self.headers = [_field(15, 0) + _varint(2) + _bytes_field(1, name.encode("utf-8")) for name in names]
        self.keys = _Fields([_bytes_field(3, k.encode("utf-8")) for t in tables for k in t.keys])
        self.values = _Fields([_bytes_field(4, v) for t in tables for v in t.values])
        # every row's (key, value) pairs in key order, numbered stack-wide, and the first
        # numbers of the pair's layer (for renumbering within the layer)
        counts, keys, values, key_first, value_first = [], [], [], [], []
        for layer, table in enumerate(tables):
            present = table.codes >= 0
            counts.append(present.sum(axis=1))
            keys.append(present.nonzero()[1] + self.key_offsets[layer])
            values.append(table.codes[present] + self.value_offsets[layer])
            key_first.append(np.full(len(keys[-1]), self.key_offsets[layer]))
            value_first.append(np.full(len(keys[-1]), self.value_offsets[layer]))
        join = lambda parts: np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)  # noqa: E731
        self.tag_offsets = _offsets(join(counts))
        self.tag_keys, self.tag_values = join(keys), join(values)
        self.tag_key_first, self.tag_value_first = join(key_first), join(value_first)

    def __len__(self) -> int:
        return int(self.row_offsets[-1])

    def _tags(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The keys and values the rows use, and each row's tag integers.

        Returns the used keys and values (stack-wide numbers, ascending), the rows' tag
        integers (key, value pairs renumbered from 0 within each layer, concatenated) and
        per row how many integers and how many varint bytes it has.
        """
        first = self.tag_offsets[rows]
        counts = self.tag_offsets[rows + 1] - first
        pairs = _ranges(first, counts)
        if not len(pairs):
            none = np.zeros(len(rows), dtype=np.int64)
            return pairs, pairs, pairs, none, none
        one_layer = len(self.names) == 1
        used_keys, key_ids = _renumber_few(self.tag_keys[pairs], len(self.keys),
                                           None if one_layer else self.tag_key_first[pairs])
        used_values, value_ids = _renumber(self.tag_values[pairs], None if one_layer else self.tag_value_first[pairs])
        numbers = np.array([key_ids, value_ids]).T.ravel()
        lengths = _varint_lengths(numbers)
        byte_at = _offsets(lengths)[2 * _offsets(counts)]
        return used_keys, used_values, numbers, 2 * counts, byte_at[1:] - byte_at[:-1]


def family_of(geoms: np.ndarray) -> np.ndarray:
    """POINT, LINESTRING or POLYGON for each geometry (multi-parts with their singles; 0 for the rest)."""
    return _FAMILY_OF_TYPE[shapely.get_type_id(geoms)]


# by shapely type id: Point, LineString, LinearRing, Polygon, MultiPoint, MultiLineString, MultiPolygon,
# GeometryCollection (none); a missing geometry (-1) takes the last entry
_FAMILY_OF_TYPE = np.array([POINT, LINESTRING, LINESTRING, POLYGON, POINT, LINESTRING, POLYGON, 0], dtype=np.int64)


def tile_message(stack: LayerStack, rows: np.ndarray, geoms: np.ndarray, west: float, north: float,
                 unit: float, extent: int = 4096) -> bytes:
    """A Tile message with the features at `rows` of the stack (ascending), whose geometries are `geoms`.

    The geometries are put on the tile's grid: `extent` units across, from the corner
    (`west`, `north`), `unit` wide, y down. Points, lines and polygons (multi-parts
    included) may be mixed. A layer appears when some of its features are left on the
    grid; its feature ids are the rows within the layer, plus 1. Returns nothing when no
    feature is left.
    """
    n = len(rows)
    if not n:
        return b""
    types = shapely.get_type_id(geoms)
    origin, scale = np.array([west, north]), np.array([unit, -unit])
    extent_field = _EXTENT_4096 if extent == 4096 else _field(5, 0) + _varint(extent)
    few = _few_features_tile(stack, rows, geoms, types, origin, scale, extent_field)
    if few is not None:
        return few
    families = _FAMILY_OF_TYPE[types]
    per_family = np.bincount(families, minlength=4).tolist()
    if max(per_family[1:]) == n:
        geometry, geometry_counts = _geometry(geoms, types, per_family.index(n, 1), origin, scale)
    else:
        # families mixed (or unknown geometry types): each family's integers, then in feature order
        pieces, geometry_counts, order = [], np.zeros(n, dtype=np.int64), []
        for family in (POINT, LINESTRING, POLYGON):
            if per_family[family]:
                chosen = (families == family).nonzero()[0]
                stream, counts = _geometry(geoms[chosen], types[chosen], family, origin, scale)
                pieces.append(stream)
                geometry_counts[chosen] = counts
                order.append(chosen)
        grouped = np.concatenate(order) if order else np.zeros(0, dtype=np.int64)
        geometry_starts = np.zeros(n, dtype=np.int64)
        geometry_starts[grouped] = _starts(geometry_counts[grouped])
        geometry = np.concatenate(pieces)[_ranges(geometry_starts, geometry_counts)] if pieces else grouped
    present = geometry_counts > 0  # what is left on the tile grid
    if not present.all():
        if not present.any():
            return b""
        rows, families, geometry_counts = rows[present], families[present], geometry_counts[present]
    byte_at = _offsets(_varint_lengths(geometry))[_offsets(geometry_counts)]

    used_keys, used_values, tags, tag_counts, tag_lengths = stack._tags(rows)
    keys, values = stack.keys.pick(used_keys), stack.values.pick(used_values)
    one_layer = len(stack.names) == 1
    layer_of = None if one_layer else stack.row_offsets.searchsorted(rows, side="right") - 1
    features, bodies = _features(rows + 1 if one_layer else rows - stack.row_offsets[layer_of] + 1, families,
                                 tags, tag_counts, tag_lengths, geometry, geometry_counts, byte_at[1:] - byte_at[:-1])
    if one_layer:
        return _layer_field(b"".join((stack.headers[0], features, keys, values, extent_field)))
    # each layer's features, keys and values are consecutive runs of what was encoded
    feature_at = _offsets(1 + _varint_lengths(bodies) + bodies)
    layers = np.arange(len(stack.names) + 1)
    feature_cuts = feature_at[layer_of.searchsorted(layers)].tolist()
    key_cuts = stack.keys.cuts(used_keys, stack.key_offsets)
    value_cuts = stack.values.cuts(used_values, stack.value_offsets)
    tile = []
    for layer in np.unique(layer_of).tolist():
        tile.append(_layer_field(b"".join((
            stack.headers[layer], features[feature_cuts[layer]:feature_cuts[layer + 1]],
            keys[key_cuts[layer]:key_cuts[layer + 1]], values[value_cuts[layer]:value_cuts[layer + 1]],
            extent_field))))
    return b"".join(tile)


_EXTENT_4096 = _field(5, 0) + _varint(4096)
# Up to this many features and coordinates a tile costs less built feature by feature in
# plain Python (~8 us a feature) than as the array path's ~200 numpy calls (~100 us, hardly
# depending on the tile's size).
_FEW_FEATURES, _FEW_COORDINATES = 10, 64
_TYPE_AND_GEOMETRY_TAGS = {family: bytes([0x18, family, 0x22]) for family in (POINT, LINESTRING, POLYGON)}
_FAMILY_OF_TYPE_ID = _FAMILY_OF_TYPE.tolist()


def _few_features_tile(stack: LayerStack, rows: np.ndarray, geoms: np.ndarray, types: np.ndarray,
                       origin: np.ndarray, scale: np.ndarray, extent_field: bytes) -> bytes | None:
    """`tile_message` built feature by feature in plain Python, the same bytes, for a tile of
    a few single-part geometries (points, lines, polygons without holes); None for any other."""
    if len(geoms) > _FEW_FEATURES:
        return None
    type_ids = types.tolist()
    if min(type_ids) < 0 or max(type_ids) > 3 or (3 in type_ids and shapely.get_num_interior_rings(geoms).any()):
        return None
    coords, feature = shapely.get_coordinates(geoms, return_index=True)
    if len(coords) > _FEW_COORDINATES:
        return None
    grid = np.rint((coords - origin) / scale).astype(np.int64).tolist()
    ends = _running_total(np.bincount(feature, minlength=len(geoms))).tolist()
    # the rows' (key, value) pairs, gathered at once
    tag_firsts = stack.tag_offsets[rows]
    tag_counts = stack.tag_offsets[rows + 1] - tag_firsts
    pairs = _ranges(tag_firsts, tag_counts)
    tag_keys, tag_values = stack.tag_keys[pairs].tolist(), stack.tag_values[pairs].tolist()
    tag_ends = _running_total(tag_counts).tolist()
    layers: dict[int, list[tuple[int, int, bytes, list[int], list[int]]]] = {}
    start = tag_start = 0
    for row, type_id, end, tag_end in zip(rows.tolist(), type_ids, ends, tag_ends):
        geometry = _geometry_bytes(grid[start:end], type_id)
        start, tag_start, tags = end, tag_end, slice(tag_start, tag_end)
        if geometry is None:
            continue  # nothing left on the grid
        layer = bisect_right(stack.layer_firsts, row) - 1
        layers.setdefault(layer, []).append((row - stack.layer_firsts[layer] + 1, _FAMILY_OF_TYPE_ID[type_id],
                                             geometry, tag_keys[tags], tag_values[tags]))
    tile = []
    for layer, features in layers.items():
        # keys and values renumbered from 0 in the layer, in the order of their stack-wide numbers
        used_keys = sorted({k for _, _, _, keys, _ in features for k in keys})
        used_values = sorted({v for _, _, _, _, values in features for v in values})
        key_ids = {k: i for i, k in enumerate(used_keys)}
        value_ids = {v: i for i, v in enumerate(used_values)}
        encoded = [stack.headers[layer]]
        for feature_id, family, geometry, keys, values in features:
            tags = _varint_bytes([i for k, v in zip(keys, values) for i in (key_ids[k], value_ids[v])])
            body = b"".join((b"\x08", _varint(feature_id), b"\x12" + _varint(len(tags)) + tags if tags else b"",
                             _TYPE_AND_GEOMETRY_TAGS[family], _varint(len(geometry)), geometry))
            encoded += (b"\x12", _varint(len(body)), body)
        encoded += [stack.keys.fields[k] for k in used_keys]
        encoded += [stack.values.fields[v] for v in used_values]
        encoded.append(extent_field)
        tile.append(_layer_field(b"".join(encoded)))
    return b"".join(tile)


def _geometry_bytes(points: list[list[int]], type_id: int) -> bytes | None:
    """A single-part geometry's packed command integers from its grid coordinates (as
    `_geometry` makes them), or None when nothing of it is left on the grid."""
    if not points:
        return None
    if type_id == 0:
        (x, y), = points
        return _varint_bytes([_MOVE_TO_ONE, (x << 1) ^ (x >> 63), (y << 1) ^ (y >> 63)])
    closed = type_id == 3
    if closed:
        # exterior ring with positive area, see `_oriented`; its closing point is ClosePath's job
        if sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(points, points[1:])) <= 0:
            points = points[::-1]
        points = points[:-1]
    kept = [point for k, point in enumerate(points) if not k or point != points[k - 1]]
    if len(kept) < (3 if closed else 2):
        return None
    x, y = kept[0]
    head = [_MOVE_TO_ONE, (x << 1) ^ (x >> 63), (y << 1) ^ (y >> 63), ((len(kept) - 1) << 3) | _LINE_TO]
    steps = []
    for (x0, y0), (x1, y1) in zip(kept, kept[1:]):
        dx, dy = x1 - x0, y1 - y0
        steps += ((dx << 1) ^ (dx >> 63), (dy << 1) ^ (dy >> 63))
    if closed:
        steps.append(_CLOSE_PATH_ONE)
    # the head holds the absolute start, the steps are mostly one-byte deltas
    return _varint_bytes(head) + _varint_bytes(steps)


def _varint_bytes(values: list[int]) -> bytes:
    """The varints of a few non-negative integers, concatenated, in plain Python."""
    if max(values, default=0) < 0x80:
        return bytes(values)
    out = bytearray()
    for value in values:
        while value > 0x7F:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _layer_field(layer: bytes) -> bytes:
    """A Layer message as the `layers` field of a Tile."""
    return b"\x1a" + _varint(len(layer)) + layer


def _features(ids: np.ndarray, families: np.ndarray, tags: np.ndarray, tag_counts: np.ndarray,
              tag_lengths: np.ndarray, geometry: np.ndarray, geometry_counts: np.ndarray,
              geometry_lengths: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Layers' `features` fields, and the length of each Feature message's body.

    `tags` and `geometry` are the features' integers, concatenated (`*_counts` of them
    each, `*_lengths` bytes as varints). Per feature:
    0x12 len(body) | body = 0x08 id [0x12 len(tags) tags] 0x18 type 0x22 len(geometry) geometry.
    Every one of those bytes is a varint of one byte, so the field is laid out as integers
    and varint-packed in one pass.
    """
    has_tags = tag_counts > 0
    body = (_varint_lengths(ids) + has_tags * (1 + _varint_lengths(tag_lengths)) + tag_lengths
            + _varint_lengths(geometry_lengths) + geometry_lengths + 4)
    per_feature = 8 + 2 * has_tags + tag_counts + geometry_counts
    at = _starts(per_feature)
    out = np.empty(int(at[-1] + per_feature[-1]), dtype=np.int64)
    out[at] = 0x12
    out[at + 1] = body
    out[at + 2] = 0x08
    out[at + 3] = ids
    at = at + 4
    if has_tags.all():  # the common case: every feature has some attribute
        out[at] = 0x12
        out[at + 1] = tag_lengths
        at = at + 2
    elif has_tags.any():
        tagged = at[has_tags]
        out[tagged] = 0x12
        out[tagged + 1] = tag_lengths[has_tags]
        at = at + 2 * has_tags
    if len(tags):
        out[_ranges(at, tag_counts)] = tags
        at = at + tag_counts
    out[at] = 0x18
    out[at + 1] = families
    out[at + 2] = 0x22
    out[at + 3] = geometry_lengths
    out[_ranges(at + 4, geometry_counts)] = geometry
    return _varints(out).tobytes(), body
