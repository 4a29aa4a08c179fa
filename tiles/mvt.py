"""A vectorised Mapbox Vector Tile 2.1 encoder.

The geometry of all features of a tile, whatever their layer, is put on the tile's integer
grid, delta- and zigzag-encoded and varint-packed with numpy in one pass per geometry
family; attributes are encoded once per layer version, so a tile picks rows from tables
instead of doing Python work per vertex, per value or per layer (what makes the
pure-Python encoders slow). The output is the protobuf of the MVT 2.1 specification:
`Tile { repeated Layer layers = 3 }`, layers of version 2.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np
import pandas as pd
import shapely

__all__ = ["AttributeTable", "attribute_table", "LayerStack", "tile_message", "family_of",
           "POINT", "LINESTRING", "POLYGON"]

POINT, LINESTRING, POLYGON = 1, 2, 3
_MOVE_TO, _LINE_TO, _CLOSE_PATH = 1, 2, 7
# a varint of k bytes holds values below 2 ** (7 * k)
_VARINT_LIMITS = np.array([1 << (7 * k) for k in range(1, 10)], dtype=np.uint64)
_VARINT_SHIFTS = np.arange(0, 70, 7, dtype=np.uint64)
_VARINT_BYTE = np.arange(10)


def _varints(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Varint bytes of many unsigned integers, and how many bytes each took."""
    values = np.asarray(values, dtype=np.uint64)
    if not len(values):
        return np.zeros(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    width = max(1, (int(values.max()).bit_length() + 6) // 7)
    if width == 1:
        return values.astype(np.uint8), np.ones(len(values), dtype=np.int64)
    lengths = np.searchsorted(_VARINT_LIMITS[:width - 1], values, side="right") + 1
    groups = ((values[:, None] >> _VARINT_SHIFTS[:width]) & np.uint64(0x7F)).astype(np.uint8)
    byte = _VARINT_BYTE[:width]
    groups |= (byte < (lengths - 1)[:, None]).view(np.uint8) << 7  # the continuation bit
    return groups[byte < lengths[:, None]], lengths


def _varint(value: int) -> bytes:
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
    return ((v << 1) ^ (v >> 63)).astype(np.uint64)


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of `lengths` begins."""
    ends = np.cumsum(lengths)
    return ends - lengths


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of arange(starts[i], starts[i] + lengths[i]) for all i, in one pass."""
    total = int(lengths.sum())
    return np.repeat(starts - _starts(lengths), lengths) + np.arange(total)


def _gather(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of buffer[starts[i]:starts[i] + lengths[i]] for all i, in one pass."""
    return buffer[_ranges(starts, lengths)]


def _on_grid(coords: np.ndarray, west: float, north: float, unit: float) -> np.ndarray:
    """Coordinates as tile units from the tile's top-left corner, y down, rounded to the integer grid."""
    return np.round((coords - (west, north)) / (unit, -unit))


def _paths(geoms: np.ndarray, family: int, west: float, north: float,
           unit: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer coordinates to emit, and per path: its feature, its number of points, whether closed.

    Consecutive repeated points (what snapping to the grid leaves) are dropped, and so are
    rings left with fewer than three points and lines with fewer than two. Polygons are
    oriented on the grid: exterior rings with positive area in tile coordinates (clockwise
    on screen, y down), as MVT 2.1 wants; holes the other way.
    """
    if family == POINT:
        # a point is a path of one coordinate; the encoder gives a feature's points one MoveTo
        coords, path_feature = shapely.get_coordinates(geoms, return_index=True)
        coords = _on_grid(coords, west, north, unit).astype(np.int64)
        ones = np.ones(len(coords), dtype=np.int64)
        return coords, path_feature, ones, np.zeros(len(coords), dtype=bool)
    if family == POLYGON:
        # snapping can flip a thin ring, so the orientation is decided on the grid
        geoms = shapely.set_coordinates(geoms, _on_grid(shapely.get_coordinates(geoms), west, north, unit))
        geoms = shapely.orient_polygons(geoms, exterior_cw=False)
        parts, part_feature = shapely.get_parts(geoms, return_index=True)
        rings, ring_part = shapely.get_rings(parts, return_index=True)
        coords, coord_path = shapely.get_coordinates(rings, return_index=True)
        counts = np.bincount(coord_path, minlength=len(rings))
        keep = np.ones(len(coords), dtype=bool)
        keep[np.cumsum(counts) - 1] = False  # the closing point is ClosePath's job
        path_feature, closed, least = part_feature[ring_part], np.ones(len(rings), dtype=bool), 3
    else:
        parts, path_feature = shapely.get_parts(geoms, return_index=True)
        coords, coord_path = shapely.get_coordinates(parts, return_index=True)
        coords = _on_grid(coords, west, north, unit)
        keep = np.ones(len(coords), dtype=bool)
        closed, least = np.zeros(len(parts), dtype=bool), 2
    coords = coords.astype(np.int64)
    if len(coords) > 1:
        same = (coords[1:] == coords[:-1]).all(axis=1) & (coord_path[1:] == coord_path[:-1])
        keep[1:] &= ~same
    coords, coord_path = coords[keep], coord_path[keep]
    counts = np.bincount(coord_path, minlength=len(path_feature))
    usable = counts >= least
    if not usable.all():
        coords = coords[usable[coord_path]]
        path_feature, closed, counts = path_feature[usable], closed[usable], counts[usable]
    return coords, path_feature, counts, closed


def _geometry_streams(geoms: np.ndarray, family: int, west: float, north: float,
                      unit: float) -> tuple[np.ndarray, np.ndarray]:
    """The command integers of every feature, concatenated, and each feature's count of them."""
    n = len(geoms)
    coords, path_feature, counts, closed = _paths(geoms, family, west, north, unit)
    if not len(counts):
        return np.zeros(0, dtype=np.uint64), np.zeros(n, dtype=np.int64)
    # every feature starts its cursor at (0, 0); within a feature it carries from path to path
    path_start = _starts(counts)
    first_path_of_feature = np.ones(len(counts), dtype=bool)
    first_path_of_feature[1:] = path_feature[1:] != path_feature[:-1]
    previous = np.empty_like(coords)
    previous[1:] = coords[:-1]
    previous[path_start[first_path_of_feature]] = 0
    deltas = _zigzag(coords - previous).ravel()

    if family == POINT:
        # one MoveTo per feature with all its points
        feature_start = path_start[first_path_of_feature]
        per_feature_points = np.diff(np.append(feature_start, len(coords)))
        command_at = 2 * feature_start + np.arange(len(feature_start))
        stream = np.empty(len(deltas) + len(command_at), dtype=np.uint64)
        stream[command_at] = (per_feature_points.astype(np.uint64) << np.uint64(3)) | np.uint64(_MOVE_TO)
        mask = np.ones(len(stream), dtype=bool)
        mask[command_at] = False
        stream[mask] = deltas
        sizes = np.zeros(n, dtype=np.int64)
        sizes[path_feature[first_path_of_feature]] = 1 + 2 * per_feature_points
        return stream, sizes

    # per path: MoveTo(1) x y LineTo(n-1) (x y)*(n-1) [ClosePath]
    sizes_path = 2 + 2 * counts + closed
    starts = _starts(sizes_path)
    stream = np.empty(len(deltas) + 2 * len(counts) + int(closed.sum()), dtype=np.uint64)
    stream[starts] = (1 << 3) | _MOVE_TO
    stream[starts + 3] = ((counts - 1).astype(np.uint64) << np.uint64(3)) | np.uint64(_LINE_TO)
    close_at = (starts + sizes_path - 1)[closed]
    stream[close_at] = (1 << 3) | _CLOSE_PATH
    mask = np.ones(len(stream), dtype=bool)
    mask[starts] = False
    mask[starts + 3] = False
    mask[close_at] = False
    stream[mask] = deltas
    sizes = np.bincount(path_feature, weights=sizes_path, minlength=n).astype(np.int64)
    return stream, sizes


def _geometry_bytes(geoms: np.ndarray, family: int, west: float, north: float,
                    unit: float) -> tuple[np.ndarray, np.ndarray]:
    """Every feature's packed geometry command integers, concatenated, and each one's byte count."""
    stream, sizes = _geometry_streams(geoms, family, west, north, unit)
    stream_bytes, stream_lengths = _varints(stream)
    byte_ends = np.concatenate([[0], np.cumsum(stream_lengths)])[np.cumsum(sizes)]
    return stream_bytes, np.diff(byte_ends, prepend=0)


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
        self.lengths = np.array([len(f) for f in fields], dtype=np.int64)
        self.starts = _starts(self.lengths)
        self.buffer = np.frombuffer(b"".join(fields), dtype=np.uint8)

    def pick(self, chosen: np.ndarray) -> tuple[bytes, np.ndarray]:
        """The chosen fields concatenated, and where each one ends in that."""
        lengths = self.lengths[chosen]
        return _gather(self.buffer, self.starts[chosen], lengths).tobytes(), np.cumsum(lengths)


class LayerStack:
    """Layers whose features are numbered one after another ("stacked rows"), their names and
    attributes encoded once, so one pass encodes a tile of all of them.

    Keys and values are numbered across the stack too; a tile renumbers the ones each layer
    uses, so a layer carries only what its features in the tile need.
    """

    def __init__(self, names: list[str], tables: list[AttributeTable]) -> None:
        self.names = list(names)
        sizes = [len(t.codes) for t in tables]
        self.row_offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.key_offsets = np.concatenate([[0], np.cumsum([len(t.keys) for t in tables])]).astype(np.int64)
        self.value_offsets = np.concatenate([[0], np.cumsum([len(t.values) for t in tables])]).astype(np.int64)
        self.headers = [_field(15, 0) + _varint(2) + _bytes_field(1, name.encode("utf-8")) for name in names]
        self.keys = _Fields([_bytes_field(3, k.encode("utf-8")) for t in tables for k in t.keys])
        self.values = _Fields([_bytes_field(4, v) for t in tables for v in t.values])
        # every row's (key, value) pairs in key order, with stack-wide numbers
        counts, tag_keys, tag_values = [], [], []
        for table, key_offset, value_offset in zip(tables, self.key_offsets, self.value_offsets):
            present = table.codes >= 0
            counts.append(present.sum(axis=1))
            tag_keys.append(np.nonzero(present)[1] + key_offset)
            tag_values.append(table.codes[present] + value_offset)
        self.tag_starts = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.int64)
        self.tag_keys = np.concatenate(tag_keys).astype(np.int64)
        self.tag_values = np.concatenate(tag_values).astype(np.int64)

    def __len__(self) -> int:
        return int(self.row_offsets[-1])

    def _tags(self, rows: np.ndarray, layer_of: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The keys and values the rows use, and each row's packed tag integers.

        Returns the used keys and values (stack-wide numbers, ascending) and the rows' tag
        bytes (concatenated, with each row's byte count), with keys and values renumbered
        from 0 within each layer.
        """
        counts = self.tag_starts[rows + 1] - self.tag_starts[rows]
        pairs = _ranges(self.tag_starts[rows], counts)
        pair_layer = np.repeat(layer_of, counts)
        numbered = []
        for ids, offsets, total in ((self.tag_keys[pairs], self.key_offsets, len(self.keys.lengths)),
                                    (self.tag_values[pairs], self.value_offsets, len(self.values.lengths))):
            used = np.zeros(total, dtype=bool)
            used[ids] = True
            used_before = np.concatenate([[0], np.cumsum(used)])  # used_before[i]: used ones below i
            numbered.append((used_before[ids] - used_before[offsets[pair_layer]], np.flatnonzero(used)))
        (key_ids, used_keys), (value_ids, used_values) = numbered
        encoded, lengths = _varints(np.column_stack([key_ids, value_ids]).ravel())
        ends = np.concatenate([[0], np.cumsum(lengths)])[2 * np.cumsum(counts)]
        return used_keys, used_values, encoded, np.diff(ends, prepend=0)


def family_of(geoms: np.ndarray) -> np.ndarray:
    """POINT, LINESTRING or POLYGON for each geometry (multi-parts with their singles; 0 for the rest)."""
    return _FAMILY_OF_TYPE[shapely.get_type_id(geoms) + 1]


_FAMILY_OF_TYPE = np.array([0, POINT, LINESTRING, LINESTRING, POLYGON, POINT, LINESTRING, POLYGON, 0], dtype=np.int64)


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
    families = family_of(geoms)
    # every feature's geometry bytes, in feature order
    geometry_parts, geometry_lengths = [], np.zeros(n, dtype=np.int64)
    order = []
    for family in (POINT, LINESTRING, POLYGON):
        chosen = np.flatnonzero(families == family)
        if len(chosen):
            data, lengths = _geometry_bytes(geoms[chosen], family, west, north, unit)
            geometry_parts.append(data)
            geometry_lengths[chosen] = lengths
            order.append(chosen)
    present = geometry_lengths > 0  # what is left on the tile grid
    if not present.any():
        return b""
    geometry = np.concatenate(geometry_parts)
    # starts of each feature's geometry in `geometry`, which is grouped by family
    grouped = np.concatenate(order)
    geometry_starts = np.zeros(n, dtype=np.int64)
    geometry_starts[grouped] = _starts(geometry_lengths[grouped])

    rows = rows[present]
    layer_of = np.searchsorted(stack.row_offsets, rows, side="right") - 1
    used_keys, used_values, tag_bytes, tag_lengths = stack._tags(rows, layer_of)
    features, feature_ends = _features(rows - stack.row_offsets[layer_of] + 1, families[present],
                                       tag_bytes, tag_lengths, geometry, geometry_starts[present],
                                       geometry_lengths[present])
    # each layer's features, keys and values are consecutive runs of what was encoded
    layers = np.arange(len(stack.names) + 1)
    feature_cuts = np.concatenate([[0], feature_ends])[np.searchsorted(layer_of, layers)].tolist()
    keys, key_ends = stack.keys.pick(used_keys)
    key_cuts = np.concatenate([[0], key_ends])[np.searchsorted(used_keys, stack.key_offsets)].tolist()
    values, value_ends = stack.values.pick(used_values)
    value_cuts = np.concatenate([[0], value_ends])[np.searchsorted(used_values, stack.value_offsets)].tolist()
    extent_field = _field(5, 0) + _varint(extent)
    tile = bytearray()
    for layer in np.unique(layer_of).tolist():
        body = b"".join((stack.headers[layer], features[feature_cuts[layer]:feature_cuts[layer + 1]],
                         keys[key_cuts[layer]:key_cuts[layer + 1]],
                         values[value_cuts[layer]:value_cuts[layer + 1]], extent_field))
        tile += _field(3, 2) + _varint(len(body)) + body
    return bytes(tile)


_CONSTANTS = np.frombuffer(bytes([0x12, 0x08, 0x18, 0x22, 0x00, POINT, LINESTRING, POLYGON]), dtype=np.uint8)
_FEATURE_TAG, _ID_TAG, _TYPE_TAG, _GEOMETRY_TAG = 0, 1, 2, 3  # positions in _CONSTANTS


def _features(ids: np.ndarray, families: np.ndarray, tag_bytes: np.ndarray, tag_lengths: np.ndarray,
              geometry: np.ndarray, geometry_starts: np.ndarray, geometry_lengths: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Every `features` field of a layer's Feature messages, assembled with array gathers, and where each ends.

    Per feature: 0x12 len(body) | body = 0x08 id [0x12 len(tags) tags] 0x18 type 0x22 len(geom) geom.
    """
    n = len(ids)
    tag_starts = _starts(tag_lengths)
    id_bytes, id_lengths = _varints(ids)
    tag_len_bytes, tag_len_lengths = _varints(tag_lengths)
    geom_len_bytes, geom_len_lengths = _varints(geometry_lengths)
    has_tags = tag_lengths > 0
    body = (1 + id_lengths + np.where(has_tags, 1 + tag_len_lengths + tag_lengths, 0)
            + 2 + 1 + geom_len_lengths + geometry_lengths)
    body_len_bytes, body_len_lengths = _varints(body)
    # one buffer holding every source, and where each source begins in it
    sources = [_CONSTANTS, body_len_bytes, id_bytes, tag_len_bytes, tag_bytes, geom_len_bytes, geometry]
    base = np.cumsum([0] + [len(b) for b in sources[:-1]])
    buffer = np.concatenate(sources)

    def at(source: int, lengths: np.ndarray) -> np.ndarray:
        return base[source] + _starts(lengths)

    constant = lambda k: np.full(n, base[0] + k)  # noqa: E731
    one = np.ones(n, dtype=np.int64)
    starts = np.column_stack([
        constant(_FEATURE_TAG), at(1, body_len_lengths), constant(_ID_TAG), at(2, id_lengths),
        constant(_FEATURE_TAG), at(3, tag_len_lengths), base[4] + tag_starts,
        constant(_TYPE_TAG), base[0] + 4 + families, constant(_GEOMETRY_TAG), at(5, geom_len_lengths),
        base[6] + geometry_starts])
    lengths = np.column_stack([
        one, body_len_lengths, one, id_lengths,
        has_tags.astype(np.int64), np.where(has_tags, tag_len_lengths, 0), tag_lengths,
        one, one, one, geom_len_lengths, geometry_lengths])
    return _gather(buffer, starts.ravel(), lengths.ravel()).tobytes(), np.cumsum(1 + body_len_lengths + body)
