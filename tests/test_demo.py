"""The demo cities: a generated Yantai district and the real KY4 network, ingested as a user would."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Transformer

from conftest import shared
from twin import sheets
from twin.demo import IFC_LOT_M, IFC_PLACEMENTS, build_demo, ifc_lot_centres
from twin.errors import NotACity
from twin.workspace import City


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, City]]:
    """The demo cities, built once for the module."""
    out = tmp_path_factory.mktemp("demo")
    return out, build_demo(out, shared_data=shared())


@pytest.fixture(scope="module")
def yantai(demo: tuple[Path, dict[str, City]]) -> City:
    return demo[1]["yantai"]


@pytest.fixture(scope="module")
def ky4(demo: tuple[Path, dict[str, City]]) -> City:
    return demo[1]["ky4"]


def _snapshot(city: City, layer: str) -> tuple[list[str], list[bytes]]:
    frame = city.features(layer)
    return frame["uid"].tolist(), [g.wkb for g in frame.geometry]


def test_build_demo_makes_both_cities_in_their_folders(demo):
    out, cities = demo
    assert set(cities) == {"yantai", "ky4"}
    for name, city in cities.items():
        assert City.open(out / name).name == city.name
    assert (out / "sources" / "pipe_spec.toml").is_file()


def test_yantai_has_a_layer_of_every_demo_kind(yantai):
    names = {r.name: r.kind for r in yantai.layers()}
    assert set(names) >= {"dem", "building", "pipe", "manhole", "sensor", "lamp", "camera", "weather_station",
                          "base_station", "community", "school", "planning_area", "district", "urban_area",
                          "key_area", "green", "map_sheet"}
    assert yantai.crs.to_epsg() == 4549


def test_yantai_dem_slopes_from_hills_to_the_sea(yantai):
    with rasterio.open(yantai.store.raster_path("dem")) as dem:
        values = dem.read(1, masked=True).compressed()
        assert dem.res == (5.0, 5.0)
    assert values.min() == 0.0
    assert 60.0 <= values.max() <= 90.0


def test_yantai_has_300_to_500_buildings_all_with_a_height(yantai):
    buildings = yantai.features("building")
    assert 300 <= len(buildings) <= 500
    assert buildings["height_m"].notna().all()
    assert buildings["floors"].isna().any()  # some surveyed with a height only
    assert buildings["ground_z"].notna().all()
    assert buildings["name"].notna().sum() > 50
    assert (buildings["height_m"] > 100).any()  # a few towers
    geoms = np.asarray(buildings.geometry.values, dtype=object)
    assert len(shapely.STRtree(geoms).query(geoms, predicate="overlaps")[0]) == 0


def test_yantai_pipes_take_their_fields_from_the_chinese_survey_columns(yantai):
    pipes = yantai.features("pipe")
    assert set(pipes["utility"]) >= {"water", "storm", "sewage", "gas", "combined"}
    assert not {"管径", "材质", "埋深", "建设年代", "管线类型"} & set(pipes.columns)
    assert pipes["diameter_mm"].between(100, 1500).all()
    assert pipes["depth_m"].between(0.9, 4.0).all()
    assert pipes["install_year"].between(1960, 2025).all()
    assert "ductile iron" in set(pipes["material"])
    assert all(re.fullmatch(r"pipe\.(JS|YS|WS|RQ|HS)-\d{4}", uid) for uid in pipes["uid"])
    assert pipes.loc[pipes["utility"] == "sewage", "uid"].str.startswith("pipe.WS-").all()


def test_yantai_pipes_lie_below_the_ground(yantai):
    pipes = yantai.features("pipe")
    coords = shapely.get_coordinates(np.asarray(pipes.geometry.values, dtype=object), include_z=True)
    ground = yantai.ground_z(coords[:, 0], coords[:, 1])
    assert np.isfinite(ground).all()
    assert (coords[:, 2] < ground - 0.9).all()


def test_yantai_map_sheets_are_named_by_their_south_west_corner(yantai):
    sheet_frame = yantai.features("map_sheet")
    assert (sheet_frame["scale"] == 1000).all()
    assert sheet_frame["survey_date"].notna().all()
    for sheet_id, geom in zip(sheet_frame["sheet_id"], sheet_frame.geometry):
        assert re.fullmatch(r"^\d+\.\d-\d+\.\d$", sheet_id)
        minx, miny, maxx, maxy = geom.bounds
        assert (minx % 500, miny % 500, maxx - minx) == (0.0, 0.0, 500.0)
        assert sheet_id == sheets.sheet_id(minx, miny, 1000)


def test_yantai_map_sheets_leave_gaps_in_the_planning_area(yantai):
    planning = yantai.features("planning_area").union_all()
    surveyed = yantai.features("map_sheet").union_all()
    assert not surveyed.contains(planning)
    assert 0.85 < planning.intersection(surveyed).area / planning.area < 0.99


def test_yantai_districts_partition_the_planning_area(yantai):
    planning = yantai.features("planning_area").union_all()
    districts = yantai.features("district")
    assert {"芝罘区", "莱山区"} <= set(districts["name"])
    assert districts.area.sum() == pytest.approx(planning.area, rel=1e-9)
    assert districts.union_all().symmetric_difference(planning).area < 1e-3
    assert planning.area > yantai.features("urban_area").union_all().area


def test_yantai_sensors_sit_on_pipes_that_exist(yantai):
    pipes = yantai.features("pipe").set_index("uid")
    sensors = yantai.features("sensor")
    assert sensors["pipe_id"].isin(pipes.index).all()
    assert sensors["uid"].str.fullmatch(r"sensor\.S-\d{4}").all()
    assert set(sensors["property"]) == {"pressure", "flow", "level", "leak"}
    units = dict(zip(sensors["property"], sensors["unit"]))
    assert units == {"pressure": "MPa", "flow": "m3/h", "level": "m", "leak": "bool"}
    on_pipe = shapely.distance(shapely.force_2d(np.asarray(pipes.loc[sensors["pipe_id"]].geometry.values)),
                               np.asarray(sensors.geometry.values))
    assert (on_pipe < 1e-6).all()
    for utility in ("water", "gas"):
        mains = pipes[pipes["utility"] == utility]
        watched = mains[mains.index.isin(sensors["pipe_id"])]
        assert 0.7 <= watched.length.sum() / mains.length.sum() <= 0.9


def test_yantai_points_carry_the_indicator_fields(yantai):
    lamps = yantai.features("lamp")
    assert 0.85 <= lamps["smart"].mean() <= 0.95
    assert yantai.features("camera")["range_m"].between(30, 80).all()
    assert yantai.features("base_station")["range_m"].between(200, 400).all()
    assert 2 <= len(yantai.features("weather_station")) <= 4
    assert yantai.features("community")["smart"].notna().all()
    assert yantai.features("school")["smart"].any()
    assert len(yantai.features("key_area")) >= 3
    assert yantai.features("manhole")["utility"].isin(["water", "gas", "storm", "sewage", "combined"]).all()


def test_ifc_lots_are_empty_but_for_the_fzk_footprint(yantai):
    to_city = Transformer.from_crs("EPSG:4326", "EPSG:4549", always_xy=True)
    buildings = yantai.features("building")
    assert set(IFC_PLACEMENTS) == {"AC20-FZK-Haus.ifc", "IfcOpenHouse_IFC4.ifc", "Duplex_A_20110907.ifc"}
    for file_name, (x, y) in ifc_lot_centres().items():
        anchor = IFC_PLACEMENTS[file_name]
        ax, ay = to_city.transform(anchor.lon, anchor.lat)
        assert float(yantai.ground_z(np.array([ax]), np.array([ay]))[0]) == pytest.approx(anchor.elevation, abs=0.1)
        half = IFC_LOT_M / 2
        inside = buildings[buildings.intersects(shapely.box(x - half, y - half, x + half, y + half))]
        if file_name == "AC20-FZK-Haus.ifc":
            assert len(inside) == 1
            footprint = inside.geometry.iloc[0]
            assert footprint.centroid.distance(shapely.Point(x, y)) < 0.05
            assert footprint.area == pytest.approx(120.0)
        else:
            assert inside.empty, file_name


@pytest.mark.real_data
def test_ky4_holds_the_real_network_with_its_length(ky4):
    assert ky4.crs.to_epsg() == 3546
    pipes = ky4.features("pipe")
    assert len(pipes) == 1156
    assert pipes.length.sum() == pytest.approx(260_241, rel=0.005)
    assert (pipes["utility"] == "water").all()
    assert pipes["diameter_mm"].between(50, 1000).all()
    sensors = ky4.features("sensor")
    assert len(sensors) == 959
    assert (sensors["property"] == "pressure").all() and (sensors["unit"] == "m").all()
    assert (sensors["uid"] == "sensor." + sensors["sensor_id"]).all()
    assert ky4.ground() is not None


def test_build_demo_refuses_to_delete_a_folder_that_is_not_a_city(tmp_path):
    (tmp_path / "yantai").mkdir()
    keep = tmp_path / "yantai" / "thesis.docx"
    keep.write_text("years of work")
    with pytest.raises(NotACity, match="not a city workspace"):
        build_demo(tmp_path, shared_data=shared())
    assert keep.read_text() == "years of work"


def test_rebuilding_the_demo_replaces_it_with_identical_features(demo):
    out, cities = demo
    before = {name: _snapshot(cities["yantai"], name) for name in ("building", "pipe", "sensor", "map_sheet")}
    ky4_before = _snapshot(cities["ky4"], "pipe")
    again = build_demo(out, shared_data=shared())
    for name, snapshot in before.items():
        assert _snapshot(again["yantai"], name) == snapshot, name
    assert _snapshot(again["ky4"], "pipe") == ky4_before


def test_demo_places_the_ifc_samples_in_their_lots_and_fuses_fzk_haus(yantai):
    bim = yantai.features("bim")
    assert set(bim["model"]) == set(IFC_PLACEMENTS)
    centres = ifc_lot_centres()
    for _, row in bim.iterrows():
        x, y = centres[row["model"]]
        assert row.geometry.centroid.distance(shapely.Point(x, y)) < 3.0, row["model"]
        assert row.geometry.within(shapely.Point(x, y).buffer(IFC_LOT_M))
    gis = yantai.features("building")
    fzk = bim[bim["model"] == "AC20-FZK-Haus.ifc"].iloc[0]
    represented = gis[gis["represented_by_bim"]]
    assert len(represented) == 1 and represented.iloc[0]["bim_uid"] == fzk["uid"]
    assert fzk["unified_id"] == represented.iloc[0]["uid"]
    assert len(yantai.features("bim-elements")) > 300
