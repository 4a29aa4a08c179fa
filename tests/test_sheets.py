"""The standard map sheet grid: names, sizes, and that it covers what it is asked to cover."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.sheets import SHEET_SIZE_M, sheet_grid, sheet_id, sheet_ids_for


@pytest.mark.parametrize("scale,x,y,name", [
    (2000, 512_000.0, 4_155_000.0, "4155.0-512.0"),
    (1000, 512_500.0, 4_155_500.0, "4155.5-512.5"),
    (500, 512_250.0, 4_155_750.0, "4155.75-512.25"),
])
def test_sheet_names_are_south_west_corners_in_km_northing_first(scale, x, y, name):
    assert sheet_id(x, y, scale) == name


def test_unknown_scale_is_refused():
    with pytest.raises(ValueError, match="1:5000|use one of"):
        sheet_grid((0, 0, 10, 10), 5000)


@settings(max_examples=60, deadline=None)
@given(x=st.floats(400_000, 700_000), y=st.floats(3_000_000, 5_000_000),
       w=st.floats(1, 3_000), h=st.floats(1, 3_000), scale=st.sampled_from(sorted(SHEET_SIZE_M)))
def test_grid_covers_any_area_with_square_uniquely_named_sheets(x, y, w, h, scale):
    grid = sheet_grid((x, y, x + w, y + h), scale)
    size = SHEET_SIZE_M[scale]
    assert grid["sheet_id"].is_unique
    assert np.allclose(grid.area, size * size)
    assert shapely.box(x, y, x + w, y + h).difference(grid.union_all()).area < 1e-6
    # no sheet lies wholly outside the area
    assert grid.intersects(shapely.box(x, y, x + w, y + h)).all()
    # names match the corner they are named by
    assert (sheet_ids_for(np.asarray(grid.geometry.values), scale) == grid["sheet_id"].to_numpy()).all()


def test_surveyed_sheets_a_little_off_the_grid_still_get_their_standard_name():
    sheet = shapely.box(623_000.3, 4_154_999.6, 623_500.2, 4_155_500.1)
    assert sheet_ids_for(np.array([sheet]), 1000).tolist() == ["4155.0-623.0"]
