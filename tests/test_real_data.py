"""The proof on files nobody here made: the KY4 water network and DEM, and Back Bay buildings."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from pyproj import Transformer

from conftest import shared
from twin.workspace import City

KY4_TOTAL_LENGTH_M = 260_241.0
FT_US = 1200 / 3937


@pytest.fixture(scope="module")
def ky4(tmp_path_factory) -> City:
    """The KY4 network in a metric city CRS (EPSG:3546), sources in US survey feet (EPSG:3547)."""
    root = tmp_path_factory.mktemp("ky4")
    spec = root / "pipes.toml"
    spec.write_text('id = "name"\n[fields]\nutility = { value = "water" }\n'
                    'diameter_mm = { column = "diameter", scale = 1000 }\n')
    junctions = root / "junctions.toml"
    junctions.write_text('id = "name"\n[fields]\nsensor_id = "name"\nproperty = { value = "pressure" }\n'
                         'unit = { value = "m" }\n')
    city = City.init(root / "city", "EPSG:3546", name="KY4")
    city.ingest(shared("pipes", "ky4_pipes.geojson"), "pipe", spec=spec)
    city.ingest(shared("pipes", "ky4_junctions.geojson"), "sensor", spec=junctions)
    city.ingest(shared("dem", "ky4_elevation.tif"), "dem")
    return city


def test_ky4_pipes_keep_count_ids_and_total_length_in_metres(ky4):
    pipes = ky4.features("pipe")
    assert len(pipes) == 1156
    assert pipes["uid"].is_unique and "pipe.P-1" in set(pipes["uid"])
    assert pipes.length.sum() == pytest.approx(KY4_TOTAL_LENGTH_M, rel=0.005)
    # each segment's own length in metres agrees with the model's (EPANET) length attribute
    assert np.median(np.abs(pipes.length / pipes["length"] - 1)) < 0.01
    assert pipes["diameter_mm"].min() > 50 and pipes["diameter_mm"].max() < 1000


def test_ky4_junctions_become_sensors(ky4):
    sensors = ky4.features("sensor")
    assert len(sensors) == 959
    assert set(sensors["property"]) == {"pressure"}
    assert sensors["sensor_id"].str.match(r"^(J-\d+[a-z]?|[IO]-Pump-\d)$").all()


def test_ky4_ground_agrees_with_the_original_dem(ky4):
    """Sample the model at the junctions and the source DEM (in feet) at the same places."""
    sensors = ky4.features("sensor")
    x, y = sensors.geometry.x.to_numpy(), sensors.geometry.y.to_numpy()
    to_feet = Transformer.from_crs("EPSG:3546", "EPSG:3547", always_xy=True)
    fx, fy = to_feet.transform(x, y)
    with rasterio.open(shared("dem", "ky4_elevation.tif")) as src:
        raw = np.array([v[0] for v in src.sample(zip(fx, fy), masked=True)], dtype="float64")
        nodata = src.nodata
    model = ky4.ground_z(x, y)
    ok = np.isfinite(model) & (raw != nodata)
    assert ok.sum() > 900
    diff = np.abs(model[ok] - raw[ok])
    # nearest-cell source vs bilinear model on a 28 m grid: close, never far
    assert np.median(diff) < 1.0 and diff.max() < 15.0
    assert 117 <= model[ok].min() and model[ok].max() <= 227
    # the junction elevations of the hydraulic model come from the same terrain
    assert np.median(np.abs(model[ok] - sensors["elevation"].to_numpy()[ok])) < 3.0
    assert sensors["ground_z"].to_numpy()[ok] == pytest.approx(model[ok])


def test_ky4_pipes_run_below_the_ground(ky4):
    pipes = ky4.features("pipe")
    assert pipes.has_z.all()
    coords = np.concatenate([np.asarray(g.coords) for g in pipes.geometry])
    ground = ky4.ground_z(coords[:, 0], coords[:, 1])
    ok = np.isfinite(ground)
    depth = ground[ok] - coords[ok, 2]
    assert depth.min() > 1.0 and depth.max() < 2.0  # assumed 1 m cover plus the radius


def test_ky4_dem_is_in_metres_after_feet(ky4):
    record = ky4.layer("dem")
    (minx, miny, maxx, maxy) = record.bounds
    with rasterio.open(shared("dem", "ky4_elevation.tif")) as src:
        width_ft = src.bounds.right - src.bounds.left
    assert (maxx - minx) == pytest.approx(width_ft * FT_US, rel=0.01)


def test_back_bay_buildings_ingest_with_heights_from_storeys(tmp_path):
    spec = tmp_path / "bb.toml"
    spec.write_text('[fields]\nfloors = "story_ht_"\n')
    city = City.init(tmp_path / "boston", "EPSG:26986", name="Back Bay")  # NAD83 / Massachusetts Mainland
    record = city.ingest(shared("buildings", "boston_backbay_buildings.geojson"), "building", spec=spec)
    buildings = city.features("building")
    assert record.feature_count == len(buildings) == 2035
    assert buildings.is_valid.all()
    known = buildings["floors"] > 0
    assert int(known.sum()) == 1321 and buildings["floors"].max() == 62
    assert buildings.loc[known, "height_m"].equals(buildings.loc[known, "floors"].astype("float64") * 3.0)
    west, south, east, north = record.bounds_wgs84
    assert -71.09 < west < east < -71.06 and 42.34 < south < north < 42.36
    assert 50 < buildings.area.median() < 1000  # m², a sane footprint
