"""IFC models into the city: every public sample, placement checked independently, GLBs validated."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import geopandas as gpd
import ifcopenshell
import ifcopenshell.util.geolocation
import numpy as np
import pytest
from pyproj import Geod, Transformer

from conftest import YANTAI_X, YANTAI_Y, shared, write_geojson
from ifc_factory import make_model
from layers.gltf import decode_glb_json
from layers.ifc import InvalidIFC, NoGeometry, NotGeoreferenced, UnsupportedSchema
from twin.workspace import City

REPO = Path(__file__).resolve().parents[1]
EXCLUDED = ("IfcOpeningElement", "IfcSpace", "IfcSite", "IfcAnnotation", "IfcGrid", "IfcVirtualElement",
            "IfcSpatialElement", "IfcSpatialStructureElement", "IfcAlignment")

# file, city CRS (a metric CRS where the model stands), anchor for files without georeferencing
SAMPLES = {
    "AC20-FZK-Haus.ifc": ("EPSG:25832", None),
    "Duplex_A_20110907.ifc": ("EPSG:26916", None),
    "KIT-Simple-Road-Test-IFC4x3_RC2.ifc": ("EPSG:32640", None),
    "IfcOpenHouse_IFC4.ifc": ("EPSG:4549", "121.40,37.53,5,30"),
    "Mini_Project_Carwash_Tekla.ifc": ("EPSG:4549", "121.41,37.52"),
}


def open_ifc(path: Path) -> ifcopenshell.file:
    """Open a sample as IfcOpenShell can (the RC2 header read as IFC4X3_ADD2)."""
    text = path.read_bytes().decode("latin-1")
    if "'IFC4X3_RC2'" in text[:2000]:
        return ifcopenshell.file.from_string(text.replace("'IFC4X3_RC2'", "'IFC4X3_ADD2'", 1))
    return ifcopenshell.open(str(path))


def validate_glbs(paths: list[Path]) -> list[dict]:
    """Run the Khronos glTF validator (npm gltf-validator) over GLB files."""
    node = shutil.which("node")
    assert node, "node is needed for the glTF validator (scripts/setup.sh installs js/ tools)"
    assert (REPO / "js" / "node_modules" / "gltf-validator").is_dir(), "run scripts/setup.sh to install js/ tools"
    out = subprocess.run([node, str(REPO / "js" / "validate-gltf.mjs"), *map(str, paths)], capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def bodies(model: ifcopenshell.file) -> int:
    """Elements with a Body representation, counted from the file itself."""
    count = 0
    for product in model.by_type("IfcProduct"):
        if any(product.is_a(c) for c in EXCLUDED) or product.is_a("IfcBuilding") or product.Representation is None:
            continue
        if product.is_a("IfcFacility") if model.schema.startswith("IFC4X3") else False:
            continue
        if any(r.RepresentationIdentifier == "Body" for r in product.Representation.Representations):
            count += 1
    return count


@pytest.fixture(scope="module")
def placed(tmp_path_factory):
    """Each public sample ingested into a city of its own, ingested once per module."""
    cache: dict[str, tuple[City, object]] = {}

    def get(name: str):
        if name not in cache:
            crs, anchor = SAMPLES[name]
            city = City.init(tmp_path_factory.mktemp(name.split(".")[0]) / "city", crs)
            record = city.ingest(shared("ifc", name), anchor=anchor)
            cache[name] = (city, record)
        return cache[name]

    return get


def placed_rows(city: City) -> gpd.GeoDataFrame:
    frames = [city.features(layer) for layer in ("bim", "facility") if any(r.name == layer for r in city.layers())]
    return gpd.GeoDataFrame(np.concatenate([f.to_numpy() for f in frames]) if len(frames) > 1 else frames[0],
                            columns=frames[0].columns, geometry="geometry", crs=city.crs) if len(frames) == 1 else \
        gpd.pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_sample_ingests_with_a_valid_footprint(placed, name):
    city, record = placed(name)
    rows = placed_rows(city)
    assert len(rows) >= 1
    assert rows.is_valid.all() and not rows.is_empty.any()
    assert (rows.area > 1.0).all()
    assert (rows["height_m"] > 0).all()
    # a footprint is an outline, not a bounding box: it never exceeds its envelope, and for
    # the houses it is well inside it (roof overhangs and L-shapes)
    assert (rows.area <= rows.envelope.area + 1e-6).all()


@pytest.mark.parametrize("name", list(SAMPLES))
def test_every_sample_glb_is_valid_and_has_a_node_per_body(placed, name):
    city, _ = placed(name)
    rows = placed_rows(city)
    glbs = [city.root / glb for glb in rows["glb"]]
    reports = validate_glbs(glbs)
    assert all(r["errors"] == 0 for r in reports), reports
    nodes = 0
    for glb in glbs:
        doc = decode_glb_json(glb.read_bytes())
        element_nodes = [n for n in doc["nodes"] if "mesh" in n]
        assert all(n["name"] == n["extras"]["global_id"] and n["extras"]["ifc_class"].startswith("Ifc")
                   for n in element_nodes)
        nodes += len(element_nodes)
    model = open_ifc(shared("ifc", name))
    assert nodes == bodies(model)


def _expected_point(name: str, model_xy: tuple[float, float], crs: str) -> tuple[float, float]:
    """Where a model point stands per the file's IfcSite lat/lon and true north, by geodesy."""
    model = open_ifc(shared("ifc", name))
    site = model.by_type("IfcSite")[0]
    lat = ifcopenshell.util.geolocation.dms2dd(*site.RefLatitude)
    lon = ifcopenshell.util.geolocation.dms2dd(*site.RefLongitude)
    phi = math.radians(ifcopenshell.util.geolocation.get_true_north(model))  # anticlockwise from +Y
    x, y = model_xy
    east = x * math.cos(-phi) - y * math.sin(-phi)
    north = x * math.sin(-phi) + y * math.cos(-phi)
    lon2, lat2, _ = Geod(ellps="GRS80").fwd(lon, lat, math.degrees(math.atan2(east, north)), math.hypot(east, north))
    return Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon2, lat2)


@pytest.mark.parametrize("name", ["AC20-FZK-Haus.ifc", "Duplex_A_20110907.ifc", "KIT-Simple-Road-Test-IFC4x3_RC2.ifc"])
def test_site_georeferenced_samples_stand_where_the_file_says(placed, name):
    city, record = placed(name)
    assert "IfcSite RefLatitude" in record.notes[0]
    row = placed_rows(city).iloc[0]
    matrix = np.array(json.loads(row["transform"]))
    for model_xy in [(0.0, 0.0), (20.0, 0.0), (0.0, 20.0), (15.0, -8.0)]:
        # local coordinates of the GLB are model coordinates less the site origin (here 0, 0) at the ground floor
        local = np.array([*model_xy, 0.0, 1.0])
        got = matrix @ local
        expected = _expected_point(name, model_xy, SAMPLES[name][0])
        assert math.dist(got[:2], expected) < 0.5, (model_xy, got[:2], expected)


def test_anchored_sample_stands_at_its_anchor_turned_by_its_rotation(placed):
    city, record = placed("IfcOpenHouse_IFC4.ifc")
    assert record.notes[0].startswith("placed by anchor 121.400000,37.530000, elevation 5.00 m")
    row = city.features("bim").iloc[0]
    matrix = np.array(json.loads(row["transform"]))
    to_city = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True)
    assert math.dist((matrix @ [0, 0, 0, 1])[:2], to_city.transform(121.40, 37.53)) < 0.5
    # model +Y turned 30 degrees clockwise from true north
    lon2, lat2, _ = Geod(ellps="GRS80").fwd(121.40, 37.53, 30.0, 10.0)
    assert math.dist((matrix @ [0, 10, 0, 1])[:2], to_city.transform(lon2, lat2)) < 0.5
    assert row["base_z"] == pytest.approx(5.0, abs=0.01)


def test_element_table_has_classes_storeys_and_property_sets(placed):
    city, _ = placed("AC20-FZK-Haus.ifc")
    elements = city.features("bim-elements")
    assert elements["uid"].is_unique
    assert {"IfcWall", "IfcWindow", "IfcDoor", "IfcSlab"} <= set(elements["ifc_class"].str.replace("StandardCase", ""))
    assert set(elements["storey"].dropna()) == {"Erdgeschoss", "Dachgeschoss"}
    wall = elements[elements["ifc_class"].str.startswith("IfcWall")].iloc[0]
    psets = json.loads(wall["properties"])
    assert "Pset_WallCommon" in psets
    bim = city.features("bim").iloc[0]
    assert (elements["building"] == bim["uid"]).all()
    storeys = json.loads(bim["storeys"])
    assert [s["name"] for s in storeys] == ["Erdgeschoss", "Dachgeschoss"]
    assert storeys[1]["elevation_m"] == pytest.approx(2.7)
    assert bim["floors"] == 2


def test_road_is_a_facility_of_its_own_kind(placed):
    city, record = placed("KIT-Simple-Road-Test-IFC4x3_RC2.ifc")
    assert record.kind == "facility"
    rows = city.features("facility")
    assert rows["ifc_class"].tolist() == ["IfcRoad"]
    assert "read IFC4X3_RC2 as IFC4X3_ADD2" in record.notes


def test_kit_map_conversion_sample_fails_naming_its_csg_element(city):
    with pytest.raises(NoGeometry, match=r"IfcBuildingElementProxy 'Geographic Position' \(0rBru4syGxGOZb\$M8kVJuS\)"):
        city.ingest(shared("ifc", "geographic-referencing_IFC4_KIT.ifc"))
    assert city.layers() == []


# -- generated models for what the samples lack ---------------------------------------------

MAP_CONVERSION = {"Eastings": YANTAI_X, "Northings": YANTAI_Y, "OrthogonalHeight": 10.0,
                  "XAxisAbscissa": math.cos(math.radians(30)), "XAxisOrdinate": math.sin(math.radians(30))}


@pytest.mark.parametrize("millimetres", [False, True])
def test_map_conversion_places_the_model_as_ifcopenshell_computes_it(city, tmp_path, millimetres):
    path = make_model(tmp_path / "mc.ifc", map_conversion=MAP_CONVERSION, millimetres=millimetres)
    record = city.ingest(path)
    assert record.notes[0].startswith("placed by IfcMapConversion to EPSG:4549")
    model = ifcopenshell.open(str(path))
    scale = 1000.0 if millimetres else 1.0  # IfcOpenShell takes project units
    row = city.features("bim").iloc[0]
    matrix = np.array(json.loads(row["transform"]))
    for x, y, z in [(0, 0, 0), (10, 0, 3), (10, 6, 0)]:
        e, n, h = ifcopenshell.util.geolocation.auto_xyz2enh(model, x * scale, y * scale, z * scale)
        if millimetres and not model.by_type("IfcMapConversion")[0].Scale:
            # no Scale in the file: we derive it from the units; IfcOpenShell assumes 1
            e = YANTAI_X + (e - YANTAI_X) / 1000
            n = YANTAI_Y + (n - YANTAI_Y) / 1000
            h = 10.0 + (h - 10.0) / 1000
        got = matrix @ [x, y, z, 1]
        assert math.dist(got[:3], (e, n, h)) < 0.01


def test_map_conversion_in_another_crs_is_reprojected(tmp_path):
    city = City.init(tmp_path / "c", "EPSG:4549")
    lon, lat = 121.40, 37.53
    e, n = Transformer.from_crs("EPSG:4326", "EPSG:32651", always_xy=True).transform(lon, lat)
    path = make_model(tmp_path / "utm.ifc", crs_name="EPSG:32651",
                      map_conversion={"Eastings": e, "Northings": n, "OrthogonalHeight": 0.0})
    city.ingest(path)
    matrix = np.array(json.loads(city.features("bim").iloc[0]["transform"]))
    expected = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True).transform(lon, lat)
    assert math.dist((matrix @ [0, 0, 0, 1])[:2], expected) < 0.5


def test_placeholder_map_conversion_is_treated_as_missing(city, tmp_path):
    path = make_model(tmp_path / "zero.ifc", map_conversion={"Eastings": 0.0, "Northings": 0.0})
    with pytest.raises(NotGeoreferenced, match=r"eastings and northings 0 \(a placeholder\).*--anchor LON,LAT"):
        city.ingest(path)
    assert city.layers() == []
    record = city.ingest(path, anchor="121.40,37.53")
    assert record.notes[0].startswith("placed by anchor")


def test_placeholder_site_at_zero_lat_lon_is_treated_as_missing(city, tmp_path):
    path = make_model(tmp_path / "null-island.ifc", site_lat_lon=(0.0, 0.0))
    with pytest.raises(NotGeoreferenced, match="no IfcSite RefLatitude/RefLongitude"):
        city.ingest(path)


def test_anchor_overrides_the_file(city, tmp_path):
    path = make_model(tmp_path / "mc.ifc", map_conversion=MAP_CONVERSION)
    record = city.ingest(path, anchor="121.41,37.52,3")
    assert record.notes[0].startswith("placed by anchor 121.410000,37.520000, elevation 3.00 m")
    matrix = np.array(json.loads(city.features("bim").iloc[0]["transform"]))
    expected = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True).transform(121.41, 37.52)
    assert math.dist((matrix @ [0, 0, 0, 1])[:2], expected) < 0.5


def test_pipe_segments_join_the_pipe_layer_as_their_axis(city, tmp_path):
    path = make_model(tmp_path / "mep.ifc", pipe=True, map_conversion={"Eastings": YANTAI_X, "Northings": YANTAI_Y,
                                                                      "OrthogonalHeight": 10.0})
    city.ingest(path)
    pipes = city.features("pipe")
    assert len(pipes) == 1
    pipe = pipes.iloc[0]
    assert pipe["bim_model"] == "mep.ifc" and pipe["diameter_mm"] == pytest.approx(200.0, abs=1)
    coords = np.asarray(pipe.geometry.coords)
    assert coords[0] == pytest.approx([YANTAI_X + 1, YANTAI_Y + 3, 12.0], abs=0.01)
    assert coords[1] == pytest.approx([YANTAI_X + 9, YANTAI_Y + 3, 12.0], abs=0.01)
    # a GIS re-ingest of the pipe layer keeps the pipes that came from BIM
    from conftest import pipe_features
    city.ingest(write_geojson(tmp_path / "gis.geojson", pipe_features(2)), "pipe")
    again = city.features("pipe")
    assert len(again) == 3 and again["bim_model"].notna().sum() == 1


def test_failed_element_is_skipped_counted_and_named(city, tmp_path):
    path = make_model(tmp_path / "csg.ifc", csg_element=True, map_conversion=MAP_CONVERSION)
    record = city.ingest(path)
    assert any(n.startswith("skipped 1 elements whose geometry failed: IfcBuildingElementProxy 'cone marker'")
               for n in record.notes)
    elements = city.features("bim-elements")
    assert elements.set_index("name").loc["cone marker", "has_geometry"] == False  # noqa: E712


def test_bim_building_takes_the_unified_id_of_the_gis_footprint_it_overlaps_most(city, tmp_path):
    # the model's walls stand from (0, 0) to (10, 6.2) east and north of the conversion origin
    footprints = write_geojson(tmp_path / "b.geojson", [
        {"geometry": {"type": "Polygon", "coordinates": [[[YANTAI_X - 1, YANTAI_Y - 1], [YANTAI_X + 11, YANTAI_Y - 1],
                                                          [YANTAI_X + 11, YANTAI_Y + 7], [YANTAI_X - 1, YANTAI_Y + 7],
                                                          [YANTAI_X - 1, YANTAI_Y - 1]]]}, "properties": {"height_m": 6}},
        {"geometry": {"type": "Polygon", "coordinates": [[[YANTAI_X + 50, YANTAI_Y], [YANTAI_X + 60, YANTAI_Y],
                                                          [YANTAI_X + 60, YANTAI_Y + 10], [YANTAI_X + 50, YANTAI_Y + 10],
                                                          [YANTAI_X + 50, YANTAI_Y]]]}, "properties": {"height_m": 9}}])
    city.ingest(footprints, "building")
    record = city.ingest(make_model(tmp_path / "b.ifc", map_conversion={"Eastings": YANTAI_X, "Northings": YANTAI_Y}))
    assert "1 GIS building footprints are represented by BIM models" in record.notes
    bim = city.features("bim").iloc[0]
    assert bim["unified_id"] == "building.1"
    gis = city.features("building").set_index("uid")
    assert gis.loc["building.1", "represented_by_bim"] == True  # noqa: E712
    assert gis.loc["building.1", "bim_uid"] == bim["uid"]
    assert gis.loc["building.2", "represented_by_bim"] == False  # noqa: E712
    # re-ingesting the GIS footprints keeps the link
    city.ingest(footprints, "building")
    assert city.features("building").set_index("uid").loc["building.1", "bim_uid"] == bim["uid"]


def test_reingesting_an_unchanged_file_does_no_work_and_a_new_anchor_reuses_the_geometry(city, tmp_path):
    path = make_model(tmp_path / "m.ifc", walls=3)
    first = city.ingest(path, anchor="121.40,37.53")
    versions = {r.name: r.version for r in city.layers()}
    again = city.ingest(path, anchor="121.40,37.53")
    assert again.notes == ["m.ifc is unchanged and placed as before: nothing to do"]
    assert {r.name: r.version for r in city.layers()} == versions
    moved = city.ingest(path, anchor="121.41,37.53")
    assert "geometry from the cache (file unchanged)" in moved.notes
    assert len(city.features("bim")) == 1, "the model's own row is replaced, not duplicated"
    assert first.name == "bim"


# -- bad input --------------------------------------------------------------------------------

def test_a_file_that_is_not_ifc_is_refused(city, tmp_path):
    path = tmp_path / "house.ifc"
    path.write_text("<xml>not a STEP file</xml>")
    with pytest.raises(InvalidIFC, match=r"house\.ifc: is not an IFC file"):
        city.ingest(path)


def test_a_truncated_ifc_is_refused_and_the_model_kept(city, tmp_path):
    city.ingest(make_model(tmp_path / "good.ifc"), anchor="121.40,37.53")
    before = [r.to_dict() for r in city.layers()]
    data = shared("ifc", "AC20-FZK-Haus.ifc").read_bytes()
    truncated = tmp_path / "truncated.ifc"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidIFC, match=r"truncated\.ifc: is truncated"):
        city.ingest(truncated, anchor="121.40,37.53")
    assert [r.to_dict() for r in city.layers()] == before


def test_an_unsupported_schema_is_refused(city, tmp_path):
    text = make_model(tmp_path / "m.ifc").read_text().replace("FILE_SCHEMA(('IFC4'))", "FILE_SCHEMA(('IFC2X2_FINAL'))")
    path = tmp_path / "old.ifc"
    path.write_text(text)
    with pytest.raises(UnsupportedSchema, match="uses schema IFC2X2_FINAL; twin reads IFC2X3, IFC4 and IFC4X3"):
        city.ingest(path)


def test_a_model_without_georeferencing_or_anchor_is_refused_with_how_to_fix(city):
    with pytest.raises(NotGeoreferenced, match=r"no IfcMapConversion, no IfcSite RefLatitude/RefLongitude.*--anchor"):
        city.ingest(shared("ifc", "IfcOpenHouse_IFC4.ifc"))
    assert city.layers() == []


def test_a_model_with_no_geometry_is_refused(city, tmp_path):
    with pytest.raises(NoGeometry, match="has no element whose geometry could be built"):
        city.ingest(make_model(tmp_path / "empty.ifc", walls=0), anchor="121.40,37.53")


def test_bad_anchor_is_refused(city, tmp_path):
    with pytest.raises(ValueError, match="LON,LAT"):
        city.ingest(make_model(tmp_path / "m.ifc"), anchor="37.53")
    with pytest.raises(ValueError, match="lon first"):
        city.ingest(make_model(tmp_path / "m.ifc"), anchor="37.53,121.40")
