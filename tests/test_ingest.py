"""Ingesting vector files: formats, specs, stable ids, replacement, and every kind of bad input."""

from __future__ import annotations

import json
import zipfile

import geopandas as gpd
import pytest
import shapely

from conftest import YANTAI_X, YANTAI_Y, line, pipe_features, point, square, write_geojson
from twin.errors import (
    InvalidAttribute,
    InvalidGeometry,
    MissingCRS,
    SourceNotFound,
    SpecError,
    UnknownFormat,
    UnknownKind,
    WrongGeometryType,
)
from twin.workspace import City


def snapshot(city: City) -> tuple[list[dict], dict[str, bytes]]:
    """The catalogue and every vector layer's features, to prove a failed ingest changed nothing."""
    records = [r.to_dict() for r in city.layers()]
    frames = {r["name"]: city.features(r["name"]).to_json().encode() for r in records if r["kind"] != "dem"}
    return records, frames


def test_ingest_maps_chinese_columns_through_a_spec(city, tmp_path, pipe_spec):
    src = write_geojson(tmp_path / "pipes.geojson", pipe_features(3))
    record = city.ingest(src, "pipe", spec=pipe_spec)
    pipes = city.features("pipe")
    assert record.feature_count == 3 and record.kind == "pipe" and record.version == 1
    assert pipes["uid"].tolist() == ["pipe.WS-000", "pipe.WS-001", "pipe.WS-002"]
    assert pipes["utility"].tolist() == ["water"] * 3
    assert pipes["diameter_mm"].tolist() == [300.0, 400.0, 500.0]
    assert pipes["material"].iloc[0] == "球墨铸铁"
    assert pipes["depth_m"].tolist() == [1.5] * 3
    assert pipes["备注"].tolist() == ["note 0", "note 1", "note 2"], "unmapped columns are kept"
    assert "管径" not in pipes.columns, "mapped columns are renamed, not duplicated"
    assert pipes.length.sum() == pytest.approx(300.0)
    assert record.source_sha256 and len(record.source_sha256) == 64
    assert record.bounds == pytest.approx((YANTAI_X, YANTAI_Y, YANTAI_X + 100, YANTAI_Y + 20))


def test_catalogue_records_what_the_issue_asks(city, tmp_path, pipe_spec):
    src = write_geojson(tmp_path / "pipes.geojson", pipe_features(2))
    city.ingest(src, "pipe", spec=pipe_spec)
    (record,) = city.layers()
    assert record.name == "pipe" and record.source == str(src.resolve())
    assert record.crs == "EPSG:4549" and record.feature_count == 2 and record.updated
    west, south, east, north = record.bounds_wgs84
    assert 121 < west < east < 122 and 37 < south < north < 38


def test_same_file_twice_gives_the_same_model(city, tmp_path):
    features = pipe_features(5)
    src = write_geojson(tmp_path / "pipes.geojson", features)
    city.ingest(src, "pipe")
    first = city.features("pipe")
    record = city.ingest(src, "pipe")
    second = city.features("pipe")
    assert record.version == 2
    assert first["uid"].tolist() == second["uid"].tolist() == [f"pipe.{i}" for i in range(1, 6)]
    assert first.drop(columns="geometry").equals(second.drop(columns="geometry"))
    assert shapely.equals_exact(first.geometry.values, second.geometry.values).all()


def test_reingest_replaces_the_layer_and_drops_the_old_table(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(5)), "pipe")
    city.ingest(write_geojson(tmp_path / "b.geojson", pipe_features(2)), "pipe")
    assert len(city.features("pipe")) == 2
    import pyogrio
    tables = [str(name) for name, _ in pyogrio.list_layers(city.root / "city.gpkg")]
    assert tables.count("pipe_v2") == 1 and "pipe_v1" not in tables


def test_layer_option_names_a_second_layer_of_a_kind(city, tmp_path):
    city.ingest(write_geojson(tmp_path / "a.geojson", pipe_features(2)), "pipe")
    city.ingest(write_geojson(tmp_path / "b.geojson", pipe_features(3)), "pipe", layer="pipe_bim")
    assert {r.name: r.feature_count for r in city.layers()} == {"pipe": 2, "pipe_bim": 3}


@pytest.mark.parametrize("driver,suffix", [("GPKG", ".gpkg"), ("FlatGeobuf", ".fgb"), ("ESRI Shapefile", ".shp")])
def test_ingest_reads_each_vector_format(city, tmp_path, driver, suffix):
    frame = gpd.GeoDataFrame({"name": ["a", "b"], "height_m": [10.0, 20.0]},
                             geometry=[shapely.box(YANTAI_X, YANTAI_Y, YANTAI_X + 10, YANTAI_Y + 10),
                                       shapely.box(YANTAI_X + 20, YANTAI_Y, YANTAI_X + 30, YANTAI_Y + 12)],
                             crs="EPSG:4549")
    path = tmp_path / f"buildings{suffix}"
    frame.to_file(path, driver=driver)
    record = city.ingest(path, "building")
    got = city.features("building")
    # FlatGeobuf's spatial index may reorder features; ids follow the file's own order
    assert record.feature_count == 2 and sorted(got["height_m"]) == [10.0, 20.0]
    assert got.area.sum() == pytest.approx(220.0)


def test_ingest_reads_a_zipped_shapefile(city, tmp_path):
    frame = gpd.GeoDataFrame({"smart": [1, 0, 1]}, geometry=gpd.points_from_xy(
        [YANTAI_X, YANTAI_X + 10, YANTAI_X + 20], [YANTAI_Y] * 3), crs="EPSG:4549")
    shp = tmp_path / "lamps.shp"
    frame.to_file(shp)
    archive = tmp_path / "lamps.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for part in tmp_path.glob("lamps.*"):
            if part.suffix != ".zip":
                zf.write(part, part.name)
    city.ingest(archive, "lamp")
    assert city.features("lamp")["smart"].tolist() == [True, False, True]


def test_lonlat_geojson_without_crs_member_is_rfc7946_wgs84(city, tmp_path):
    src = write_geojson(tmp_path / "lamps.geojson", [{"geometry": point(121.40, 37.53), "properties": {}}], crs=None)
    record = city.ingest(src, "lamp")
    assert "reprojected from EPSG:4326" in record.notes
    x, y = city.features("lamp").geometry.iloc[0].coords[0]
    assert 600_000 < x < 650_000 and 4_150_000 < y < 4_160_000


def test_ingest_refuses_projected_geojson_without_crs(city, tmp_path, pipe_spec):
    city.ingest(write_geojson(tmp_path / "good.geojson", pipe_features(2)), "pipe", spec=pipe_spec)
    before = snapshot(city)
    src = write_geojson(tmp_path / "nocrs.geojson", pipe_features(3), crs=None)
    with pytest.raises(MissingCRS, match=r"nocrs\.geojson: has no CRS.*--crs EPSG"):
        city.ingest(src, "pipe", spec=pipe_spec)
    assert snapshot(city) == before
    record = city.ingest(src, "pipe", spec=pipe_spec, crs="EPSG:4549")
    assert record.feature_count == 3


def test_ingest_refuses_shapefile_without_prj(city, tmp_path):
    frame = gpd.GeoDataFrame({"name": ["a"]}, geometry=[shapely.Point(YANTAI_X, YANTAI_Y)])
    frame.to_file(tmp_path / "stations.shp")
    with pytest.raises(MissingCRS, match="stations.shp"):
        city.ingest(tmp_path / "stations.shp", "weather_station")
    assert city.layers() == []


def test_ingest_refuses_a_missing_file(city, tmp_path):
    with pytest.raises(SourceNotFound, match="nothere.geojson: file does not exist"):
        city.ingest(tmp_path / "nothere.geojson", "pipe")


def test_ingest_refuses_an_unknown_format(city, tmp_path):
    bogus = tmp_path / "pipes.geojson"
    bogus.write_text("this is not GeoJSON at all")
    with pytest.raises(UnknownFormat, match="pipes.geojson"):
        city.ingest(bogus, "pipe")


def test_ingest_refuses_an_unknown_kind(city, tmp_path):
    src = write_geojson(tmp_path / "p.geojson", pipe_features(1))
    with pytest.raises(UnknownKind, match="known kinds: building, pipe"):
        city.ingest(src, "pipes")


def test_empty_geometry_is_refused_with_its_feature_index(city, tmp_path, pipe_spec):
    city.ingest(write_geojson(tmp_path / "good.geojson", pipe_features(2)), "pipe", spec=pipe_spec)
    before = snapshot(city)
    features = pipe_features(4)
    features[2]["geometry"] = {"type": "LineString", "coordinates": []}
    src = write_geojson(tmp_path / "bad.geojson", features)
    with pytest.raises(InvalidGeometry, match=r"bad\.geojson: feature 2: geometry is empty") as info:
        city.ingest(src, "pipe", spec=pipe_spec)
    assert info.value.feature_index == 2
    assert snapshot(city) == before


def test_missing_geometry_is_refused_with_its_feature_index(city, tmp_path):
    features = pipe_features(3)
    features[1]["geometry"] = None
    src = write_geojson(tmp_path / "nogeom.geojson", features)
    with pytest.raises(InvalidGeometry, match="feature 1: has no geometry"):
        city.ingest(src, "pipe")


def test_a_point_in_a_pipe_layer_is_refused(city, tmp_path):
    features = pipe_features(3)
    features[1]["geometry"] = point(YANTAI_X, YANTAI_Y)
    with pytest.raises(WrongGeometryType, match="feature 1: is a Point, but a pipe layer holds lines"):
        city.ingest(write_geojson(tmp_path / "mixed.geojson", features), "pipe")


def test_invalid_polygons_are_repaired_and_reported(city, tmp_path):
    bowtie = {"type": "Polygon", "coordinates": [[[YANTAI_X, YANTAI_Y], [YANTAI_X + 10, YANTAI_Y + 10],
                                                  [YANTAI_X + 10, YANTAI_Y], [YANTAI_X, YANTAI_Y + 10],
                                                  [YANTAI_X, YANTAI_Y]]]}
    src = write_geojson(tmp_path / "b.geojson", [
        {"geometry": square(YANTAI_X + 50, YANTAI_Y, 10), "properties": {"height_m": 9}},
        {"geometry": bowtie, "properties": {"height_m": 12}}])
    record = city.ingest(src, "building")
    assert any("repaired 1 invalid geometries" in n and "[1]" in n for n in record.notes)
    got = city.features("building")
    assert got.is_valid.all()
    assert got.area.iloc[1] == pytest.approx(50.0)


def test_unrepairable_polygon_is_refused(city, tmp_path):
    flat = {"type": "Polygon", "coordinates": [[[YANTAI_X, YANTAI_Y], [YANTAI_X + 10, YANTAI_Y],
                                                [YANTAI_X + 20, YANTAI_Y], [YANTAI_X, YANTAI_Y]]]}
    src = write_geojson(tmp_path / "flat.geojson", [{"geometry": square(YANTAI_X, YANTAI_Y, 5)},
                                                     {"geometry": flat}])
    with pytest.raises(InvalidGeometry, match="feature 1: geometry is invalid .* cannot be repaired"):
        city.ingest(src, "building")


def test_spec_naming_a_missing_column_is_refused(city, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[fields]\ndiameter_mm = "DN"\n')
    with pytest.raises(SpecError, match=r"names columns that .*p\.geojson does not have: diameter_mm <- 'DN'"):
        city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe", spec=spec)


def test_spec_naming_an_unknown_field_is_refused(city, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[fields]\nradius = "管径"\n')
    with pytest.raises(SpecError, match=r"\['radius'\] are not fields of kind 'pipe'"):
        city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe", spec=spec)


def test_malformed_spec_is_refused(city, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('[fields\n')
    with pytest.raises(SpecError, match="is not valid TOML"):
        city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe", spec=spec)


def test_non_numeric_diameter_names_the_feature(city, tmp_path, pipe_spec):
    features = pipe_features(3)
    features[2]["properties"]["管径"] = "大"
    with pytest.raises(InvalidAttribute, match="feature 2: diameter_mm '大' is not a number"):
        city.ingest(write_geojson(tmp_path / "p.geojson", features), "pipe", spec=pipe_spec)


def test_unknown_utility_names_the_feature_and_the_choices(city, tmp_path, pipe_spec):
    features = pipe_features(2)
    features[1]["properties"]["管线类型"] = "蒸汽"
    with pytest.raises(InvalidAttribute, match=r"feature 1: utility '蒸汽' is not one of \['water'"):
        city.ingest(write_geojson(tmp_path / "p.geojson", features), "pipe", spec=pipe_spec)


def test_spec_values_and_scale(city, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"id": "name", "fields": {"diameter_mm": {"column": "d", "scale": 1000},
                                                         "utility": "type"},
                                "values": {"utility": {"S": "storm", "W": "sewage"}}}))
    src = write_geojson(tmp_path / "p.geojson", [
        {"geometry": line(YANTAI_X, YANTAI_Y, YANTAI_X + 5, YANTAI_Y), "properties": {"name": "a", "d": 0.3, "type": "S"}},
        {"geometry": line(YANTAI_X, YANTAI_Y, YANTAI_X + 5, YANTAI_Y), "properties": {"name": "b", "d": 0.45, "type": "W"}}])
    city.ingest(src, "pipe", spec=spec)
    pipes = city.features("pipe")
    assert pipes["diameter_mm"].tolist() == pytest.approx([300.0, 450.0])
    assert pipes["utility"].tolist() == ["storm", "sewage"]
    assert pipes["uid"].tolist() == ["pipe.a", "pipe.b"]


def test_duplicate_ids_are_refused(city, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('id = "name"\n')
    features = [{"geometry": point(YANTAI_X, YANTAI_Y), "properties": {"name": "cam-1"}}] * 2
    with pytest.raises(InvalidAttribute, match=r"repeats values \['cam-1'\]"):
        city.ingest(write_geojson(tmp_path / "c.geojson", features), "camera", spec=spec)


def test_buildings_take_height_from_floors(city, tmp_path):
    src = write_geojson(tmp_path / "b.geojson", [
        {"geometry": square(YANTAI_X, YANTAI_Y, 10), "properties": {"floors": 6}},
        {"geometry": square(YANTAI_X + 20, YANTAI_Y, 10), "properties": {"floors": 2, "height_m": 8.5}}])
    record = city.ingest(src, "building")
    assert city.features("building")["height_m"].tolist() == [18.0, 8.5]
    assert any("from floors" in n for n in record.notes)


def test_map_sheets_are_named_by_their_south_west_corner(city, tmp_path):
    src = write_geojson(tmp_path / "sheets.geojson", [
        {"geometry": square(623_000.4, 4_155_000.0, 500), "properties": {"scale": 1000, "survey_date": "2021-06-01"}},
        {"geometry": square(623_500.0, 4_154_999.7, 500), "properties": {"scale": 1000, "survey_date": "2021/7/3"}}])
    city.ingest(src, "map_sheet")
    got = city.features("map_sheet")
    assert got["sheet_id"].tolist() == ["4155.0-623.0", "4155.0-623.5"]
    assert got["survey_date"].tolist() == ["2021-06-01", "2021-07-03"]


def test_rfc7946_assumption_is_noted(city, tmp_path):
    src = write_geojson(tmp_path / "lamps.geojson", [{"geometry": point(121.40, 37.53), "properties": {}}], crs=None)
    record = city.ingest(src, "lamp")
    assert any("RFC 7946" in n for n in record.notes)


def test_us_survey_feet_come_out_in_metres(tmp_path):
    city = City.init(tmp_path / "ky", "EPSG:3546")  # Kentucky Single Zone, metres
    feet = 3937.0  # = 1200 m exactly in US survey feet
    src = write_geojson(tmp_path / "p.geojson", [{"geometry": line(4_971_350, 3_905_604, 4_971_350 + feet, 3_905_604)}],
                        crs="EPSG:3547")
    city.ingest(src, "pipe")
    assert city.features("pipe").length.iloc[0] == pytest.approx(1200.0, abs=1e-6)


def test_truncated_geojson_is_refused_and_names_the_file(city, tmp_path):
    good = write_geojson(tmp_path / "p.geojson", pipe_features(20))
    truncated = tmp_path / "truncated.geojson"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(UnknownFormat, match=r"truncated\.geojson"):
        city.ingest(truncated, "pipe")
    assert city.layers() == []


def test_geopackage_with_several_layers_needs_source_layer(city, tmp_path):
    path = tmp_path / "survey.gpkg"
    for name in ("water", "gas"):
        gpd.GeoDataFrame({"d": [100]}, geometry=[shapely.LineString([(YANTAI_X, YANTAI_Y), (YANTAI_X + 9, YANTAI_Y)])],
                         crs="EPSG:4549").to_file(path, layer=name)
    with pytest.raises(SpecError, match=r"holds 2 layers \['water', 'gas'\]; name one with source_layer"):
        city.ingest(path, "pipe")
    spec = tmp_path / "gas.toml"
    spec.write_text('source_layer = "gas"\n[fields]\nutility = { value = "gas" }\ndiameter_mm = "d"\n')
    city.ingest(path, "pipe", spec=spec)
    assert city.features("pipe")["utility"].tolist() == ["gas"]
