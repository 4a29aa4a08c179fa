"""Coverage indicators on layouts whose answers can be written down, and their invariants.

Layouts sit on the central meridian of EPSG:4549 (x = 500 km), where the Gauss-Krüger
scale factor is 1 to 1e-10, so a camera's 40 m range is a 40 m disc in the CRS too.
"""

from __future__ import annotations

import json
import math

import geopandas as gpd
import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pyarrow as pa

from twin.areas import clip_polygons, union_area, union_parts
from twin.columns import GeometryColumn
from twin.discs import covered_area
from twin.sensors import SensorRegistry
from twin.indicators import (MissingLayer, ModelData, Options, compute, compute_all, load_targets, parse_at,
                             parse_window)

CRS = "EPSG:4549"
X0, Y0 = 500_000.0, 4_150_000.0
REL = 1e-9


def gdf(geoms, crs=CRS, **columns) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=list(geoms), crs=crs)


def box(x0, y0, x1, y1) -> shapely.Polygon:
    return shapely.box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


def pt(x, y) -> shapely.Point:
    return shapely.Point(X0 + x, Y0 + y)


def lens(r: float, d: float) -> float:
    """Area where two discs of radius r, centres d apart, overlap."""
    return 2 * r * r * math.acos(d / (2 * r)) - d / 2 * math.sqrt(4 * r * r - d * d)


def data(**frames) -> ModelData:
    return ModelData(CRS, frames)


def value(name, model, **kwargs):
    return compute(name, model, **kwargs).value


# exact values ------------------------------------------------------------------------------


def test_topographic_coverage_counts_surveyed_large_scale_sheets_once_and_names_the_missing_one():
    planning = gdf([box(0, 0, 1000, 1000)], name=["规划区"])
    sheet_boxes = [box(0, 0, 500, 500), box(500, 0, 1000, 500), box(0, 500, 500, 1000),
                   box(0, 0, 500, 500),          # surveyed twice: counts once
                   box(250, 250, 750, 750),      # overlaps three others: adds only its part in the gap
                   box(500, 500, 1000, 1000)]    # 1:5000 sheet: not large-scale, does not count
    sheets = gdf(sheet_boxes, scale=[1000, 1000, "1:1000", 1000, "1:2000", 5000], sheet_id=["a", "b", "c", "a", "d", "e"])
    model = data(planning_area=planning, map_sheet=sheets)
    result = compute("topo_map_coverage", model)
    assert result.value == pytest.approx((750_000 + 250 * 250) / 1_000_000, rel=REL)
    assert result.numerator == pytest.approx(812_500, rel=REL)
    assert result.denominator == pytest.approx(1_000_000, rel=REL)
    assert result.met is False and result.margin == pytest.approx(0.8125 - 0.9, rel=REL)
    # the missing standard 1:1000 sheet, named by its south-west corner (northing-easting, km)
    assert result.gap[0]["sheet_id"] == "4150.5-500.5"
    assert result.gap[0]["adds_m2"] == pytest.approx(250_000 - 250 * 250, rel=REL)
    only_500 = compute("topo_map_coverage", model, options=Options(scales=(500,)))
    assert only_500.value == 0.0


def test_pipeline_monitoring_by_pipe_id_and_snapped_sensor_within_the_window():
    pipes = gdf([shapely.LineString([(X0, Y0), (X0 + 100, Y0)]),
                 shapely.LineString([(X0, Y0 + 50), (X0 + 200, Y0 + 50)]),
                 shapely.LineString([(X0, Y0 + 100), (X0 + 300, Y0 + 100)])],
                uid=["pipe.a", "pipe.b", "pipe.c"], utility=["water", "water", "gas"])
    sensors = gdf([pt(10, 0), pt(150, 104)], sensor_id=["S1", "S2"], pipe_id=["a", None],
                  property=["pressure", "pressure"], unit=["MPa", "MPa"])
    hour = 3_600_000
    at = 1_800_000_000_000
    readings = {"S1": [at - hour], "S2": [at - 30 * hour]}

    def reporting(start, end):
        return {s for s, times in readings.items() if any(start < t <= end for t in times)}

    model = ModelData(CRS, {"pipe": pipes, "sensor": sensors}, reporting)
    recent = compute("pipeline_monitoring", model, options=Options(at_ms=at, window_ms=24 * hour))
    assert recent.value == pytest.approx(100 / 600, rel=REL)
    assert recent.details["by_utility"]["water"]["value"] == pytest.approx(100 / 300, rel=REL)
    assert recent.details["by_utility"]["gas"]["value"] == 0.0
    # the longest unmonitored segment of each utility is named
    assert {(g["uid"], g["utility"]) for g in recent.gap} == {("pipe.b", "water"), ("pipe.c", "gas")}
    longer = compute("pipeline_monitoring", model, options=Options(at_ms=at, window_ms=48 * hour))
    assert longer.value == pytest.approx(400 / 600, rel=REL)
    installed = compute("pipeline_monitoring", model, options=Options(window_ms=None))
    assert installed.value == pytest.approx(400 / 600, rel=REL)


def test_smart_shares_accept_booleans_numbers_and_chinese_words():
    lamps = gdf([pt(k, 0) for k in range(10)], smart=[True] * 8 + ["是"] + [False])
    communities = gdf([box(0, 0, 10, 10), box(20, 0, 30, 10), pt(50, 5)], smart=[1, 0, "false"])
    schools = gdf([pt(0, 0), pt(1, 1), pt(2, 2), pt(3, 3), pt(4, 4)], smart=["yes", "true", "智慧", "no", None])
    model = data(lamp=lamps, community=communities, school=schools)
    lighting = compute("smart_lighting", model)
    assert (lighting.value, lighting.numerator, lighting.denominator, lighting.met) == (0.9, 9, 10, True)
    assert value("smart_community", model) == pytest.approx(1 / 3, rel=REL)
    assert value("smart_campus", model) == pytest.approx(3 / 5, rel=REL)


def test_weather_station_spacing_and_the_farthest_point():
    urban = gdf([box(0, 0, 10_000, 10_000)])
    stations = gdf([pt(2500, 2500), pt(7500, 2500), pt(2500, 7500), pt(7500, 7500), pt(20_000, 0)])
    result = compute("weather_station_spacing", data(urban_area=urban, weather_station=stations))
    assert result.value == pytest.approx(5.0, rel=REL)  # sqrt(100 km² / 4 inside)
    assert result.met is False  # the target is strictly under 5 km
    assert result.details["max_distance_km"] == pytest.approx(2.5 * math.sqrt(2), rel=REL)
    one = compute("weather_station_spacing", data(urban_area=urban, weather_station=gdf([pt(0, 0)])))
    assert one.value == pytest.approx(10.0, rel=REL)
    assert one.details["max_distance_km"] == pytest.approx(10 * math.sqrt(2), rel=REL)


def test_video_coverage_measures_discs_exactly():
    key = gdf([box(0, 0, 100, 100)])
    cameras = gdf([pt(0, 0),                 # a quarter disc inside
                   pt(70, 70), pt(70, 70),   # a whole disc, and its duplicate
                   pt(150, 50),              # touches the square's edge: covers nothing
                   pt(30, 60), pt(40, 60)],  # two overlapping discs
                  range_m=[40.0, 20.0, 20.0, 50.0, 8.0, 8.0])
    result = compute("video_coverage", data(key_area=key, camera=cameras))
    expected = math.pi * 40 ** 2 / 4 + math.pi * 20 ** 2 + 2 * math.pi * 8 ** 2 - lens(8, 10)
    assert result.numerator == pytest.approx(expected, rel=REL)
    assert result.value == pytest.approx(expected / 10_000, rel=REL)
    assert result.gap and result.gap[0]["area_m2"] > 0
    assert result.measured.uncovered.area == pytest.approx(10_000 - expected, rel=2e-3)  # drawn with polygons


def test_fiveg_coverage_over_key_areas_inside_the_urban_area():
    key = gdf([box(0, 0, 100, 100), box(200, 0, 300, 100)])
    urban = gdf([box(-50, -50, 150, 150)])
    stations = gdf([pt(50, 50), pt(250, 50)], range_m=[1000.0, 1000.0])
    result = compute("fiveg_coverage", data(key_area=key, urban_area=urban, base_station=stations))
    assert (result.numerator, result.denominator, result.value) == (pytest.approx(10_000), pytest.approx(10_000), 1.0)


def test_green_coverage_unions_overlapping_green_before_intersecting():
    urban = gdf([box(0, 0, 100, 100)])
    green = gdf([box(0, 0, 50, 50), box(25, 0, 75, 50), box(25, 0, 75, 50), box(90, 90, 200, 200)])
    result = compute("green_coverage", data(urban_area=urban, green=green))
    assert result.value == pytest.approx((75 * 50 + 10 * 10) / 10_000, rel=REL)


def test_energy_metering_among_key_buildings():
    buildings = gdf([box(k * 20, 0, k * 20 + 10, 10) for k in range(6)],
                    energy_key=[True, True, True, True, False, False],
                    energy_metered=[True, True, True, False, True, True])
    result = compute("energy_metering", data(building=buildings))
    assert (result.value, result.numerator, result.denominator) == (0.75, 3, 4)
    assert len(result.gap) == 1


def test_combined_sewer_share_by_length():
    pipes = gdf([shapely.LineString([(X0, Y0), (X0 + n, Y0)]) for n in (100, 100, 50, 500)],
                utility=["storm", "sewage", "combined", "water"])
    result = compute("combined_sewer_share", data(pipe=pipes))
    assert result.value == pytest.approx(50 / 250, rel=REL)
    assert result.met is False
    assert value("combined_sewer_share", data(pipe=pipes.iloc[[0, 1, 3]])) == 0.0


def test_bim_coverage_counts_footprint_area_once():
    buildings = gdf([box(0, 0, 10, 10), box(20, 0, 30, 10)])
    bim = gdf([box(0, 0, 10, 10), box(5, 0, 10, 10)])
    assert value("bim_coverage", data(building=buildings, bim=bim)) == pytest.approx(0.5, rel=REL)


def test_per_district_values_clip_areas_and_count_points_by_containment():
    districts = gdf([box(0, 0, 50, 100), box(50, 0, 100, 100), box(500, 500, 600, 600)], name=["west", "east", "far"])
    key = gdf([box(0, 0, 100, 100)])
    cameras = gdf([pt(25, 50)], range_m=[10.0])
    lamps = gdf([pt(10, 10), pt(20, 10), pt(60, 10)], smart=[True, False, True])
    model = data(district=districts, key_area=key, camera=cameras, lamp=lamps)
    video = compute("video_coverage", model, by_district=True)
    west, east, far = video.by
    assert (west.district, east.district, far.district) == ("west", "east", "far")
    assert west.value == pytest.approx(math.pi * 100 / 5000, rel=REL)
    assert east.value == 0.0
    assert far.value is None and far.met is None and "not measurable" in far.reason
    lighting = compute("smart_lighting", model, by_district=True)
    assert [d.value for d in lighting.by] == [0.5, 1.0, None]
    json.dumps([video.to_dict(CRS), lighting.to_dict(CRS)], allow_nan=False)  # no NaN anywhere


def test_an_empty_denominator_is_not_measurable_never_nan():
    result = compute("smart_lighting", data(lamp=gdf([], smart=[])))
    assert result.value is None and result.met is None and result.stars is None
    assert result.reason == "not measurable: no lamp here"
    spacing = compute("weather_station_spacing", data(urban_area=gdf([box(0, 0, 10, 10)]),
                                                      weather_station=gdf([pt(500, 500)])))
    assert spacing.value is None and "no weather station" in spacing.reason
    json.dumps(result.to_dict(CRS), allow_nan=False)


def test_a_missing_layer_or_field_names_what_the_indicator_needs():
    with pytest.raises(MissingLayer, match="video_coverage needs a layer of kind 'camera'"):
        compute("video_coverage", data(key_area=gdf([box(0, 0, 1, 1)])))
    with pytest.raises(MissingLayer, match="'range_m'"):
        compute("video_coverage", data(key_area=gdf([box(0, 0, 1, 1)]), camera=gdf([pt(0, 0)])))
    with pytest.raises(MissingLayer, match="energy_key"):
        compute("energy_metering", data(building=gdf([box(0, 0, 1, 1)])))
    skipped: list[str] = []
    results = compute_all(data(lamp=gdf([pt(0, 0)], smart=[True]), building=gdf([box(0, 0, 1, 1)])), skipped=skipped)
    assert [r.indicator for r in results] == ["smart_lighting"]
    assert any("energy_key" in s for s in skipped)


def test_targets_file_overrides_entry_by_entry(tmp_path):
    (tmp_path / "indicators.toml").write_text('[smart_lighting]\ntarget = 0.95\n', encoding="utf-8")
    targets = load_targets(tmp_path)
    assert targets["smart_lighting"].target == 0.95
    assert targets["smart_lighting"].compare == ">="  # the rest from the shipped file
    lamps = gdf([pt(k, 0) for k in range(10)], smart=[True] * 9 + [False])
    assert compute("smart_lighting", data(lamp=lamps), targets=targets).met is False
    (tmp_path / "indicators.toml").write_text('[smart_lighting]\ncompare = "=="\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"\[smart_lighting\]: compare must be one of"):
        load_targets(tmp_path)
    (tmp_path / "indicators.toml").write_text('[smart_lights]\ntarget = 1\n', encoding="utf-8")
    with pytest.raises(ValueError, match="unknown indicator"):
        load_targets(tmp_path)


def test_time_and_window_parsing_reject_what_they_cannot_read():
    assert parse_window("24h") == 86_400_000 and parse_window("none") is None
    with pytest.raises(ValueError, match="not a duration"):
        parse_window("yesterday")
    assert parse_at("2026-01-01T00:00:00Z") == 1_767_225_600_000
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        parse_at("the first of May")


# invariants --------------------------------------------------------------------------------

coords = st.floats(0, 200, allow_nan=False, allow_infinity=False)
radii = st.floats(1, 80, allow_nan=False, allow_infinity=False)
discs = st.lists(st.tuples(coords, coords, radii), min_size=1, max_size=12)
rects = st.lists(st.tuples(coords, coords, st.floats(5, 120), st.floats(5, 120)), min_size=1, max_size=5)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _key(rectangles):
    return gdf([box(x, y, x + w, y + h) for x, y, w, h in rectangles])


def _cameras(circles):
    return gdf([pt(x, y) for x, y, _ in circles], range_m=[r for _, _, r in circles])


@SETTINGS
@given(rects, discs, discs)
def test_disc_coverage_is_a_ratio_that_only_grows_and_ignores_duplicates(rectangles, circles, more):
    key = _key(rectangles)
    v1 = value("video_coverage", data(key_area=key, camera=_cameras(circles)))
    assert 0.0 <= v1 <= 1.0
    v2 = value("video_coverage", data(key_area=key, camera=_cameras(circles + more)))
    assert v2 >= v1 - 1e-12
    v3 = value("video_coverage", data(key_area=key, camera=_cameras(circles + circles[:1])))
    assert v3 == pytest.approx(v1, rel=1e-9, abs=1e-12)


@SETTINGS
@given(rects, discs)
def test_exact_disc_area_agrees_with_fine_polygons(rectangles, circles):
    region = shapely.union_all([shapely.box(x, y, x + w, y + h) for x, y, w, h in rectangles])
    centers = np.array([(x, y) for x, y, _ in circles])
    r = np.array([c[2] for c in circles])
    exact = covered_area(region, centers, r)
    gons = shapely.buffer(shapely.points(centers), r, quad_segs=256)
    approx = region.intersection(shapely.union_all(gons)).area
    # An inscribed 1024-gon misses a segment of height s = r(1 - cos(pi/1024)) under each
    # chord: 2/3 s of area per metre of boundary. So the exact area exceeds the polygons' by
    # at most 2/3 s times the length of polygon boundary near the region (thin slivers of a
    # large disc have a lot of boundary for little area, hence no relative bound).
    sagitta = r * (1 - np.cos(np.pi / 1024))
    boundary = np.array([shapely.intersection(g.exterior, region.buffer(s)).length for g, s in zip(gons, sagitta)])
    shortfall = float(np.sum(2 / 3 * sagitta * boundary))
    assert exact >= approx - 1e-9 * max(exact, 1)
    assert exact - approx <= 1.1 * shortfall + 1e-9 * max(exact, 1)


@SETTINGS
@given(rects, rects, st.floats(0.1, 0.9))
def test_area_coverage_unchanged_when_a_covering_polygon_is_split_or_duplicated(urban_rects, green_rects, cut):
    urban = _key(urban_rects)
    green = _key(green_rects)
    base = value("green_coverage", data(urban_area=urban, green=green))
    assert 0.0 <= base <= 1.0
    x, y, w, h = green_rects[0]
    halves = [box(x, y, x + w * cut, y + h), box(x + w * cut, y, x + w, y + h)]
    split = gdf(halves + list(green.geometry.iloc[1:]))
    assert value("green_coverage", data(urban_area=urban, green=split)) == pytest.approx(base, rel=1e-9, abs=1e-12)
    doubled = gdf(list(green.geometry) + list(green.geometry))
    assert value("green_coverage", data(urban_area=urban, green=doubled)) == pytest.approx(base, rel=1e-9, abs=1e-12)
    more = gdf(list(green.geometry) + [box(0, 0, 50, 50)])
    assert value("green_coverage", data(urban_area=urban, green=more)) >= base - 1e-12


small_coords = st.floats(0, 30, allow_nan=False, allow_infinity=False)
small_rects = st.lists(st.tuples(small_coords, small_coords, st.floats(5, 30), st.floats(5, 30)), min_size=1,
                       max_size=5)
small_discs = st.lists(st.tuples(small_coords, small_coords, st.floats(1, 30)), min_size=1, max_size=12)


@SETTINGS
@given(small_rects, small_discs, small_rects)
def test_ratios_do_not_depend_on_which_metric_crs_the_city_uses(key_rects, circles, green_rects):
    """The same layout in two other metric CRSs gives the same ratios: exactly in one, to 1e-6 in the other.

    EPSG:4528 has the central meridian of EPSG:4549: only the false easting differs, so
    the ratios must agree to rounding. UTM 51N is another projection: at 265 km from its
    central meridian its scale factor k changes by 1.3e-8 per metre, and a camera's disc is
    scaled by k at the camera, so a ratio can move by about that change across the layout
    (a 400 m layout moved one by 1.04e-6). These layouts are at most 90 m across, which
    keeps the CRS's own distortion under 1e-6: that is what is checked, not exact equality.
    """
    model = data(key_area=_key(key_rects), camera=_cameras(circles), urban_area=_key(key_rects),
                 green=_key(green_rects), planning_area=_key(key_rects), map_sheet=gdf(
                     [box(x, y, x + w, y + h) for x, y, w, h in green_rects], scale=[1000] * len(green_rects)))
    for other, tolerance in (("EPSG:4528", 1e-9), ("EPSG:32651", 1e-6)):  # GK zone 40 (CM 120E); UTM 51N
        moved = model.to_crs(other)
        for name in ("video_coverage", "green_coverage", "topo_map_coverage"):
            assert value(name, moved) == pytest.approx(value(name, model), abs=tolerance), (name, other)


# fast paths: the same answers as the plain geometry ------------------------------------------


@SETTINGS
@given(rects, rects, st.booleans())
def test_union_area_by_groups_is_the_area_of_the_union(polygons, region_rects, clipped):
    geoms = np.array([shapely.box(x, y, x + w, y + h) for x, y, w, h in polygons] +
                     [shapely.box(x, y, x + w, y + w / 3).buffer(w / 4, quad_segs=3) for x, y, w, _ in polygons[:2]],
                     dtype=object)
    region = shapely.union_all([shapely.box(x, y, x + w, y + h) for x, y, w, h in region_rects]) if clipped else None
    expected = shapely.union_all(geoms).area if region is None else shapely.union_all(geoms).intersection(region).area
    assert union_area(clip_polygons(geoms, region)) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    parts = union_parts(clip_polygons(geoms, region))
    assert float(shapely.area(parts).sum()) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_line_lengths_and_boxes_from_wkb_match_shapely():
    rng = np.random.default_rng(5)
    lines = list(shapely.linestrings(rng.uniform(0, 1e6, (300, 2, 2)))) + \
        list(shapely.linestrings(rng.uniform(0, 1e6, (300, 5, 3)))) + [shapely.LineString()]
    lines = np.array(lines, dtype=object)[rng.permutation(601)]
    column = GeometryColumn.from_wkb(pa.array(list(shapely.to_wkb(lines, flavor="iso")), type=pa.binary()))
    np.testing.assert_allclose(column.lengths(), shapely.length(shapely.force_2d(lines)), rtol=1e-12)
    np.testing.assert_array_equal(column.bounds(), shapely.bounds(lines))
    flat = lines[shapely.get_num_coordinates(lines) == 2]  # all 2D: read as one run of doubles
    column = GeometryColumn.from_wkb(pa.array(list(shapely.to_wkb(flat, flavor="iso")), type=pa.binary()))
    np.testing.assert_allclose(column.lengths(), shapely.length(flat), rtol=1e-12)
    np.testing.assert_array_equal(column.bounds(), shapely.bounds(flat))
    multi = pa.array([shapely.MultiLineString([[(0, 0), (3, 4)], [(0, 0), (0, 1)]]).wkb], type=pa.binary())
    assert GeometryColumn.from_wkb(multi).lengths().tolist() == [6.0]  # not a plain line: decoded by shapely


def test_a_city_read_a_few_columns_at_a_time_gives_what_its_frames_give(tmp_path):
    from twin.workspace import City

    city = City.init(tmp_path / "city", CRS)
    layers = {
        "key_area": gdf([box(0, 0, 100, 100)], name=["广场"]),
        "camera": gdf([pt(0, 0), pt(70, 70), pt(30, 60)], name=["a", "b", "c"], range_m=[40.0, 20.0, 8.0]),
        "lamp": gdf([pt(k, 0) for k in range(10)], name=[None] * 10, smart=[True] * 8 + [False] * 2),
        "pipe": gdf([shapely.LineString([(X0, Y0), (X0 + 100, Y0)]), shapely.LineString([(X0, Y0 + 50),
                                                                                           (X0 + 200, Y0 + 50)])],
                    utility=["combined", "storm"]),
        "sensor": gdf([pt(10, 3), pt(150, 48)], sensor_id=["S1", "S2"], pipe_id=[None, None]),
    }
    for kind, frame in layers.items():
        path = tmp_path / f"{kind}.gpkg"
        frame.to_file(path, driver="GPKG")
        city.ingest(path, kind)
    stored = ModelData.from_city(city)
    in_memory = ModelData(CRS, {kind: city.features(kind) for kind in layers})
    for name in ("video_coverage", "smart_lighting", "combined_sewer_share", "pipeline_monitoring"):
        for explain in (False, True):
            opts = Options(window_ms=None, explain=explain)
            a, b = compute(name, stored, options=opts), compute(name, in_memory, options=opts)
            assert a.value == pytest.approx(b.value, rel=1e-12), name
            assert a.gap == b.gap


def test_the_api_registry_is_used_instead_of_building_links_again(monkeypatch):
    pipes = gdf([shapely.LineString([(X0, Y0), (X0 + 100, Y0)]), shapely.LineString([(X0, Y0 + 50),
                                                                                       (X0 + 200, Y0 + 50)])],
                uid=["pipe.a", "pipe.b"], utility=["water", "water"])
    sensors = gdf([pt(10, 3), pt(150, 48)], uid=["sensor.1", "sensor.2"], sensor_id=["S1", "S2"],
                  pipe_id=[None, None])
    registry = SensorRegistry.build({"sensor": sensors}, {"pipe": pipes})
    plain = compute("pipeline_monitoring", ModelData(CRS, {"pipe": pipes, "sensor": sensors}),
                    options=Options(window_ms=None))

    def refuse(*args, **kwargs):
        raise AssertionError("links were built again")

    monkeypatch.setattr("twin.indicators.link_to_pipes", refuse)
    given_registry = compute("pipeline_monitoring", ModelData(CRS, {"pipe": pipes, "sensor": sensors},
                                                              registry=lambda: registry),
                             options=Options(window_ms=None))
    assert given_registry.value == plain.value == 1.0


def test_bim_gap_is_built_group_by_group_and_its_area_is_the_gap():
    buildings = gdf([box(0, 0, 10, 10), box(20, 0, 30, 10), box(10, 0, 20, 10), box(40, 0, 50, 10)])
    bim = gdf([box(0, 0, 10, 10), box(5, 0, 10, 10), box(45, 0, 60, 10)])
    result = compute("bim_coverage", data(building=buildings, bim=bim))
    every = 40 * 10 + 10 * 10 + 5 * 10  # 0..30 and 40..60, less nothing: 0..30 x 10 = 300, 40..60 x 10 = 200
    every = 300 + 200
    assert result.denominator == pytest.approx(every, rel=REL)
    assert result.numerator == pytest.approx(100 + 150, rel=REL)
    assert result.measured.uncovered.area == pytest.approx(every - 250, rel=REL)
    json.dumps(result.to_dict(CRS), allow_nan=False)


def test_uncovered_parts_that_geos_cannot_snap_still_serialise():
    from twin.indicators import IndicatorResult, Measured

    overlapping = shapely.MultiPolygon([box(0, 0, 10, 10), box(5, 0, 15, 10)])  # invalid: the parts overlap
    m = Measured(1.0, 2.0, "m2", uncovered=overlapping)
    result = IndicatorResult("bim_coverage", "BIM", 0.5, "ratio", 1.0, 2.0, "m2", 0.5, ">=", True, 0.0, 0,
                             measured=m)
    out = result.to_dict(CRS)
    assert out["uncovered"]["type"] in ("Polygon", "MultiPolygon")
