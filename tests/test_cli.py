"""The `twin` command line, run as a user runs it: the installed entry point in a subprocess."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import YANTAI_X, YANTAI_Y, pipe_features, write_dem, write_geojson

TWIN = shutil.which("twin", path=str(Path(sys.executable).parent)) or "twin"


def twin(*args: str | Path) -> subprocess.CompletedProcess:
    """Run the CLI and return its result (never raises on a non-zero exit)."""
    return subprocess.run([TWIN, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_init_ingest_layers_round_trip(tmp_path, pipe_spec):
    city = tmp_path / "yantai"
    result = twin("init", city, "--crs", "EPSG:4549", "--name", "烟台")
    assert result.returncode == 0, result.stderr
    assert "EPSG:4549" in result.stdout
    src = write_geojson(tmp_path / "pipes.geojson", pipe_features(3))
    result = twin("ingest", city, src, "--kind", "pipe", "--spec", pipe_spec)
    assert result.returncode == 0, result.stderr
    assert "layer pipe (pipe): 3 features, version 1" in result.stdout
    result = twin("ingest", city, write_dem(tmp_path / "dem.tif"), "--kind", "dem", "--layer", "dem")
    assert result.returncode == 0, result.stderr
    result = twin("layers", city, "--json")
    assert result.returncode == 0, result.stderr
    catalogue = {r["name"]: r for r in json.loads(result.stdout)}
    assert set(catalogue) == {"pipe", "dem"}
    assert catalogue["pipe"]["feature_count"] == 3 and catalogue["pipe"]["kind"] == "pipe"
    assert catalogue["pipe"]["crs"] == "EPSG:4549" and len(catalogue["pipe"]["bounds"]) == 4
    assert catalogue["pipe"]["version"] == 2, "the new DEM re-draped the pipes"
    table = twin("layers", city)
    assert table.returncode == 0 and "pipe" in table.stdout and "dem" in table.stdout
    ground = twin("ground", city, str(YANTAI_X), str(YANTAI_Y))
    assert ground.returncode == 0 and float(ground.stdout) == pytest.approx(105.0, abs=0.01)


def test_ingest_with_crs_option_for_a_file_without_one(tmp_path):
    city = tmp_path / "c"
    twin("init", city, "--crs", "EPSG:4549")
    src = write_geojson(tmp_path / "p.geojson", pipe_features(2), crs=None)
    refused = twin("ingest", city, src, "--kind", "pipe")
    assert refused.returncode == 1
    assert "p.geojson: has no CRS" in refused.stderr and "--crs EPSG" in refused.stderr
    assert "Traceback" not in refused.stderr
    accepted = twin("ingest", city, src, "--kind", "pipe", "--crs", "EPSG:4549")
    assert accepted.returncode == 0, accepted.stderr


def test_init_refuses_a_geographic_or_feet_crs(tmp_path):
    result = twin("init", tmp_path / "c", "--crs", "EPSG:4490")
    assert result.returncode == 1 and "is not projected" in result.stderr and "EPSG:4549" in result.stderr
    result = twin("init", tmp_path / "c", "--crs", "EPSG:3547")
    assert result.returncode == 1 and "US survey foot" in result.stderr
    assert not (tmp_path / "c").exists(), "a refused init leaves nothing behind"


def test_init_refuses_an_existing_city(tmp_path):
    assert twin("init", tmp_path / "c", "--crs", "EPSG:4549").returncode == 0
    again = twin("init", tmp_path / "c", "--crs", "EPSG:4549")
    assert again.returncode == 1 and "already holds a city" in again.stderr


def test_commands_on_a_folder_that_is_not_a_city(tmp_path):
    result = twin("layers", tmp_path)
    assert result.returncode == 1 and "is not a city workspace" in result.stderr and "twin init" in result.stderr


def test_sheets_grid_names_the_sheets_over_the_planning_area(tmp_path):
    city = tmp_path / "c"
    twin("init", city, "--crs", "EPSG:4549")
    area = write_geojson(tmp_path / "area.geojson", [{"geometry": {"type": "Polygon", "coordinates": [[
        [623_100, 4_155_100], [623_900, 4_155_100], [623_900, 4_155_400], [623_100, 4_155_400], [623_100, 4_155_100]]]},
        "properties": {"name": "规划区"}}])
    assert twin("ingest", city, area, "--kind", "planning_area").returncode == 0
    result = twin("sheets", "grid", city, "--scale", "1000")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["4155.0-623.0", "4155.0-623.5"]
