"""The MVT encoder on its own: varints, stacked layers, geometry on the tile grid, read back with mapbox-vector-tile."""

from __future__ import annotations

import mapbox_vector_tile
import numpy as np
import pytest
import shapely
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import tiles.mvt
from tiles.mvt import LayerStack, _oriented, _varint, _varint_lengths, _varints, attribute_table, tile_message

EXTENT = 4096

# tile coordinates, y up as mapbox-vector-tile decodes them: the grid starts at (0, EXTENT), one unit a cell
GEOMETRIES = {
    "point": shapely.Point(10, 20),
    "multipoint": shapely.MultiPoint([(5, 5), (6, 7), (4000, 30)]),
    "line": shapely.LineString([(0, 0), (100, 50), (4096, 4096)]),
    "multiline": shapely.MultiLineString([[(1, 1), (2, 9)], [(30, 30), (60, 10), (90, 90)]]),
    "polygon": shapely.Polygon([(10, 10), (100, 10), (100, 100), (10, 100)]),
    "polygon with a hole": shapely.Polygon([(10, 10), (100, 10), (100, 100), (10, 100)],
                                           [[(20, 20), (20, 40), (40, 40), (40, 20)]]),
    "multipolygon": shapely.MultiPolygon([shapely.box(0, 0, 50, 50), shapely.box(200, 200, 300, 260)]),
    "clockwise polygon": shapely.Polygon([(10, 10), (10, 100), (100, 100), (100, 10)]),
}


def _table(columns: dict[str, list]):
    n = len(next(iter(columns.values())))
    return attribute_table({k: np.array(v, dtype=object) for k, v in columns.items()}, n)


def _encode(layers: list[tuple[str, list[shapely.Geometry], dict[str, list]]]) -> bytes:
    """A tile of whole layers on the grid of GEOMETRIES."""
    stack = LayerStack([name for name, _, _ in layers], [_table(columns) for _, _, columns in layers])
    geoms = np.array([g for _, layer_geoms, _ in layers for g in layer_geoms], dtype=object)
    return tile_message(stack, np.arange(len(geoms)), geoms, 0.0, float(EXTENT), 1.0, extent=EXTENT)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1) | st.integers(min_value=0, max_value=300),
                max_size=600))
def test_varints_are_the_protobuf_encoding_of_each_value(values):
    array = np.array(values, dtype=np.int64)
    assert _varints(array).tobytes() == b"".join(_varint(v) for v in values)
    assert _varint_lengths(array).tolist() == [len(_varint(v)) for v in values]


@pytest.mark.parametrize("bits", [7, 14, 21, 63])
def test_long_arrays_of_varints_are_the_protobuf_encoding_too(bits):
    # long arrays take another route (mostly one-byte values, a few longer)
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 128, 5000, dtype=np.int64)
    longer = rng.random(5000) < 0.1
    values[longer] = rng.integers(0, 2**bits - 1, longer.sum(), dtype=np.int64, endpoint=True)
    assert _varints(values).tobytes() == b"".join(_varint(v) for v in values.tolist())


@pytest.mark.parametrize("kind", sorted(GEOMETRIES))
def test_a_feature_decodes_to_its_geometry(kind):
    geometry = GEOMETRIES[kind]
    layers = mapbox_vector_tile.decode(_encode([("things", [geometry], {"name": [kind]})]))
    (feature,) = layers["things"]["features"]
    assert feature["properties"] == {"name": kind}
    assert feature["id"] == 1
    assert shapely.geometry.shape(feature["geometry"]).normalize().equals(geometry.normalize())


def test_polygon_rings_are_wound_as_mvt_wants_whatever_their_input_order():
    # MVT 2.1: in tile coordinates (y down) an exterior ring has positive area by the surveyor's
    # formula (clockwise on screen), a hole negative; shapely's is_ccw is that sign
    layers = mapbox_vector_tile.decode(_encode([("areas", [GEOMETRIES["clockwise polygon"],
                                                           GEOMETRIES["polygon with a hole"]], {"n": [1, 2]})]),
                                       default_options={"y_coord_down": True})
    for feature in layers["areas"]["features"]:
        exterior, *holes = (shapely.LinearRing(ring) for ring in feature["geometry"]["coordinates"])
        assert exterior.is_ccw
        assert holes == [] or not any(hole.is_ccw for hole in holes)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(-60, 60), st.integers(-60, 60)), min_size=3, max_size=12, unique=True),
       st.booleans(), st.booleans())
def test_simple_polygons_are_oriented_as_geos_orients_them(points, reversed_input, with_hole):
    # a star-shaped ring around a point none of them is on is simple
    ring = sorted(points, key=lambda p: np.arctan2(p[1] - 0.25, p[0] - 0.25), reverse=reversed_input)
    holes = [[(-1, -1), (-1, 1), (1, 1), (1, -1)]] if with_hole else []
    polygon = shapely.Polygon(ring, holes)
    assume(polygon.is_valid and polygon.area > 0)
    geos = shapely.get_coordinates(shapely.orient_polygons(polygon, exterior_cw=False))
    rings = shapely.get_rings(polygon)
    coords, ring_of = shapely.get_coordinates(rings, return_index=True)
    ours = _oriented(coords.astype(np.int64), ring_of, np.bincount(ring_of),
                     np.arange(len(rings)) == 0)
    assert ours.tolist() == geos.astype(np.int64).tolist()


def test_a_ring_that_snapping_made_self_intersecting_is_wound_by_its_area():
    # GEOS's orientation test (the highest vertex's turn) calls this ring clockwise on the
    # grid, its area says counter-clockwise; decoders go by the area, so the second part
    # of the multipolygon must come out with an exterior's sign, not as a hole of the first
    bow = [(205, 236), (211, 202), (223, 229), (238, 241), (250, 234)]  # on the grid, y down
    second = shapely.Polygon([(x, EXTENT - y) for x, y in bow])
    tile = _encode([("areas", [shapely.MultiPolygon([shapely.box(0, 0, 100, 100), second])], {"uid": ["m"]})])
    (feature,) = mapbox_vector_tile.decode(tile)["areas"]["features"]
    assert feature["geometry"]["type"] == "MultiPolygon"
    assert [len(polygon) for polygon in feature["geometry"]["coordinates"]] == [1, 1]


def test_a_tile_of_stacked_layers_decodes_like_each_layer_alone():
    layers = [
        ("points", [GEOMETRIES["point"], GEOMETRIES["multipoint"]], {"uid": ["p1", "p2"], "kind": ["lamp", None]}),
        ("lines", [GEOMETRIES["line"], GEOMETRIES["multiline"]], {"uid": ["l1", "l2"], "d": [300, 300.5]}),
        ("empty", [shapely.Polygon()], {"uid": ["e1"]}),
        ("areas", [GEOMETRIES["polygon with a hole"], GEOMETRIES["multipolygon"]],
         {"uid": ["a1", "p1"], "smart": [True, False], "kind": ["lamp", "park"]}),
    ]
    together = mapbox_vector_tile.decode(_encode(layers))
    alone = {}
    for layer in layers:
        alone.update(mapbox_vector_tile.decode(_encode([layer])))
    assert together == alone
    assert list(together) == ["points", "lines", "areas"]  # a layer with nothing on the grid is left out
    assert together["areas"]["features"][1]["properties"] == {"uid": "p1", "smart": False, "kind": "park"}


def test_features_that_collapse_on_the_grid_leave_out_their_values_too():
    sliver = shapely.Polygon([(10, 10), (10.2, 10), (10.2, 10.3), (10, 10)])  # inside one grid cell
    tile = _encode([("areas", [GEOMETRIES["polygon"], sliver], {"uid": ["kept", "only-the-sliver"]})])
    assert [f["properties"] for f in mapbox_vector_tile.decode(tile)["areas"]["features"]] == [{"uid": "kept"}]
    assert b"only-the-sliver" not in tile


def test_a_tile_with_nothing_left_on_the_grid_is_empty():
    assert _encode([("areas", [shapely.Polygon([(10, 10), (10.2, 10), (10.2, 10.3), (10, 10)])], {"uid": ["x"]})]) == b""


# coordinates on a few grid cells, so that snapping repeats points, collapses rings and flips them
_NEAR = st.floats(min_value=-3, max_value=12, allow_nan=False).map(lambda v: round(v, 1))
_POINTS = st.lists(st.tuples(_NEAR, _NEAR), min_size=3, max_size=7)
_SIMPLE_GEOMETRIES = st.one_of(
    st.tuples(_NEAR, _NEAR).map(lambda p: shapely.Point(p)),
    _POINTS.map(shapely.LineString),
    _POINTS.map(lambda points: shapely.Polygon(points)),  # any ring, self-intersecting ones too
    st.just(shapely.Polygon()),
)
_ATTRIBUTES = st.one_of(st.none(), st.sampled_from(["a", "b"]), st.integers(-2, 300), st.sampled_from([0.5, True]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.tuples(_SIMPLE_GEOMETRIES, _ATTRIBUTES, _ATTRIBUTES), min_size=1, max_size=3),
                min_size=1, max_size=3))
def test_a_tile_of_a_few_features_is_the_same_bytes_built_in_python_or_with_arrays(layers):
    names = [f"layer{i}" for i in range(len(layers))]
    stack = LayerStack(names, [_table({"kind": [a for _, a, _ in layer], "size": [b for _, _, b in layer]})
                               for layer in layers])
    geoms = np.array([g for layer in layers for g, _, _ in layer], dtype=object)
    rows = np.arange(len(geoms))
    in_python = tile_message(stack, rows, geoms, -1.0, 10.0, 1.0)
    few, tiles.mvt._FEW_FEATURES = tiles.mvt._FEW_FEATURES, 0  # no tile is few enough
    try:
        with_arrays = tile_message(stack, rows, geoms, -1.0, 10.0, 1.0)
    finally:
        tiles.mvt._FEW_FEATURES = few
    assert in_python == with_arrays
