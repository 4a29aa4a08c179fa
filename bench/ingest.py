"""Benchmark: ingest a million-segment pipe survey, against `ogr2ogr -f GPKG` as the reference.

Run by hand from the repository root::

    .venv/bin/python bench/ingest.py                      # 1,000,000 features, 3 rounds
    .venv/bin/python bench/ingest.py --features 200000 --rounds 5
    .venv/bin/python bench/ingest.py --features 200000 --profile

The synthetic survey (LineStrings of 2-4 vertices on a ~30 km grid in EPSG:4549, with
the columns of a Chinese pipe survey) is written once as FlatGeobuf under bench/out/
and reused. Each round times, one after the other so that every contender sees the same
machine state:

a) ``ogr2ogr -f GPKG out.gpkg input.fgb`` into a fresh file (the reference);
b) ``City.ingest(input, "pipe", spec=...)`` in this process, into a fresh city made by
   ``twin init`` (only the ingest call is timed);
c) ``twin ingest CITY FILE --kind pipe --spec SPEC -q`` as a subprocess (start-up included);
d) pyogrio ``read_arrow`` -> ``write_arrow`` to GPKG: what the GDAL bundled with pyogrio
   costs for the bare copy, the floor under (b).

The target is (b) <= 1.5 x (a) by the median; the exit status is 1 when it is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from report import cpu_model, print_hottest_calls, print_project_functions

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
CITY_CRS = "EPSG:4549"
CENTRE = (512_000.0, 4_155_000.0)
EXTENT_M = 30_000.0
TARGET_RATIO = 1.5

DIAMETERS_MM = np.array([100, 150, 200, 300, 400, 500, 600, 800, 1000, 1200])
MATERIALS = np.array(["PE", "HDPE", "PVC", "球墨铸铁", "钢", "混凝土"])
UTILITIES = np.array(["给水", "雨水", "污水", "燃气"])

SPEC_TOML = """\
kind = "pipe"
id = "pipe_code"

[fields]
diameter_mm = "管径"
material = "材质"
depth_m = "埋深"
utility = "管线类型"
install_year = "建设年代"
"""


def synthetic_pipes(n: int, seed: int = 4549) -> gpd.GeoDataFrame:
    """A pipe survey of `n` short segments on a street grid over EXTENT_M x EXTENT_M, in EPSG:4549."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    spacing = EXTENT_M / side
    i = np.arange(n)
    x0 = CENTRE[0] - EXTENT_M / 2 + (i % side) * spacing + rng.normal(0, spacing * 0.05, n)
    y0 = CENTRE[1] - EXTENT_M / 2 + (i // side) * spacing + rng.normal(0, spacing * 0.05, n)
    east = (i % 2 == 0)  # half the segments run along the east-west streets, half north-south
    vertices = rng.integers(2, 5, n)
    length = spacing * rng.uniform(0.6, 0.95, n)

    feature = np.repeat(i, vertices)
    first = np.cumsum(vertices) - vertices
    step = np.arange(len(feature)) - np.repeat(first, vertices)  # 0..k-1 within each segment
    along = step / np.repeat(vertices - 1, vertices) * np.repeat(length, vertices)
    across = np.where(step == 0, 0.0, rng.normal(0, spacing * 0.02, len(feature)))
    e = np.repeat(east, vertices)
    x = np.repeat(x0, vertices) + np.where(e, along, across)
    y = np.repeat(y0, vertices) + np.where(e, across, along)
    geometry = shapely.linestrings(np.column_stack([x, y]), indices=feature)

    codes = pd.Series(i + 1).astype(str).str.zfill(7)
    frame = pd.DataFrame({
        "pipe_code": ("PS" + codes).to_numpy(dtype=object),
        "管径": rng.choice(DIAMETERS_MM, n).astype("int32"),
        "材质": rng.choice(MATERIALS, n).astype(object),
        "埋深": np.round(rng.uniform(0.8, 4.0, n), 2),
        "管线类型": rng.choice(UTILITIES, n).astype(object),
        "建设年代": rng.integers(1980, 2025, n).astype("int32"),
    })
    return gpd.GeoDataFrame(frame, geometry=geometry, crs=CITY_CRS)


def ensure_source(n: int) -> tuple[Path, Path]:
    """The cached FlatGeobuf of `n` pipes and its spec, written on first use."""
    OUT.mkdir(parents=True, exist_ok=True)
    fgb = OUT / f"pipes_{n}.fgb"
    spec = OUT / "pipes.spec.toml"
    spec.write_text(SPEC_TOML, encoding="utf-8")
    if fgb.exists():
        print(f"source: {fgb} (cached)")
        return fgb, spec
    t = time.perf_counter()
    frame = synthetic_pipes(n)
    made = time.perf_counter() - t
    staged = OUT / f"pipes_{n}.partial.fgb"  # GDAL writes a folder for a name not ending .fgb
    staged.unlink(missing_ok=True)
    t = time.perf_counter()
    # Written under another name first so an interrupted run never leaves a truncated cache.
    pyogrio.write_dataframe(frame, staged, driver="FlatGeobuf", use_arrow=True)
    os.replace(staged, fgb)
    print(f"source: {fgb} (generated in {made:.1f} s, written in {time.perf_counter() - t:.1f} s)")
    return fgb, spec


def warm_page_cache(path: Path) -> None:
    """Read a file once so the first timed round does not pay for the disk."""
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def fresh_dir(path: Path) -> Path:
    """An empty folder at `path`, removing what a previous round left."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def twin_cli() -> list[str]:
    """The `twin` command of this virtualenv."""
    exe = Path(sys.executable).with_name("twin")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "twin.cli"]


def twin_init(city: Path) -> None:
    """`twin init CITY --crs EPSG:4549`, untimed."""
    shutil.rmtree(city, ignore_errors=True)
    subprocess.run([*twin_cli(), "init", str(city), "--crs", CITY_CRS], check=True, cwd=REPO,
                   stdout=subprocess.DEVNULL)


def run_ogr2ogr(source: Path, work: Path) -> float:
    """Seconds for `ogr2ogr -f GPKG` into a fresh file."""
    target = fresh_dir(work / "ogr2ogr") / "out.gpkg"
    t = time.perf_counter()
    subprocess.run(["ogr2ogr", "-f", "GPKG", str(target), str(source)], check=True)
    return time.perf_counter() - t


def run_in_process(source: Path, spec: Path, work: Path) -> float:
    """Seconds for City.ingest in this process (the city is made beforehand, untimed)."""
    from twin.workspace import City

    city_dir = work / "city_inproc"
    twin_init(city_dir)
    city = City.open(city_dir)
    gc.collect()
    t = time.perf_counter()
    record = city.ingest(source, "pipe", spec=spec)
    elapsed = time.perf_counter() - t
    if record.feature_count <= 0:
        raise RuntimeError(f"ingest of {source} stored no features")
    return elapsed


def run_cli(source: Path, spec: Path, work: Path) -> float:
    """Seconds for `twin ingest ... -q` as a subprocess, interpreter start-up included."""
    city_dir = work / "city_cli"
    twin_init(city_dir)
    t = time.perf_counter()
    subprocess.run([*twin_cli(), "ingest", str(city_dir), str(source), "--kind", "pipe", "--spec", str(spec), "-q"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def run_pyogrio_copy(source: Path, work: Path) -> float:
    """Seconds for pyogrio read_arrow -> write_arrow to GPKG: the bare copy with pyogrio's own GDAL."""
    target = fresh_dir(work / "pyogrio") / "out.gpkg"
    gc.collect()
    t = time.perf_counter()
    meta, table = pyogrio.read_arrow(source)
    pyogrio.write_arrow(table, target, driver="GPKG", crs=meta["crs"], geometry_name=meta["geometry_name"] or "geometry",
                        geometry_type=meta["geometry_type"], layer_options={"SPATIAL_INDEX": "YES"})
    return time.perf_counter() - t


def profile_in_process(source: Path, spec: Path, work: Path, top: int) -> None:
    """One in-process ingest under cProfile: the project's functions by cumulative time, then the hottest calls."""
    from twin.workspace import City

    city_dir = work / "city_profile"
    twin_init(city_dir)
    city = City.open(city_dir)
    gc.collect()
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    city.ingest(source, "pipe", spec=spec)
    profiler.disable()
    print(f"\nprofile of one in-process ingest ({time.perf_counter() - t:.2f} s under cProfile)")
    stats = pstats.Stats(profiler)
    print_project_functions(stats, top)
    print_hottest_calls(stats, top)


def describe_machine() -> None:
    """Print what a closing note needs to make the figures comparable."""
    cpu = cpu_model()
    ogr = subprocess.run(["ogr2ogr", "--version"], capture_output=True, text=True).stdout.strip()
    print(f"machine: {os.cpu_count()} CPUs (nproc), {cpu}, {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}; ogr2ogr: {ogr}")
    print(f"pyogrio {pyogrio.__version__} (GDAL {pyogrio.__gdal_version_string__}), shapely {shapely.__version__} "
          f"(GEOS {shapely.geos_version_string}), geopandas {gpd.__version__}, pandas {pd.__version__}, "
          f"numpy {np.__version__}")


def summarise(label: str, times: list[float], n: int) -> None:
    """One line: best and median seconds and features per second."""
    best, median = min(times), statistics.median(times)
    print(f"  {label:<34} best {best:7.2f} s ({n / best:>10,.0f} f/s)   median {median:7.2f} s "
          f"({n / median:>10,.0f} f/s)   rounds {', '.join(f'{t:.2f}' for t in times)}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=int, default=1_000_000, help="pipe segments in the source (default 1,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender, alternating (default 3)")
    parser.add_argument("--no-cli", action="store_true", help="skip the `twin ingest` subprocess figure")
    parser.add_argument("--no-floor", action="store_true", help="skip the pyogrio copy figure")
    parser.add_argument("--profile", action="store_true", help="after the rounds, profile one in-process ingest")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile to print (default 30)")
    args = parser.parse_args(argv)
    if args.features < 1 or args.rounds < 1:
        parser.error(f"--features and --rounds must be at least 1, got {args.features} and {args.rounds}")
    if shutil.which("ogr2ogr") is None:
        parser.error("ogr2ogr is not on PATH (apt-get install gdal-bin)")

    describe_machine()
    source, spec = ensure_source(args.features)
    n = pyogrio.read_info(source)["features"]
    print(f"{n:,} features, {source.stat().st_size / 1e6:.1f} MB FlatGeobuf, spec {spec}")
    warm_page_cache(source)
    work = OUT / "work"

    contenders: dict[str, Callable[[], float]] = {
        "a) ogr2ogr -f GPKG": lambda: run_ogr2ogr(source, work),
        "b) City.ingest (in-process)": lambda: run_in_process(source, spec, work),
    }
    if not args.no_cli:
        contenders["c) twin ingest -q (subprocess)"] = lambda: run_cli(source, spec, work)
    if not args.no_floor:
        contenders["d) pyogrio arrow copy (floor)"] = lambda: run_pyogrio_copy(source, work)
    times: dict[str, list[float]] = {label: [] for label in contenders}
    for r in range(args.rounds):
        for label, run in contenders.items():
            times[label].append(run())
            print(f"round {r + 1}/{args.rounds}  {label:<34} {times[label][-1]:7.2f} s", flush=True)

    sizes = {"ogr2ogr": work / "ogr2ogr" / "out.gpkg", "ours": work / "city_inproc" / "city.gpkg"}
    print(f"\n{n:,} pipe segments, {args.rounds} rounds each "
          f"(GPKG sizes: ogr2ogr {sizes['ogr2ogr'].stat().st_size / 1e6:.0f} MB, "
          f"ours {sizes['ours'].stat().st_size / 1e6:.0f} MB)")
    for label, ts in times.items():
        summarise(label, ts, n)
    ref = times["a) ogr2ogr -f GPKG"]
    verdicts = []
    for label in [k for k in times if k.startswith(("b)", "c)"))]:
        best = min(times[label]) / min(ref)
        median = statistics.median(times[label]) / statistics.median(ref)
        if label.startswith("b)"):
            verdicts.append(median <= TARGET_RATIO)
        print(f"  ratio {label[3:]:<31} / ogr2ogr: best {best:.2f}x, median {median:.2f}x "
              f"(target <= {TARGET_RATIO}x: {'met' if median <= TARGET_RATIO else 'NOT met'})")

    if args.profile:
        profile_in_process(source, spec, work, args.top)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
