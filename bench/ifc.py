"""Benchmark: IFC ingest against the bare IfcOpenShell geometry iterator as the floor.

Run by hand from the repository root::

    .venv/bin/python bench/ifc.py                          # every sample + 20,000 generated elements, 3 rounds
    .venv/bin/python bench/ifc.py --only Duplex --rounds 5
    .venv/bin/python bench/ifc.py --only generated --elements 5000
    .venv/bin/python bench/ifc.py --only Carwash --profile  # then cProfile one in-process ingest

The samples are the public files in the shared data folder ($TWIN_SHARED_DATA, else
../shared/data beside the repository), each in a city of the CRS where it stands. The
generated model (a grid of columns, beams, slabs and walls over the storeys of one
IfcBuilding, every element with a representation of its own, placed by an
IfcMapConversion to EPSG:4549) is built once with ifcopenshell.api and kept under
bench/out/. Each round runs, alternating, one fresh subprocess per contender, so that each
reports its own peak memory (VmHWM, see `peak_mb`) and no IFC cache of a previous run
can help:

a) the floor: ``ifcopenshell.open`` (or, for a release-candidate schema, the header rewrite
   our reader does) and one ``ifcopenshell.geom.iterator`` pass with ``use-world-coords``,
   ``multiprocessing.cpu_count()`` threads and the classes our reader excludes (openings,
   spaces, ...), taking every shape and doing nothing with it;
b) ours: ``City.init`` into a fresh folder (untimed), then ``city.ingest(path, anchor=...)``
   (timed: reading, meshes, footprints, GLBs, the store); in the same process a second,
   unchanged ``city.ingest`` (nothing to do), and a third with the model moved about 100 m
   east by an anchor (the geometry comes from the city's cache, the placement is redone).

Imports happen before the clock starts on both sides. The targets are (b) <= 1.5 x (a) by
the median, and the unchanged re-ingest <= 5 % of the first; the exit status is 1 when
one is missed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import math
import multiprocessing
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from report import cpu_model, print_hottest_calls, print_project_functions

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
OUT = BENCH_DIR / "out"
WORK = OUT / "ifc-work"
TARGET_RATIO = 1.5
TARGET_REINGEST = 0.05
MOVE_DEG = 0.001  # the "moved" anchor: this far east of where the model stood (~80-100 m)

# file: (city CRS where the model stands, anchor for files without georeferencing)
SAMPLES = {
    "AC20-FZK-Haus.ifc": ("EPSG:25832", None),
    "Duplex_A_20110907.ifc": ("EPSG:26916", None),
    "KIT-Simple-Road-Test-IFC4x3_RC2.ifc": ("EPSG:32640", None),
    "IfcOpenHouse_IFC4.ifc": ("EPSG:4549", "121.40,37.53"),
    "Mini_Project_Carwash_Tekla.ifc": ("EPSG:4549", "121.41,37.52"),
}
SKIPPED = {"geographic-referencing_IFC4_KIT.ifc": "no geometry at all, refused by design (NoGeometry)"}

GENERATED_CRS = "EPSG:4549"
GENERATED_ORIGIN = (623_000.0, 4_155_000.0)
BAY_M = 6.0
STOREY_M = 3.5
GRID_NODES = 20  # columns per side of a storey's grid


@dataclass
class Case:
    """One file to ingest: its label, path, city CRS and anchor."""

    name: str
    path: Path
    crs: str
    anchor: str | None


def shared_data() -> Path:
    """The shared real-data folder: $TWIN_SHARED_DATA, else ../shared/data beside the repository."""
    env = os.environ.get("TWIN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


# -- the generated model --------------------------------------------------------------------

def storey_slots(nodes: int):
    """The elements of one storey's grid: (ifc class, grid i, grid j), column by column."""
    for i in range(nodes):
        for j in range(nodes):
            yield "IfcColumn", i, j
            if i < nodes - 1:
                yield "IfcBeam", i, j  # along +X
            if j < nodes - 1:
                yield "IfcMember", i, j  # a beam along +Y (IfcMember keeps the two apart in counts)
            if i < nodes - 1 and j < nodes - 1:
                yield "IfcSlab", i, j
            if i < nodes - 1 and j % 2 == 0:
                yield "IfcWall", i, j


def build_generated(path: Path, elements: int) -> None:
    """Write an IFC4 building of `elements` elements, each with a representation of its own."""
    import numpy as np
    import ifcopenshell.api.aggregate
    import ifcopenshell.api.context
    import ifcopenshell.api.geometry as geometry
    import ifcopenshell.api.georeference
    import ifcopenshell.api.project
    import ifcopenshell.api.root as root
    import ifcopenshell.api.spatial
    import ifcopenshell.api.unit

    model = ifcopenshell.api.project.create_file(version="IFC4")
    project = root.create_entity(model, ifc_class="IfcProject", name="bench grid")
    ifcopenshell.api.unit.assign_unit(model, units=[ifcopenshell.api.unit.add_si_unit(model, unit_type="LENGTHUNIT")])
    context = ifcopenshell.api.context.add_context(model, context_type="Model")
    body = ifcopenshell.api.context.add_context(model, context_type="Model", context_identifier="Body",
                                                target_view="MODEL_VIEW", parent=context)
    site = root.create_entity(model, ifc_class="IfcSite", name="site")
    building = root.create_entity(model, ifc_class="IfcBuilding", name=f"grid of {elements} elements")
    ifcopenshell.api.aggregate.assign_object(model, relating_object=project, products=[site])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=site, products=[building])
    for entity in (site, building):
        geometry.edit_object_placement(model, product=entity)

    per_storey = sum(1 for _ in storey_slots(GRID_NODES))
    along_y = np.array([[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)  # +X turned to +Y
    made = 0
    for level in range(math.ceil(elements / per_storey)):
        z = level * STOREY_M
        storey = root.create_entity(model, ifc_class="IfcBuildingStorey", name=f"level {level:02d}")
        ifcopenshell.api.aggregate.assign_object(model, relating_object=building, products=[storey])
        matrix = np.eye(4)
        matrix[2, 3] = z
        geometry.edit_object_placement(model, product=storey, matrix=matrix, is_si=True)
        contained = []
        for ifc_class, i, j in storey_slots(GRID_NODES):
            if made == elements:
                break
            x, y = i * BAY_M, j * BAY_M
            matrix = np.eye(4)
            if ifc_class == "IfcColumn":
                profile = model.create_entity("IfcRectangleProfileDef", ProfileType="AREA", XDim=0.4, YDim=0.4)
                rep = geometry.add_profile_representation(model, context=body, profile=profile, depth=STOREY_M - 0.5)
                matrix[:3, 3] = (x, y, z)
            elif ifc_class in ("IfcBeam", "IfcMember"):
                # extruded along the placement's Z, turned to run along +X (beams) or +Y (members)
                profile = model.create_entity("IfcRectangleProfileDef", ProfileType="AREA", XDim=0.3, YDim=0.5)
                rep = geometry.add_profile_representation(model, context=body, profile=profile, depth=BAY_M - 0.4)
                matrix = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
                if ifc_class == "IfcMember":
                    matrix = along_y @ matrix
                matrix[:3, 3] = (x + 0.2, y, z + STOREY_M - 0.45) if ifc_class == "IfcBeam" else \
                    (x, y + 0.2, z + STOREY_M - 0.45)
            elif ifc_class == "IfcSlab":
                square = [(0.0, 0.0), (BAY_M, 0.0), (BAY_M, BAY_M), (0.0, BAY_M)]
                rep = geometry.add_slab_representation(model, context=body, depth=0.2, polyline=square)
                matrix[:3, 3] = (x, y, z + STOREY_M - 0.2)
            else:
                rep = geometry.add_wall_representation(model, context=body, length=BAY_M - 0.4, height=STOREY_M - 0.5,
                                                       thickness=0.2)
                matrix[:3, 3] = (x + 0.2, y - 0.1, z)
            product = root.create_entity(model, ifc_class=ifc_class, name=f"{ifc_class[3:].lower()} {level}-{i}-{j}")
            geometry.edit_object_placement(model, product=product, matrix=matrix, is_si=True)
            geometry.assign_representation(model, product=product, representation=rep)
            contained.append(product)
            made += 1
        ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=contained)
    ifcopenshell.api.georeference.add_georeferencing(model)
    ifcopenshell.api.georeference.edit_georeferencing(
        model, coordinate_operation={"Eastings": GENERATED_ORIGIN[0], "Northings": GENERATED_ORIGIN[1],
                                     "OrthogonalHeight": 0.0},
        projected_crs={"Name": GENERATED_CRS})
    model.write(str(path))


def ensure_generated(elements: int) -> Path:
    """The cached generated model of `elements` elements, built on first use."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"ifc_generated_{elements}.ifc"
    facts = path.with_suffix(".json")
    if path.exists():
        built = json.loads(facts.read_text())["build_s"] if facts.exists() else float("nan")
        print(f"generated model: {path} (cached; built in {built:.1f} s)")
        return path
    staged = path.with_suffix(".partial.ifc")
    t = time.perf_counter()
    build_generated(staged, elements)
    built = time.perf_counter() - t
    # Written under another name first so an interrupted run never leaves a truncated cache.
    os.replace(staged, path)
    facts.write_text(json.dumps({"elements": elements, "build_s": round(built, 2)}) + "\n")
    print(f"generated model: {path} (built in {built:.1f} s, {path.stat().st_size / 1e6:.1f} MB)")
    return path


# -- the contenders, each in a subprocess of its own -----------------------------------------

def peak_mb() -> float:
    """This process's peak resident memory so far, in MB.

    VmHWM, the high-water mark of this process's own memory map, where Linux has it:
    ru_maxrss (and so /usr/bin/time %M) carries over the parent's peak across fork and
    exec, which would charge a child for the benchmark's own memory.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def child_floor(path: Path) -> dict:
    """Open the file as our reader does and pass the geometry iterator over it, doing nothing with the shapes."""
    import ifcopenshell
    import ifcopenshell.geom

    from layers.ifc import EXCLUDED_CLASSES, _check_file, _open

    base = peak_mb()
    t = time.perf_counter()
    schema, read_as = _check_file(path)
    model = _open(path, schema, read_as, [])
    opened = time.perf_counter() - t
    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    iterator = ifcopenshell.geom.iterator(settings, model, multiprocessing.cpu_count(), exclude=EXCLUDED_CLASSES)
    shapes = 0
    if iterator.initialize():
        while True:
            iterator.get()
            shapes += 1
            if not iterator.next():
                break
    return {"seconds": time.perf_counter() - t, "open_s": opened, "shapes": shapes, "peak_mb": peak_mb(),
            "base_mb": base}


def moved_anchor(city, model_name: str, anchor: str | None) -> str:
    """An anchor MOVE_DEG east of where the model's placed rows stand, keeping elevation and rotation."""
    import pandas as pd
    from pyproj import Transformer

    frames = [city.features(r.name) for r in city.layers() if r.name in ("bim", "facility")]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["model"] == model_name]
    centre = rows.geometry.union_all().centroid
    lon, lat = Transformer.from_crs(city.crs, "EPSG:4326", always_xy=True).transform(centre.x, centre.y)
    rest = anchor.split(",")[2:] if anchor else []
    return ",".join([f"{lon + MOVE_DEG:.7f}", f"{lat:.7f}", *rest])


def child_ours(path: Path, crs: str, anchor: str | None, work: Path) -> dict:
    """City.init into a fresh folder, then the timed ingest, the unchanged re-ingest and the moved one."""
    import ifcopenshell  # noqa: F401  (imported before the clock, as the floor does)
    import ifcopenshell.geom  # noqa: F401
    import ifcopenshell.util.element  # noqa: F401
    import ifcopenshell.util.geolocation  # noqa: F401
    import ifcopenshell.util.placement  # noqa: F401
    import ifcopenshell.util.shape  # noqa: F401
    import ifcopenshell.util.unit  # noqa: F401

    import twin.bim  # noqa: F401
    from twin.workspace import City

    base = peak_mb()
    shutil.rmtree(work, ignore_errors=True)
    t = time.perf_counter()
    city = City.init(work / "city", crs)
    init = time.perf_counter() - t
    t = time.perf_counter()
    first = city.ingest(path, anchor=anchor)
    first_s = time.perf_counter() - t
    first_peak = peak_mb()
    elements = city.layer("bim-elements").feature_count

    t = time.perf_counter()
    again = city.ingest(path, anchor=anchor)
    again_s = time.perf_counter() - t
    if not any("unchanged" in n for n in again.notes):
        raise RuntimeError(f"re-ingest of {path.name} did work: {again.notes}")

    moved = moved_anchor(city, path.name, anchor)
    t = time.perf_counter()
    record = city.ingest(path, anchor=moved)
    moved_s = time.perf_counter() - t
    if not any("from the cache" in n for n in record.notes):
        raise RuntimeError(f"moved re-ingest of {path.name} did not use the cache: {record.notes}")
    return {"seconds": first_s, "init_s": init, "again_s": again_s, "moved_s": moved_s, "moved_anchor": moved,
            "elements": elements, "placed_by": first.notes[0] if first.notes else "", "peak_mb": first_peak,
            "end_peak_mb": peak_mb(), "base_mb": base}


def run_child(kind: str, case: Case) -> dict:
    """One contender in a fresh interpreter; its JSON report."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind, "--file", str(case.path),
           "--crs", case.crs, "--work", str(WORK / case.name)]
    if case.anchor:
        cmd += ["--anchor", case.anchor]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} on {case.name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- profile, machine, figures ---------------------------------------------------------------

def profile_in_process(case: Case, top: int) -> None:
    """One in-process ingest under cProfile: the project's functions by cumulative time, then the hottest calls."""
    import ifcopenshell.geom  # noqa: F401

    import twin.bim  # noqa: F401
    from twin.workspace import City

    work = WORK / f"{case.name}-profile"
    shutil.rmtree(work, ignore_errors=True)
    city = City.init(work / "city", case.crs)
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    city.ingest(case.path, anchor=case.anchor)
    profiler.disable()
    print(f"\nprofile of one in-process ingest of {case.name} ({time.perf_counter() - t:.2f} s under cProfile)")
    stats = pstats.Stats(profiler)
    print_project_functions(stats, top)
    print_hottest_calls(stats, top)


def describe_machine() -> None:
    """Print what a closing note needs to make the figures comparable."""
    import ifcopenshell
    import numpy as np
    import shapely

    cpu = cpu_model()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {usable} CPUs (nproc; iterator threads = multiprocessing.cpu_count() = "
          f"{multiprocessing.cpu_count()}), {cpu}, {platform.system()} {platform.release()}")
    print(f"python {platform.python_version()}; ifcopenshell {ifcopenshell.version}, numpy {np.__version__}, "
          f"shapely {shapely.__version__} (GEOS {shapely.geos_version_string})")


def cases(args: argparse.Namespace) -> list[Case]:
    """The samples found and the generated model, filtered by --only."""
    folder = shared_data() / "ifc"
    found = []
    for name, (crs, anchor) in SAMPLES.items():
        if args.only and args.only.lower() not in name.lower():
            continue
        if (folder / name).is_file():
            found.append(Case(name, folder / name, crs, anchor))
        else:
            print(f"missing sample: {folder / name} (set TWIN_SHARED_DATA)")
    for name, why in SKIPPED.items():
        if not args.only or args.only.lower() in name.lower():
            print(f"skipped: {name} ({why})")
    generated = f"generated-{args.elements}.ifc"
    if not args.only or args.only.lower() in generated:
        found.append(Case(generated, ensure_generated(args.elements), GENERATED_CRS, None))
    return found


def warm_page_cache(path: Path) -> None:
    """Read a file once so the first timed round does not pay for the disk."""
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures (or, with --child, one contender's JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each contender, alternating (default 3)")
    parser.add_argument("--only", help="run the files whose name contains this (case-insensitive)")
    parser.add_argument("--elements", type=int, default=20_000, help="elements of the generated model (default 20,000)")
    parser.add_argument("--profile", action="store_true",
                        help="after the rounds, profile one in-process ingest of each file")
    parser.add_argument("--top", type=int, default=30, help="rows of the profile to print (default 30)")
    parser.add_argument("--child", choices=("floor", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--crs", help=argparse.SUPPRESS)
    parser.add_argument("--anchor", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "floor":
            print(json.dumps(child_floor(args.file)))
        else:
            print(json.dumps(child_ours(args.file, args.crs, args.anchor, args.work)))
        return 0
    if args.rounds < 1 or args.elements < 1:
        parser.error(f"--rounds and --elements must be at least 1, got {args.rounds} and {args.elements}")

    describe_machine()
    todo = cases(args)
    if not todo:
        parser.error(f"no file matches --only {args.only!r}")
    results: dict[str, dict[str, list[dict]]] = {}
    for case in todo:
        warm_page_cache(case.path)
        results[case.name] = {"floor": [], "ours": []}
        for r in range(args.rounds):
            for kind in ("floor", "ours"):
                report = run_child(kind, case)
                results[case.name][kind].append(report)
                extra = (f" (open {report['open_s']:.2f} s, {report['shapes']} shapes)" if kind == "floor" else
                         f" (init {report['init_s']:.2f} s, again {report['again_s']:.3f} s, "
                         f"moved {report['moved_s']:.2f} s)")
                print(f"round {r + 1}/{args.rounds}  {case.name:<38} {kind:<5} {report['seconds']:7.2f} s "
                      f"{report['peak_mb']:6.0f} MB{extra}", flush=True)

    median = statistics.median
    print(f"\nIFC ingest vs the bare IfcOpenShell iterator ({multiprocessing.cpu_count()} threads), "
          f"median of {args.rounds} rounds each, fresh subprocess and city per run; MB = peak RSS (VmHWM) of the run")
    print(f"  {'file':<38} {'size':>7} {'shapes':>6} {'elems':>6} | {'floor':>7} {'MB':>5} | {'ours':>7} {'MB':>5} | "
          f"{'ratio':>6} {'best':>5} {'+s':>5} | {'re-ingest':>15} | {'moved':>15}")
    verdicts = []
    for case in todo:
        floor, ours = results[case.name]["floor"], results[case.name]["ours"]
        f_s, o_s = median([x["seconds"] for x in floor]), median([x["seconds"] for x in ours])
        best = min(x["seconds"] for x in ours) / min(x["seconds"] for x in floor)
        again, moved = median([x["again_s"] for x in ours]), median([x["moved_s"] for x in ours])
        ratio = o_s / f_s
        verdicts += [ratio <= TARGET_RATIO, again / o_s <= TARGET_REINGEST]
        flag = " " if ratio <= TARGET_RATIO else "!"
        print(f"  {case.name:<38} {case.path.stat().st_size / 1e6:5.1f}MB {floor[0]['shapes']:>6} "
              f"{ours[0]['elements']:>6} | {f_s:6.2f}s {median([x['peak_mb'] for x in floor]):5.0f} | "
              f"{o_s:6.2f}s {median([x['peak_mb'] for x in ours]):5.0f} | {ratio:4.2f}x{flag} {best:4.2f}x "
              f"{o_s - f_s:5.2f} | {again:6.3f}s {100 * again / o_s:5.1f}% | {moved:6.2f}s {100 * moved / o_s:5.1f}%")
    print("  ratio = median ours / median floor (! = over target), best = fastest ours / fastest floor, "
          "+s = median ours - median floor")
    print(f"  targets: ours / floor <= {TARGET_RATIO}x; unchanged re-ingest <= {100 * TARGET_REINGEST:.0f}% "
          f"of the first ({'all met' if all(verdicts) else 'NOT all met'})")
    print(f"  baseline RSS after imports: floor {median([r['floor'][0]['base_mb'] for r in results.values()]):.0f} MB, "
          f"ours {median([r['ours'][0]['base_mb'] for r in results.values()]):.0f} MB; "
          f"skipped: {', '.join(SKIPPED)}")

    if args.profile:
        for case in todo:
            profile_in_process(case, args.top)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
