"""The `twin` command line: one command per step from GIS files to a served city model."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from layers.errors import SourceError
from twin.errors import TwinError

app = typer.Typer(help="twin: a city information model fusing BIM and GIS.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
sheets_app = typer.Typer(help="Standard large-scale map sheet grids.", no_args_is_help=True)
app.add_typer(sheets_app, name="sheets")
tiles_app = typer.Typer(help="Tile caches.", no_args_is_help=True)
app.add_typer(tiles_app, name="tiles")
sensors_app = typer.Typer(help="Sensor observations: replay history, simulate a live feed.", no_args_is_help=True)
app.add_typer(sensors_app, name="sensors")

# Piped output (scripts, CI logs) is not cut at 80 columns.
out = Console() if sys.stdout.isatty() else Console(width=200)
err = Console(stderr=True)


@contextmanager
def _errors() -> Iterator[None]:
    """Print a model error as one clear line and exit 1, instead of a traceback."""
    try:
        yield
    except (TwinError, SourceError, ValueError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int | None], Callable[[int], None]] | None]:
    if not enabled:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as bar:
        def factory(description: str, total: int | None) -> Callable[[int], None]:
            task = bar.add_task(description, total=total)
            return lambda n: bar.advance(task, n)
        yield factory


@app.callback()
def _main() -> None:
    """twin: a city information model fusing BIM and GIS."""
    # The app wires the environment: a password in TWIN_DATABASE_URL reaches libpq (which also
    # reads PGPASSWORD and ~/.pgpass itself), since city.json records store URLs without one.
    import os

    from twin.store.postgis import password_of

    url = os.environ.get("TWIN_DATABASE_URL")
    if url and "PGPASSWORD" not in os.environ and url.startswith(("postgresql:", "postgres:")):
        password = password_of(url)
        if password:
            os.environ["PGPASSWORD"] = password


@app.command()
def init(
    city: Annotated[Path, typer.Argument(help="Folder of the city workspace (created if missing).")],
    crs: Annotated[str, typer.Option("--crs", help="The city's metric CRS, e.g. EPSG:4549.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Display name (default: the folder's name).")] = None,
    db: Annotated[Optional[str], typer.Option(
        "--db", envvar="TWIN_DATABASE_URL",
        help="Keep the city in PostGIS: postgresql://USER@HOST:PORT/DATABASE[?schema=NAME] (schema: the folder's "
             "name). Default: a GeoPackage in the folder.")] = None,
) -> None:
    """Create a city workspace with its metric CRS."""
    from twin.workspace import City

    with _errors():
        c = City.init(city, crs, name=name, store=db or None)
    out.print(f"created city [bold]{c.name}[/] in {city} ({c.crs.to_string()}, {c.crs.name}), "
              f"store {c.config.store}", highlight=False)


@app.command()
def export(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    to: Annotated[str, typer.Option("--to", help="The new store: postgresql://USER@HOST:PORT/DATABASE[?schema=NAME], "
                                                 "or a GeoPackage file name in the city folder (city.gpkg).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a GeoPackage file that exists.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Copy the city into another store, check that every count matches, then switch city.json to it."""
    from twin.transfer import export_city
    from twin.workspace import City

    with _errors():
        c = City.open(city)
        source = c.store.url
        with _progress(not quiet and sys.stderr.isatty()) as progress:
            report = export_city(c, to, progress, overwrite=overwrite)
    features = sum(n for name, (n, _) in report.layers.items() if c.layer(name).kind != "dem")
    out.print(f"copied {len(report.layers)} layers ({features} features), "
              + ", ".join(f"{n} {name}" for name, (n, _) in report.live.items())
              + f" from {source} to {report.target}", highlight=False)
    out.print(f"counts match; {city / 'city.json'} now names {report.target} (the old store is left as it was)",
              highlight=False)


@app.command()
def ingest(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    file: Annotated[Path, typer.Argument(help="GeoJSON, GeoPackage, Shapefile (.shp or .zip), FlatGeobuf, a GeoTIFF DEM, or an IFC model.")],
    kind: Annotated[Optional[str], typer.Option("--kind", help="Layer kind: building, pipe, sensor, map_sheet, dem, ...")] = None,
    layer: Annotated[Optional[str], typer.Option("--layer", help="Layer name (default: the kind).")] = None,
    crs: Annotated[Optional[str], typer.Option("--crs", help="The source's CRS, for files without one (or with a wrong one).")] = None,
    spec: Annotated[Optional[Path], typer.Option("--spec", help="Layer spec (TOML/JSON) mapping source columns to fields.")] = None,
    anchor: Annotated[Optional[str], typer.Option("--anchor", help="For IFC: LON,LAT[,ELEV[,ROTATION_DEG]] of the site origin; overrides the file's georeferencing.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Ingest a file as a layer, replacing the layer of that name atomically."""
    from twin.workspace import City

    with _errors():
        c = City.open(city)
        with _progress(not quiet and sys.stderr.isatty()) as progress:
            record = c.ingest(file, kind, layer=layer, crs=crs, spec=spec, anchor=anchor, progress=progress)
    out.print(f"layer [bold]{record.name}[/] ({record.kind}): {record.feature_count} "
              f"{'cells' if record.kind == 'dem' else 'features'}, version {record.version}")
    for note in record.notes:
        out.print(f"  - {note}", highlight=False)


@app.command()
def layers(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the catalogue as JSON.")] = False,
) -> None:
    """List the layer catalogue."""
    from twin.workspace import City

    with _errors():
        records = City.open(city).layers()
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in records], indent=2, ensure_ascii=False))
        return
    table = Table(title=f"layers of {city}")
    for col in ("name", "kind", "features", "geometry", "bounds (city CRS)", "version", "updated", "source"):
        table.add_column(col)
    for r in records:
        bounds = " ".join(f"{v:.0f}" for v in r.bounds) if r.bounds else ""
        table.add_row(r.name, r.kind, str(r.feature_count), r.geometry_type or "", bounds, str(r.version),
                      (r.updated or "")[:19].replace("T", " "), Path(r.source).name if r.source else "")
    out.print(table)


@app.command()
def ground(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    x: Annotated[float, typer.Argument(help="Easting (or longitude with --crs EPSG:4326).")],
    y: Annotated[float, typer.Argument(help="Northing (or latitude).")],
    crs: Annotated[Optional[str], typer.Option("--crs", help="CRS of x and y (default: the city CRS).")] = None,
) -> None:
    """Print the ground elevation at a point, sampled from the city's DEM."""
    import numpy as np
    from pyproj import Transformer

    from layers.vector import parse_crs
    from twin.workspace import City

    with _errors():
        c = City.open(city)
        if crs:
            x, y = Transformer.from_crs(parse_crs(crs), c.crs, always_xy=True).transform(x, y)
        z = float(c.ground_z(np.array([x]), np.array([y]))[0])
    if np.isnan(z):
        err.print(f"no ground elevation at ({x:.2f}, {y:.2f}): outside the DEM or no DEM in the city")
        raise typer.Exit(1)
    typer.echo(f"{z:.3f}")


@sheets_app.command("grid")
def sheets_grid(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    scale: Annotated[int, typer.Option("--scale", help="500, 1000 or 2000.")] = 1000,
    area: Annotated[Optional[str], typer.Option("--area", help="Layer whose extent to cover (default: planning_area, else all layers).")] = None,
    output: Annotated[Optional[Path], typer.Option("--out", help="Write the grid to this file (GeoPackage/GeoJSON/FlatGeobuf).")] = None,
) -> None:
    """Generate the standard sheet grid over an area, named by south-west corners in km."""
    from twin.sheets import sheet_grid
    from twin.workspace import City

    with _errors():
        c = City.open(city)
        records = c.layers()
        chosen = [r for r in records if r.name == (area or "planning_area")] or ([] if area else records)
        if not chosen:
            raise TwinError(f"no layer {area!r} to cover" if area else "the city has no layers to cover")
        xs = [r.bounds for r in chosen if r.bounds]
        bounds = (min(b[0] for b in xs), min(b[1] for b in xs), max(b[2] for b in xs), max(b[3] for b in xs))
        grid = sheet_grid(bounds, scale, crs=c.crs)
        if area or any(r.name == "planning_area" for r in chosen):
            shape = c.features(chosen[0].name).union_all()
            grid = grid[grid.intersects(shape)]
    if output:
        grid.to_file(output)
        out.print(f"wrote {len(grid)} sheets of 1:{scale} to {output}")
    else:
        for sheet in grid["sheet_id"]:
            typer.echo(sheet)


def _zoom_range(text: str) -> range:
    lo, _, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"--zoom {text!r} is not a zoom or a range like 12-17") from None
    if not 0 <= first <= last <= 24:
        raise ValueError(f"--zoom {text!r} must lie within 0-24, low first")
    return range(first, last + 1)


@tiles_app.command("seed")
def tiles_seed(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    zoom: Annotated[str, typer.Option("--zoom", help="Zoom or range, e.g. 12-17.")] = "12-17",
    layer: Annotated[Optional[list[str]], typer.Option("--layer", help="Seed this layer's own tileset (repeatable); default: the combined tileset.")] = None,
    no_terrain: Annotated[bool, typer.Option("--no-terrain", help="Skip terrain and hillshade tiles.")] = False,
) -> None:
    """Pre-render tiles over the city into the disk cache (CITY/cache/tiles) that `twin serve` reads."""
    from tiles.service import TileService
    from twin.snapshots import CityView

    with _errors():
        zooms = _zoom_range(zoom)
        view = CityView(city)
        service = TileService(view, city / "cache" / "tiles", memory_items=0)
        with _progress(sys.stderr.isatty()) as progress:
            reporter = (lambda total: progress("seeding tiles", total)) if progress else None
            counts = service.seed(zooms, layer or None, terrain=not no_terrain, progress=reporter)
    out.print(f"{counts['rendered']} tiles rendered, {counts['cached']} already cached and current, "
              f"{counts['empty']} empty, zooms {zooms.start}-{zooms.stop - 1}")


@app.command()
def serve(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option("--workers", help="Worker processes.")] = 1,
    mqtt: Annotated[Optional[str], typer.Option("--mqtt", help="Subscribe to twin/sensors/+/observations on this broker, e.g. mqtt://127.0.0.1:1883.")] = None,
) -> None:
    """Serve a city: OGC API Features and Tiles, terrain and 3D tiles, sensors (docs at /docs)."""
    from api.app import serve as run

    with _errors():
        from layers.mqtt import parse_url
        from twin.workspace import City

        City.open(city)
        if mqtt:
            parse_url(mqtt)
    out.print(f"serving {city} on http://{host}:{port}/ (API docs at /docs)"
              + (f", observations from {mqtt}" if mqtt else ""))
    run(city, host=host, port=port, workers=workers, mqtt=mqtt)


def _monitor(city: Path, thresholds: Optional[Path], snap: float):
    from twin.live import CityRegistry
    from twin.sensors import SensorMonitor, Thresholds
    from twin.workspace import City

    c = City.open(city)
    registry = CityRegistry(lambda: {r.name: r for r in c.layers()}, c.features, snap)
    return c, SensorMonitor(c.store, registry, Thresholds.load(thresholds))


ThresholdsOption = Annotated[Optional[Path], typer.Option("--thresholds", help="TOML warning and alarm bands (default: built in).")]
SnapOption = Annotated[float, typer.Option("--snap", help="Sensors without a pipe_id watch the nearest pipe within this many metres.")]


@sensors_app.command("replay")
def sensors_replay(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    file: Annotated[Path, typer.Argument(help="CSV with columns sensor_id, time, value[, quality].")],
    thresholds: ThresholdsOption = None,
    snap: SnapOption = 10.0,
) -> None:
    """Load observation history from a CSV file into the city (duplicates are ignored)."""
    from layers.sensors import read_csv

    from twin.sensors import IngestReport

    with _errors():
        c, monitor = _monitor(city, thresholds, snap)
        total = IngestReport()
        for rows, rejected in read_csv(file):
            report = monitor.ingest(rows, rejected, source=str(file))
            total.received += report.received
            total.stored += report.stored
            total.duplicates += report.duplicates
            total.late += report.late
            total.events += report.events
            for reason, n in report.rejected.items():
                total.rejected[reason] = total.rejected.get(reason, 0) + n
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(total.rejected.items())) or "none"
    out.print(f"{total.received} observations: {total.stored} stored, {total.duplicates} duplicates, "
              f"{total.late} late, {total.rejected_total} rejected ({rejected}); {total.events} status changes")


@sensors_app.command("simulate")
def sensors_simulate(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    rate: Annotated[float, typer.Option("--rate", help="Readings per second, over all sensors.")] = 1000.0,
    mqtt: Annotated[Optional[str], typer.Option("--mqtt", help="Publish to this broker instead of writing to the city.")] = None,
    duration: Annotated[Optional[float], typer.Option("--duration", help="Stop after this many seconds (default: run until interrupted).")] = None,
    leak_every: Annotated[float, typer.Option("--leak-every", help="Seconds between simulated leaks.")] = 180.0,
    thresholds: ThresholdsOption = None,
    snap: SnapOption = 10.0,
) -> None:
    """Stream plausible readings for the city's sensors, with a leak along a main every few minutes."""
    import time

    from twin.simulate import Simulator

    with _errors():
        c, monitor = _monitor(city, thresholds, snap)
        simulator = Simulator.for_city(c, monitor.registry, rate=rate, leak_every_s=leak_every)
        if mqtt:
            from layers.mqtt import ObservationPublisher

            publisher = ObservationPublisher(mqtt).start()
            sink = simulator.mqtt_sink(publisher)
        else:
            sink = lambda rows: monitor.ingest(rows, source="simulator")  # noqa: E731
        out.print(f"simulating {len(simulator.sensors)} sensors at {rate:g} readings/s "
                  f"{'to ' + mqtt if mqtt else 'into ' + str(city)}; Ctrl-C stops")
        simulator.start(sink)
        try:
            deadline = time.monotonic() + duration if duration else None
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        finally:
            simulator.stop()
            if mqtt:
                publisher.stop()
    out.print(f"sent {simulator.sent} readings, {simulator.leaks} leaks")


@app.command()
def view(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")] = Path("district.html"),
    preset: Annotated[str, typer.Option("--preset", help="What the page shows first: planning or utility.")] = "planning",
) -> None:
    """Export the city's 3D view as one self-contained HTML file that opens offline."""
    with _errors():
        from api.view import PRESETS, export_html
        from twin.workspace import City

        if preset not in PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}", param_hint="--preset")
        page = export_html(City.open(city), preset)
        out_file.write_text(page, encoding="utf-8")
    out.print(f"wrote {out_file} ({len(page.encode('utf-8')) / 1e6:.1f} MB, preset {preset}); open it in a browser")


@app.command()
def coverage(
    city: Annotated[Path, typer.Argument(help="The city workspace folder.")],
    indicator: Annotated[Optional[list[str]], typer.Argument(help="Indicators to compute (default: every one the model has data for).", show_default=False)] = None,
    by: Annotated[Optional[str], typer.Option("--by", help="Also per area of this kind: district.")] = None,
    at: Annotated[Optional[str], typer.Option("--at", help="Judge monitoring at this ISO 8601 time (default: now; UTC unless it has an offset).")] = None,
    window: Annotated[Optional[str], typer.Option("--window", help="A sensor monitors its pipe when it reported within this window before --at (24h, 30min, 7d), or 'none' to count installed sensors. Default: indicators.toml.")] = None,
    scales: Annotated[Optional[str], typer.Option("--scales", help="Map sheet scales that count for topo_map_coverage, e.g. 500,1000,2000 (default: up to 1:2000).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
    map_out: Annotated[Optional[Path], typer.Option("--map", help="Draw the indicators' maps into this PNG.")] = None,
    report: Annotated[Optional[Path], typer.Option("--report", help="Write one HTML page with every indicator, its map and its district table.")] = None,
    targets: Annotated[Optional[Path], typer.Option("--targets", help="A targets file overriding CITY/indicators.toml and the shipped targets.")] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit with status 2 when a target is not met (for scripts and CI).")] = False,
) -> None:
    """Smart-city coverage indicators against their targets, per city and per district."""
    import csv

    import shapely

    from twin.indicators import (INDICATORS, ModelData, Options, compute_all, load_targets, parse_at, parse_scales,
                                 parse_window)
    from twin.workspace import City

    with _errors():
        if fmt not in ("table", "json", "csv"):
            raise typer.BadParameter(f"unknown format {fmt!r}: use table, json or csv", param_hint="--format")
        if by not in (None, "district"):
            raise typer.BadParameter(f"cannot group by {by!r}: use --by district", param_hint="--by")
        for name in indicator or []:
            if name not in INDICATORS:
                raise typer.BadParameter(f"unknown indicator {name!r}; known: {', '.join(INDICATORS)}")
        c = City.open(city)
        options = Options(at_ms=parse_at(at), window_ms=-1 if window is None else parse_window(window),
                          scales=parse_scales(scales), explain=True)
        data = ModelData.from_city(c)
        skipped: list[str] = []
        results = compute_all(data, indicator, by_district=by == "district", options=options,
                              targets=load_targets(c.root, targets), skipped=skipped)
        districts = None
        if (map_out or report) and data.has("district"):
            districts = shapely.GeometryCollection(list(data.geoms("district", "maps")))
        if map_out:
            from twin.indicator_maps import draw_maps

            draw_maps(results, map_out, districts)
            err.print(f"wrote {map_out}")
        if report:
            from twin.indicator_maps import write_report

            write_report(results, report, city=c.name, districts=districts, skipped=skipped)
            err.print(f"wrote {report}")
    if fmt == "json":
        print(json.dumps([r.to_dict(c.crs) for r in results], ensure_ascii=False, indent=2))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["indicator", "district", "value", "unit", "numerator", "denominator", "measure", "target",
                         "compare", "met", "margin", "stars", "reason"])
        for r in results:
            for row in [r, *(r.by or [])]:
                writer.writerow([r.indicator, row.district or "", row.value, row.unit, row.numerator, row.denominator,
                                 row.measure, row.target, row.compare, row.met, row.margin, row.stars, row.reason or ""])
    else:
        table = Table(title=f"coverage indicators: {c.name}")
        for col in ("indicator", "district", "value", "target", "met", "margin", "stars", "numerator / denominator"):
            table.add_column(col, justify="right" if col in ("value", "target", "margin") else "left")
        for r in results:
            for row in [r, *(r.by or [])]:
                shown = _indicator_value(row.value, row.unit)
                verdict = "—" if row.met is None else ("[green]met[/]" if row.met else "[red]not met[/]")
                margin = "" if row.margin is None else _indicator_value(row.margin, row.unit, signed=True)
                stars = "" if row.stars is None else "★" * row.stars
                table.add_row(r.indicator if row is r else "", row.district or "", shown,
                              f"{row.compare} {_indicator_value(row.target, row.unit)}", verdict, margin, stars,
                              row.reason or f"{row.numerator:,.0f} / {row.denominator:,.0f} {row.measure}")
        out.print(table)
        for note in skipped:
            out.print(f"[dim]not computed: {note}[/]", highlight=False)
    if check and any(r.met is False for r in results):
        raise typer.Exit(2)


def _indicator_value(value: float | None, unit: str, signed: bool = False) -> str:
    if value is None:
        return "—"
    sign = "+" if signed else ""
    return f"{value:{sign}.1%}" if unit == "ratio" else f"{value:{sign}.2f} km"


@app.command()
def demo(
    port: Annotated[int, typer.Option("--port", help="Port to serve on.")] = 8000,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Build the demo cities and stop.")] = False,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the demo cities.")] = Path("demo-city"),
    simulate: Annotated[float, typer.Option("--simulate", help="Simulated sensor readings per second while serving (0: none).")] = 200.0,
) -> None:
    """Build the demo cities (a Yantai district, and KY4 from the shared real data) and serve them."""
    from twin.demo import build_demo

    with _errors(), _progress(sys.stderr.isatty()) as progress:
        cities = build_demo(out_dir, progress=progress)
    for name, c in cities.items():
        out.print(f"[bold]{name}[/]: {c.root} with {len(c.layers())} layers")
    if no_serve:
        return
    from api.app import serve as run

    out.print(f"serving the Yantai demo on http://127.0.0.1:{port}/ (API docs at /docs, coverage report at "
              f"/indicators?f=html), with simulated sensors at {simulate:g} readings/s")
    run(cities["yantai"].root, port=port, simulate_rate=simulate)


if __name__ == "__main__":
    app()
