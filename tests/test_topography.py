"""DEMs into COGs, ground sampling, and ground z applied to buildings, points and pipes."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely

from conftest import YANTAI_X, YANTAI_Y, pipe_features, point, square, write_dem, write_geojson
from twin.errors import InvalidRaster, MissingCRS
from twin.topography import pipe_axis_z


def plane(x):
    """The test DEM's surface: 100 m at its west edge rising 1 m per 100 m east."""
    return 100.0 + 0.01 * (x - (YANTAI_X - 500))


def test_dem_is_stored_as_a_cog_in_the_city_crs(city, tmp_path):
    record = city.ingest(write_dem(tmp_path / "dem.tif", crs="EPSG:4326", origin=(121.39, 37.54), cell=0.0001,
                                   slope=0.0), "dem")
    path = city.store.raster_path("dem")
    with rasterio.open(path) as cog:
        assert cog.crs.to_epsg() == 4549
        assert cog.profile.get("tiled") and cog.overviews(1) is not None
        assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    assert record.kind == "dem" and record.geometry_type == "raster"


def test_ground_is_sampled_bilinearly(city, tmp_path):
    city.ingest(write_dem(tmp_path / "dem.tif"), "dem")
    xs = np.array([YANTAI_X - 300.0, YANTAI_X, YANTAI_X + 123.4])
    ys = np.array([YANTAI_Y, YANTAI_Y + 200, YANTAI_Y - 400])
    assert city.ground_z(xs, ys) == pytest.approx(plane(xs), abs=1e-3)
    assert np.isnan(city.ground_z(np.array([YANTAI_X + 5000.0]), np.array([YANTAI_Y]))).all()


def test_dem_without_crs_is_refused_and_accepted_with_one(city, tmp_path):
    dem = write_dem(tmp_path / "nocrs.tif", crs=None)
    with pytest.raises(MissingCRS, match=r"nocrs\.tif: has no CRS; give it with --crs"):
        city.ingest(dem, "dem")
    assert city.layers() == []
    city.ingest(dem, "dem", crs="EPSG:4549")
    assert city.ground_z(np.array([YANTAI_X]), np.array([YANTAI_Y])) == pytest.approx(plane(YANTAI_X), abs=1e-3)


def test_a_file_that_is_not_a_raster_is_refused(city, tmp_path):
    bogus = tmp_path / "dem.tif"
    bogus.write_bytes(b"II*\x00 truncated")
    with pytest.raises(InvalidRaster, match=r"dem\.tif: is not a raster"):
        city.ingest(bogus, "dem")


def test_a_multiband_raster_is_refused_as_dem(city, tmp_path):
    path = tmp_path / "rgb.tif"
    with rasterio.open(path, "w", driver="GTiff", width=4, height=4, count=3, dtype="uint8", crs="EPSG:4549",
                       transform=rasterio.transform.from_origin(YANTAI_X, YANTAI_Y, 1, 1)) as dst:
        dst.write(np.zeros((3, 4, 4), dtype="uint8"))
    with pytest.raises(InvalidRaster, match="has 3 bands"):
        city.ingest(path, "dem")


def test_failed_dem_ingest_keeps_the_previous_dem(city, tmp_path):
    city.ingest(write_dem(tmp_path / "dem.tif"), "dem")
    before = city.layer("dem")
    with pytest.raises(MissingCRS):
        city.ingest(write_dem(tmp_path / "nocrs.tif", crs=None, base=0.0), "dem")
    assert city.layer("dem") == before
    assert city.ground_z(np.array([YANTAI_X]), np.array([YANTAI_Y])) == pytest.approx(plane(YANTAI_X), abs=1e-3)


def test_pipes_lie_at_ground_minus_cover_minus_radius(city, tmp_path, pipe_spec):
    city.ingest(write_dem(tmp_path / "dem.tif"), "dem")
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(2)), "pipe", spec=pipe_spec)
    pipes = city.features("pipe")
    assert pipes.has_z.all()
    for geom, diameter in zip(pipes.geometry, pipes["diameter_mm"]):
        coords = np.asarray(geom.coords)
        assert len(coords) > 2, "densified to follow the terrain"
        expected = plane(coords[:, 0]) - 1.5 - diameter / 2000
        assert coords[:, 2] == pytest.approx(expected, abs=1e-3)
    assert pipes.length.sum() == pytest.approx(200.0), "2D length is unchanged by draping"


def test_a_new_dem_redrapes_layers_already_in_the_city(city, tmp_path, pipe_spec):
    city.ingest(write_geojson(tmp_path / "p.geojson", pipe_features(1)), "pipe", spec=pipe_spec)
    city.ingest(write_geojson(tmp_path / "m.geojson", [{"geometry": point(YANTAI_X, YANTAI_Y)}]), "manhole")
    assert not city.features("pipe").has_z.any()
    city.ingest(write_dem(tmp_path / "dem.tif"), "dem")
    assert city.features("pipe").has_z.all()
    assert city.features("manhole")["ground_z"].iloc[0] == pytest.approx(plane(YANTAI_X), abs=1e-3)
    city.ingest(write_dem(tmp_path / "dem2.tif", base=50.0), "dem")
    assert city.features("manhole")["ground_z"].iloc[0] == pytest.approx(plane(YANTAI_X) - 50, abs=1e-3)


def test_buildings_stand_on_the_lowest_ground_of_their_footprint(city, tmp_path):
    city.ingest(write_dem(tmp_path / "dem.tif"), "dem")
    city.ingest(write_geojson(tmp_path / "b.geojson", [{"geometry": square(YANTAI_X, YANTAI_Y, 40),
                                                        "properties": {"height_m": 10}}]), "building")
    assert city.features("building")["ground_z"].iloc[0] == pytest.approx(plane(YANTAI_X), abs=1e-3)


def test_pipe_axis_z_uses_cover_depth_and_radius():
    assert pipe_axis_z(np.array([10.0]), np.array([1.5]), np.array([400.0])) == pytest.approx([8.3])
    assert pipe_axis_z(np.array([10.0]), np.array([1.0]), np.array([np.nan])) == pytest.approx([9.0])


def test_drape_handles_multilines_and_vertices_off_the_dem():
    from twin.topography import drape_pipes

    lines = np.array([shapely.LineString([(0, 0), (100, 0)]),
                      shapely.MultiLineString([[(0, 0), (10, 0)], [(20, 20), (30, 30)]])])
    draped, assumed, off = drape_pipes(lines, np.array([1.0, np.nan]), np.array([200.0, np.nan]),
                                       lambda x, y: np.where(x < 50, x, np.nan), 25)
    assert assumed == 1 and off == 0
    assert np.asarray(draped[0].coords)[:, 2] == pytest.approx([-1.1, 23.9, 23.9, 23.9, 23.9])
    assert draped[1].geom_type == "MultiLineString" and draped[1].has_z
