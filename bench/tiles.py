"""Benchmark: vector and terrain tiles of `twin serve`, beside PostGIS ST_AsMVT and TiTiler.

Run by hand from the repository root (as root: it may apt-get install wrk and PostGIS, and
runs a throwaway PostgreSQL cluster as the `postgres` user)::

    .venv/bin/python bench/tiles.py                     # 40 tiles per zoom, wrk 10 s
    .venv/bin/python bench/tiles.py --quick             # 10 tiles per zoom, wrk 3 s
    .venv/bin/python bench/tiles.py --skip-postgis --skip-titiler
    .venv/bin/python bench/tiles.py --profile           # then cProfile the in-process paths

The demo cities (`twin demo --no-serve --out bench/out/demo`) are built once and reused.
Tilesets: Yantai's `building` and `pipe` layers and its combined tileset (every 2D layer),
and KY4's `pipe` layer; tiles are sampled (fixed seed) from those covering each tileset's
extent at z12..z17. What is measured, in this order:

1. MVT latency from an httpx keep-alive client, sequential: *cold* is the first request of
   each tile on a fresh `twin serve` with TWIN_DISK_CACHE=false (one server per tileset, so
   its first tile also loads the layers and each zoom's first tile simplifies them);
   *cached* is the same tiles again on that server (X-Tile-Cache: hit).
2. Cached throughput: `wrk -t2 -c16` over the tiles of (1) that have content, cycled by a
   Lua script, against `twin serve --workers 2` with its disk cache on (the tiles rendered
   once and warmed in both workers first), without and with `Accept-Encoding: gzip`; then,
   as a diagnostic without a target, `--workers 1` (uvicorn's multi-worker supervisor binds
   the socket itself, and without uvloop its connections lose TCP_NODELAY: ~44 ms a request).
3. The same tiles rendered in this process, beside PostGIS: `TileService.vector_tile` with
   no tile cache (a fresh service: its first pass loads the layers; then warm passes), and
   `ST_AsMVT(ST_AsMVTGeom(...))` over the same layers and attributes, loaded with ogr2ogr
   into a throwaway cluster, timed through psycopg with prepared statements. PostGIS is
   timed twice: over a pre-transformed 3857 column with its own GiST index (the fair one:
   we hold Web Mercator geometries in memory too; the ratio uses it), and transforming
   in the query.
4. Terrarium terrain tiles z13..z16 over each city's DEM: `twin serve` (fresh, no disk
   cache; then cached) beside TiTiler serving the same COG (`algorithm=terrarium`,
   bilinear), installed in its own venv under bench/out/titiler-venv; TiTiler has no cache,
   so its "cached" is just the second request.

Targets: wrk >= 3,000 tiles/s; MVT render p50 ours / PostGIS <= 1.0; terrain p50 ours /
TiTiler <= 1.0 cold and <= 0.2 cached. The exit status is 1 when one is missed. Every
server listens on 127.0.0.1 and is stopped at the end, on error too.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import gc
import json
import os
import platform
import pstats
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import morecantile
import numpy as np

from postgis_cluster import Cluster, ensure_postgis_installed, free_port, throwaway_cluster
from report import cpu_model, print_hottest_calls, print_project_functions

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# Run as a script, bench/ is first on sys.path and this file's name would hide the project's
# `tiles` package; the helper above is imported, so bench/ can go. The checkout this file sits in
# goes first: the venv's editable install may point at another checkout (a git worktree's
# bench would otherwise time the main tree's code).
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR]
OUT = BENCH_DIR / "out"
DEMO = OUT / "demo"
LOGS = OUT / "tiles-logs"
TITILER_VENV = OUT / "titiler-venv"

MVT_ZOOMS = range(12, 18)
TERRAIN_ZOOMS = range(13, 17)
SEED = 4549
TARGET_TILES_PER_S = 3000.0
TARGET_MVT_RATIO = 1.0
TARGET_TERRAIN_COLD = 1.0
TARGET_TERRAIN_CACHED = 0.2

TMS = morecantile.tms.get("WebMercatorQuad")
Tile = tuple[int, int, int]  # z, x, y


# -- what is measured --------------------------------------------------------------------------

@dataclass
class Tileset:
    """One vector tileset of one city: its layers, URL and in-process key."""

    city: str
    root: Path
    label: str  # "building", "pipe" or "combined"
    layers: list[dict]  # catalogue records (name, kind, table, bounds_wgs84, ...)
    combined: bool = False
    tiles: dict[int, list[Tile]] = field(default_factory=dict)
    covering: dict[int, int] = field(default_factory=dict)  # tiles over the extent per zoom

    @property
    def name(self) -> str:
        """`city/label`, as printed."""
        return f"{self.city}/{self.label}"

    def path(self, z: int, x: int, y: int) -> str:
        """The tile's URL path on `twin serve` (OGC order: z/row/col)."""
        if self.combined:
            return f"/tiles/WebMercatorQuad/{z}/{y}/{x}"
        return f"/collections/{self.layers[0]['name']}/tiles/WebMercatorQuad/{z}/{y}/{x}"

    def extent(self) -> tuple[float, float, float, float]:
        """The WGS 84 box of all its layers."""
        boxes = [r["bounds_wgs84"] for r in self.layers if r.get("bounds_wgs84")]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))

    def all_tiles(self) -> list[Tile]:
        """The sampled tiles, zoom by zoom."""
        return [t for z in sorted(self.tiles) for t in self.tiles[z]]


@dataclass
class Latencies:
    """Milliseconds per tile, by zoom, and what came back."""

    ms: dict[int, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    cache: dict[str, int] = field(default_factory=dict)  # X-Tile-Cache value -> count
    empty: dict[int, int] = field(default_factory=dict)  # 204s by zoom
    codes: list[int] = field(default_factory=list)  # each request's status, in order
    nbytes: int = 0
    first_ms: float | None = None

    def add(self, z: int, ms: float) -> None:
        """Record one tile's time."""
        if self.first_ms is None:
            self.first_ms = ms
        self.ms.setdefault(z, []).append(ms)

    def pooled(self) -> list[float]:
        """Every zoom's times together."""
        return [v for z in sorted(self.ms) for v in self.ms[z]]


def p50_p95(values: list[float]) -> tuple[float, float]:
    """Median and 95th percentile (linear interpolation); NaN for no values."""
    if not values:
        return float("nan"), float("nan")
    p50, p95 = np.percentile(np.asarray(values, dtype=float), [50, 95])
    return float(p50), float(p95)


def at_zoom(lat: Latencies | None, z: int | None) -> tuple[float, float]:
    """p50 and p95 at zoom `z` (None: all zooms); NaN when there is nothing."""
    if lat is None:
        return float("nan"), float("nan")
    return p50_p95(lat.pooled() if z is None else lat.ms.get(z, []))


def fmt(pair: tuple[float, float]) -> str:
    """'p50/p95' in ms."""
    return f"{pair[0]:7.2f}/{pair[1]:7.2f}"


def sample_tiles(box: tuple[float, float, float, float], z: int, n: int, seed: int) -> tuple[list[Tile], int]:
    """Up to `n` tiles (a fixed-seed sample) of those covering `box` at zoom `z`, and how many cover it."""
    covering = [(t.z, t.x, t.y) for t in TMS.tiles(*box, [z])]
    if len(covering) <= n:
        return covering, len(covering)
    return sorted(random.Random(seed + z).sample(covering, n)), len(covering)


# -- the cities and the tools ------------------------------------------------------------------

def twin_cli() -> list[str]:
    """The `twin` command of this virtualenv, run on this checkout's code (see checkout_env)."""
    exe = Path(sys.executable).with_name("twin")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "twin.cli"]


def checkout_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with this checkout first on PYTHONPATH, for the `twin` subprocesses."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    return env


def ensure_demo() -> dict[str, Path]:
    """The demo cities under bench/out/demo, built on first use (~30 s)."""
    roots = {"yantai": DEMO / "yantai", "ky4": DEMO / "ky4"}
    if all((r / "city.json").is_file() for r in roots.values()):
        print(f"demo cities: {DEMO} (cached)")
        return roots
    t = time.perf_counter()
    subprocess.run([*twin_cli(), "demo", "--no-serve", "--out", str(DEMO)], check=True, cwd=REPO,
                   env=checkout_env(), stdout=subprocess.DEVNULL)
    print(f"demo cities: {DEMO} (built in {time.perf_counter() - t:.0f} s)")
    return roots


def catalogue(root: Path) -> list[dict]:
    """`twin layers CITY --json`."""
    done = subprocess.run([*twin_cli(), "layers", str(root), "--json"], check=True, capture_output=True, text=True,
                          cwd=REPO, env=checkout_env())
    return json.loads(done.stdout)


def ensure_wrk() -> str:
    """wrk from Debian, installed when missing; returns what was done."""
    if shutil.which("wrk"):
        return "already installed"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env=env)
    return "installed wrk"


def ensure_psycopg() -> str:
    """psycopg in this virtualenv, pip-installed when missing."""
    try:
        import psycopg  # noqa: F401
        return "already installed"
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "psycopg[binary]"], check=True)
        return "installed psycopg[binary]"


def ensure_titiler() -> str:
    """titiler.application and uvicorn in their own venv (never the project's)."""
    uvicorn = TITILER_VENV / "bin" / "uvicorn"
    if uvicorn.exists():
        return "already installed"
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", str(TITILER_VENV)], check=True)
    subprocess.run([str(TITILER_VENV / "bin" / "pip"), "install", "-q", "titiler.application", "uvicorn"], check=True)
    return f"installed titiler.application into {TITILER_VENV}"


def titiler_version() -> str:
    """The installed titiler.application version."""
    done = subprocess.run([str(TITILER_VENV / "bin" / "python"), "-c",
                           "import importlib.metadata as m; print(m.version('titiler.application'), "
                           "m.version('rio-tiler'), m.version('rasterio'))"], capture_output=True, text=True)
    return done.stdout.strip()


# -- servers -----------------------------------------------------------------------------------

@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], ready_path: str, log_name: str,
           port: int) -> Iterator[str]:
    """Run a server in its own process group on 127.0.0.1:`port` until it answers `ready_path`; always stopped."""
    LOGS.mkdir(parents=True, exist_ok=True)
    log = (LOGS / f"{log_name}.log").open("w")
    proc = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[0]} exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(base + ready_path, timeout=2).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{' '.join(command)} did not answer {ready_path} within 90 s; see {log.name}")
            time.sleep(0.1)
        yield base
    finally:
        # the group is the one this function started (uvicorn's workers are in it)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        # a worker left behind would hold the port and the CPU
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def twin_server(root: Path, disk_cache: bool, workers: int = 1,
                log_name: str = "twin") -> contextlib.AbstractContextManager[str]:
    """`twin serve CITY` on a free port, with or without its disk cache."""
    port = free_port()
    env = checkout_env({k: v for k, v in os.environ.items() if not k.startswith("TWIN_")})
    env["TWIN_DISK_CACHE"] = "true" if disk_cache else "false"
    command = [*twin_cli(), "serve", str(root), "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    return server(command, env, "/tileMatrixSets", log_name, port)


def titiler_server(log_name: str = "titiler") -> contextlib.AbstractContextManager[str]:
    """TiTiler's application on a free port, from its own venv."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    command = [str(TITILER_VENV / "bin" / "uvicorn"), "titiler.application.main:app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning"]
    return server(command, env, "/healthz", log_name, port)


def timed_get(client: httpx.Client, url: str) -> tuple[float, httpx.Response]:
    """One GET, body read; milliseconds and the response."""
    t = time.perf_counter()
    response = client.get(url)
    response.read()
    return (time.perf_counter() - t) * 1000, response


def http_pass(client: httpx.Client, tiles: list[Tile], url: Callable[[int, int, int], str],
              ok: tuple[int, ...] = (200, 204)) -> Latencies:
    """Request each tile once, in order; raises on a status not in `ok`."""
    out = Latencies()
    for z, x, y in tiles:
        ms, response = timed_get(client, url(z, x, y))
        if response.status_code not in ok:
            raise RuntimeError(f"{url(z, x, y)} answered {response.status_code}: {response.text[:300]}")
        out.add(z, ms)
        out.statuses[response.status_code] = out.statuses.get(response.status_code, 0) + 1
        out.empty[z] = out.empty.get(z, 0) + (response.status_code == 204)
        out.codes.append(response.status_code)
        tag = response.headers.get("x-tile-cache", "-")
        out.cache[tag] = out.cache.get(tag, 0) + 1
        out.nbytes += len(response.content)
    return out


# -- 1. MVT latency over HTTP --------------------------------------------------------------------

def mvt_http(ts: Tileset) -> tuple[Latencies, Latencies, list[str]]:
    """Cold then cached pass over a tileset on a fresh server without disk cache; and the paths with content."""
    tiles = ts.all_tiles()
    with twin_server(ts.root, disk_cache=False, log_name=f"mvt-{ts.city}-{ts.label}") as base, \
            httpx.Client(base_url=base, timeout=120) as client:
        cold = http_pass(client, tiles, ts.path)
        cached = http_pass(client, tiles, ts.path)
    with_content = [ts.path(*t) for t, code in zip(tiles, cached.codes, strict=True) if code == 200]
    if cold.cache.get("hit"):
        raise RuntimeError(f"{ts.name}: {cold.cache['hit']} cold requests were cache hits")
    return cold, cached, with_content


# -- 2. cached throughput with wrk -------------------------------------------------------------------

WRK_LUA = """\
-- cycles through the tile paths in the file given after --, each thread from its own offset;
-- counts responses that were not cache hits or not 200/204
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  paths = {}
  for line in io.lines(args[1]) do
    if #line > 0 then paths[#paths + 1] = line end
  end
  i = (id * 7919) % #paths
  misses = 0
  bad = 0
end
function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
function response(status, headers, body)
  if status ~= 200 and status ~= 204 then bad = bad + 1 end
  local tag = headers["x-tile-cache"] or headers["X-Tile-Cache"]
  if tag ~= "hit" then misses = misses + 1 end
end
function done(summary, latency, requests)
  local m, b = 0, 0
  for _, t in ipairs(threads) do
    m = m + t:get("misses")
    b = b + t:get("bad")
  end
  io.write(string.format("BENCH misses=%d bad=%d\\n", m, b))
end
"""


@dataclass
class WrkResult:
    """One wrk run."""

    label: str
    urls: int
    requests_per_s: float
    latency_avg: str
    latency_p99: str
    misses: int
    bad: int
    raw: str


def run_wrk(base: str, paths_file: Path, script: Path, seconds: float, threads: int, connections: int,
            gzip: bool, label: str, urls: int) -> WrkResult:
    """wrk over the paths in `paths_file`; parses requests/s, latency and the script's counts."""
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    if gzip:
        command += ["-H", "Accept-Encoding: gzip"]
    command += [base, "--", str(paths_file)]
    raw = subprocess.run(command, check=True, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", raw).group(1))
    latency = re.search(r"Latency\s+(\S+)", raw)
    p99 = re.search(r"\s99%\s+(\S+)", raw)
    counts = re.search(r"BENCH misses=(\d+) bad=(\d+)", raw)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", raw)
    bad = int(counts.group(2)) if counts else -1
    if non2xx:
        bad = max(bad, int(non2xx.group(1)))
    return WrkResult(label, urls, rps, latency.group(1) if latency else "?", p99.group(1) if p99 else "?",
                     int(counts.group(1)) if counts else -1, bad, raw)


def throughput(city: str, root: Path, paths: list[str], seconds: float, threads: int, connections: int,
               workers: int = 2, encodings: tuple[bool, ...] = (False, True)) -> list[WrkResult]:
    """Cached tiles/s of `twin serve --workers N` over `paths`, per encoding (False: identity, True: gzip)."""
    OUT.mkdir(parents=True, exist_ok=True)
    script = OUT / "tiles-wrk.lua"
    script.write_text(WRK_LUA)
    paths_file = OUT / f"tiles-wrk-{city}.txt"
    paths_file.write_text("\n".join(paths) + "\n")
    results = []
    with twin_server(root, disk_cache=True, workers=workers, log_name=f"wrk-{city}-w{workers}") as base:
        with httpx.Client(base_url=base, timeout=120) as client:
            for p in paths:  # rendered once, into the disk cache every worker reads
                client.get(p).raise_for_status()
        for gzip in encodings:  # warm every worker's memory cache
            run_wrk(base, paths_file, script, 2, threads, connections, gzip, "warm-up", len(paths))
        for gzip in encodings:
            label = f"--workers {workers}, " + ("Accept-Encoding: gzip" if gzip else "identity")
            results.append(run_wrk(base, paths_file, script, seconds, threads, connections, gzip, label, len(paths)))
    return results


# -- 3. in-process render and PostGIS -----------------------------------------------------------------

def inprocess_render(ts: Tileset, rounds: int) -> tuple[Latencies, Latencies, dict[Tile, bytes]]:
    """TileService.vector_tile without a tile cache: a first pass on a fresh service, then `rounds` warm passes.

    The warm figure of a tile is the median of its passes.
    """
    from tiles.service import COMBINED, TileService
    from twin.snapshots import CityView

    view = CityView(ts.root)
    service = TileService(view, None, memory_items=0)  # no memory, no disk: every call renders
    names = service.combined_layers() if ts.combined else [ts.layers[0]["name"]]
    key = COMBINED if ts.combined else f"layer/{names[0]}"
    tiles = ts.all_tiles()
    first, warm = Latencies(), Latencies()
    data: dict[Tile, bytes] = {}
    gc.collect()
    for z, x, y in tiles:
        t = time.perf_counter()
        tile = service.vector_tile(names, z, x, y, key)
        first.add(z, (time.perf_counter() - t) * 1000)
        data[(z, x, y)] = tile.data
    per_tile: dict[Tile, list[float]] = {t: [] for t in tiles}
    for _ in range(rounds):
        for z, x, y in tiles:
            t = time.perf_counter()
            service.vector_tile(names, z, x, y, key)
            per_tile[(z, x, y)].append((time.perf_counter() - t) * 1000)
    for (z, _, _), times in per_tile.items():
        warm.add(z, statistics.median(times))
    warm.nbytes = sum(len(d) for d in data.values())
    return first, warm, data


@dataclass
class PgLayer:
    """A city layer as a PostGIS table, with the attributes our tiles carry."""

    name: str
    kind: str
    table: str
    srid: int
    columns: list[str]
    minzoom: int


def tile_columns(root: Path, record: dict) -> list[str]:
    """The attributes our tiles carry for a layer (tiles.vector.TILE_PROPERTIES present in the layer)."""
    from tiles.vector import TILE_PROPERTIES
    from twin.snapshots import CityView

    frame = CityView(root).snapshot(record["name"]).frame
    wanted = TILE_PROPERTIES.get(record["kind"], ["uid", "name"])  # ["uid", "name"]: tiles.vector's default
    return [c for c in wanted if c in frame.columns]


def load_layers(pg: Cluster, conn, city: str, root: Path, records: list[dict]) -> tuple[list[PgLayer], float]:
    """ogr2ogr each layer into PostGIS, add a 3857 column with its GiST index; the layers and seconds taken."""
    from tiles.vector import zoom_range

    layers, seconds = [], 0.0
    for record in records:
        table = re.sub(r"\W", "_", f"{city}_{record['name']}").lower()
        seconds += pg.load_gpkg(root / "city.gpkg", record["table"], table)
        t = time.perf_counter()
        srid = conn.execute(f"SELECT Find_SRID('public', '{table}', 'geom')").fetchone()[0]
        conn.execute(f"ALTER TABLE {table} ADD COLUMN geom3857 geometry(Geometry, 3857)")
        conn.execute(f"UPDATE {table} SET geom3857 = ST_Force2D(ST_Transform(geom, 3857))")
        conn.execute(f"CREATE INDEX ON {table} USING gist (geom3857)")
        conn.execute(f"VACUUM ANALYZE {table}")
        seconds += time.perf_counter() - t
        present = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (table,))}
        columns = [c for c in tile_columns(root, record) if c in present]
        layers.append(PgLayer(record["name"], record["kind"], table, srid, columns, zoom_range(record["kind"])[0]))
    return layers, seconds


def mvt_sql(layers: list[PgLayer], z: int, transform_in_query: bool):
    """One statement returning the tile's MVT: a layer per table (zoom ranges as ours), concatenated."""
    from psycopg import sql

    env = sql.SQL("ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int)")
    parts = []
    for layer in layers:
        if layer.minzoom > z:
            continue
        if transform_in_query:
            geom = sql.SQL("ST_Force2D(ST_Transform(t.geom, 3857))")  # as ours: 3D pipes fail in ST_AsMVTGeom
            where = sql.SQL("t.geom && ST_Transform(ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, "
                            "margin => 64.0 / 4096), {})").format(sql.Literal(layer.srid))
        else:
            geom = sql.SQL("t.geom3857")
            where = sql.SQL("t.geom3857 && ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, margin => 64.0 / 4096)")
        columns = sql.SQL("").join(sql.SQL(", t.{}").format(sql.Identifier(c)) for c in layer.columns)
        parts.append(sql.SQL(
            "COALESCE((SELECT ST_AsMVT(q, {name}, 4096, 'geom', 'fid') FROM (SELECT t.fid, "
            "ST_AsMVTGeom({geom}, {env}, 4096, 64, true) AS geom{columns} FROM {table} t WHERE {where}) q), "
            "''::bytea)").format(name=sql.Literal(layer.name), geom=geom, env=env, columns=columns,
                                 table=sql.Identifier(layer.table), where=where))
    if not parts:
        return sql.SQL("SELECT ''::bytea WHERE %(z)s::int IS NOT NULL AND %(x)s::int IS NOT NULL "
                       "AND %(y)s::int IS NOT NULL")
    return sql.SQL("SELECT ") + sql.SQL(" || ").join(parts)


def postgis_render(conn, ts: Tileset, layers: list[PgLayer], rounds: int,
                   transform_in_query: bool) -> tuple[Latencies, Latencies, dict[Tile, bytes]]:
    """ST_AsMVT for each tile: a first pass, then `rounds` passes (per-tile median), prepared statements."""
    statements = {z: mvt_sql(layers, z, transform_in_query) for z in ts.tiles}
    tiles = ts.all_tiles()
    first, warm = Latencies(), Latencies()
    data: dict[Tile, bytes] = {}
    per_tile: dict[Tile, list[float]] = {t: [] for t in tiles}
    with conn.cursor() as cur:
        for r in range(rounds + 1):
            for z, x, y in tiles:
                t = time.perf_counter()
                cur.execute(statements[z], {"z": z, "x": x, "y": y}, prepare=True)
                tile = cur.fetchone()[0]
                ms = (time.perf_counter() - t) * 1000
                if r == 0:
                    first.add(z, ms)
                    data[(z, x, y)] = bytes(tile or b"")
                else:
                    per_tile[(z, x, y)].append(ms)
    for (z, _, _), times in per_tile.items():
        warm.add(z, statistics.median(times))
    warm.nbytes = sum(len(d) for d in data.values())
    return first, warm, data


# -- 4. terrain beside TiTiler --------------------------------------------------------------------

@dataclass
class TerrainRun:
    """Terrain latencies of one city, ours and TiTiler's."""

    city: str
    cog: Path
    tiles: dict[int, list[Tile]]
    covering: dict[int, int]
    ours_cold: Latencies | None = None
    ours_cached: Latencies | None = None
    titiler_cold: Latencies | None = None
    titiler_second: Latencies | None = None


def terrain_http(run: TerrainRun, root: Path, with_titiler: bool) -> None:
    """Cold and cached Terrarium tiles from a fresh `twin serve`, then from a fresh TiTiler."""
    tiles = [t for z in sorted(run.tiles) for t in run.tiles[z]]

    def ours(z: int, x: int, y: int) -> str:
        return f"/terrain/{z}/{x}/{y}.png"

    with twin_server(root, disk_cache=False, log_name=f"terrain-{run.city}") as base, \
            httpx.Client(base_url=base, timeout=120) as client:
        run.ours_cold = http_pass(client, tiles, ours, ok=(200, 404))
        run.ours_cached = http_pass(client, tiles, ours, ok=(200, 404))
    if not with_titiler:
        return
    query = f"url={run.cog}&algorithm=terrarium&resampling=bilinear&reproject=bilinear"

    def titiler(z: int, x: int, y: int) -> str:
        return f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?{query}"

    with titiler_server(log_name=f"titiler-{run.city}") as base, httpx.Client(base_url=base, timeout=120) as client:
        run.titiler_cold = http_pass(client, tiles, titiler, ok=(200, 404))
        run.titiler_second = http_pass(client, tiles, titiler, ok=(200, 404))


# -- profiles ----------------------------------------------------------------------------------

def print_profile(title: str, work: Callable[[], None], top: int, expand: tuple[str, ...] = ()) -> None:
    """Run `work` under cProfile: the project's functions by cumulative time, the direct callees of the
    functions named in `expand`, then the hottest calls anywhere."""
    gc.collect()
    profiler = cProfile.Profile()
    t = time.perf_counter()
    profiler.enable()
    work()
    profiler.disable()
    print(f"\nprofile: {title} ({time.perf_counter() - t:.2f} s under cProfile)")
    stats = pstats.Stats(profiler)
    print_project_functions(stats, top, digits=3)
    stats.calc_callees()
    for (file, line, func), callees in stats.all_callees.items():  # type: ignore[attr-defined]
        if func not in expand or REPO not in Path(file).resolve().parents:
            continue
        print(f"  callees of {Path(file).resolve().relative_to(REPO)}:{line} {func} (cumulative s, calls):")
        for (cfile, cline, cfunc), value in sorted(callees.items(), key=lambda kv: kv[1][3], reverse=True)[:10]:
            print(f"  {value[3]:8.3f} {value[1]:8d}  {Path(cfile).name}:{cline} {cfunc}")
    print_hottest_calls(stats, top, digits=3)


def profile_vector(ts: Tileset, rounds: int, top: int) -> None:
    """cProfile of `rounds` warm render passes over a tileset's tiles, in process."""
    from tiles.service import COMBINED, TileService
    from twin.snapshots import CityView

    service = TileService(CityView(ts.root), None, memory_items=0)
    names = service.combined_layers() if ts.combined else [ts.layers[0]["name"]]
    key = COMBINED if ts.combined else f"layer/{names[0]}"
    tiles = ts.all_tiles()
    for t in tiles:  # load and simplify outside the profile
        service.vector_tile(names, *t, key)

    def work() -> None:
        for _ in range(rounds):
            for t in tiles:
                service.vector_tile(names, *t, key)

    print_profile(f"{rounds} x {len(tiles)} warm renders of {ts.name} (TileService.vector_tile, no tile cache)",
                  work, top, expand=("vector_tile", "tile", "tile_message", "_tags"))


def profile_terrain(run: TerrainRun, top: int) -> None:
    """cProfile of tiles.terrain.terrarium_png over a city's terrain tiles, in process."""
    from tiles import terrain

    tiles = [t for z in sorted(run.tiles) for t in run.tiles[z]]

    def work() -> None:
        for z, x, y in tiles:
            with contextlib.suppress(terrain.NoTerrain):
                terrain.terrarium_png(run.cog, z, x, y)

    print_profile(f"{len(tiles)} terrarium_png of {run.city} (in process)", work, top,
                  expand=("elevation_tile", "terrarium_png"))


# -- report ------------------------------------------------------------------------------------

def describe_machine() -> list[str]:
    """What a closing note needs to make the figures comparable."""
    cpu = cpu_model()
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    wrk_version = (wrk.stdout + wrk.stderr).split("\n")[0].strip() if shutil.which("wrk") else "no wrk"
    load = os.getloadavg()
    return [f"machine: {os.cpu_count()} CPUs (nproc), {cpu}, {platform.system()} {platform.release()}, "
            f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at start",
            f"python {platform.python_version()}; {wrk_version}"]


def verdict(ok: bool) -> str:
    """'met' or 'NOT met'."""
    return "met" if ok else "NOT met"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 tiles per zoom, 1 warm round, wrk 3 s")
    parser.add_argument("--tiles", type=int, default=None, help="tiles sampled per zoom (default 40, 10 with --quick)")
    parser.add_argument("--rounds", type=int, default=None, help="warm render passes (default 3, 1 --quick)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of each wrk run (default 10, 3 --quick)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--skip-postgis", action="store_true", help="no PostGIS comparison")
    parser.add_argument("--skip-titiler", action="store_true", help="no TiTiler comparison")
    parser.add_argument("--skip-wrk", action="store_true", help="no throughput run")
    parser.add_argument("--profile", action="store_true", help="then cProfile the in-process render paths")
    parser.add_argument("--top", type=int, default=25, help="rows of each profile to print (default 25)")
    args = parser.parse_args(argv)
    n_tiles = args.tiles or (10 if args.quick else 40)
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (3.0 if args.quick else 10.0)
    if n_tiles < 1 or rounds < 1 or duration <= 0:
        parser.error(f"--tiles, --rounds and --duration must be positive, got {n_tiles}, {rounds}, {duration}")

    installed = {}
    if not args.skip_wrk:
        installed["wrk"] = ensure_wrk()
    if not args.skip_postgis:
        if shutil.which("ogr2ogr") is None:
            parser.error("ogr2ogr is not on PATH (apt-get install gdal-bin)")
        installed["postgresql + postgis"] = ensure_postgis_installed()
        installed["psycopg"] = ensure_psycopg()
    if not args.skip_titiler:
        installed["titiler"] = ensure_titiler()
    machine = describe_machine()
    for line in machine:
        print(line)
    for what, done in installed.items():
        print(f"{what}: {done}")

    roots = ensure_demo()
    records = {city: catalogue(root) for city, root in roots.items()}
    by_name = {city: {r["name"]: r for r in recs} for city, recs in records.items()}
    from tiles.service import TILE_LAYER_KINDS

    tilesets = [
        Tileset("yantai", roots["yantai"], "building", [by_name["yantai"]["building"]]),
        Tileset("yantai", roots["yantai"], "pipe", [by_name["yantai"]["pipe"]]),
        Tileset("yantai", roots["yantai"], "combined",
                sorted((r for r in records["yantai"] if r["kind"] in TILE_LAYER_KINDS), key=lambda r: r["name"]),
                combined=True),
        Tileset("ky4", roots["ky4"], "pipe", [by_name["ky4"]["pipe"]]),
    ]
    for ts in tilesets:
        for z in MVT_ZOOMS:
            ts.tiles[z], ts.covering[z] = sample_tiles(ts.extent(), z, n_tiles, SEED)
        print(f"{ts.name}: {len(ts.layers)} layer(s), {sum(r['feature_count'] for r in ts.layers):,} features; "
              f"tiles sampled/covering per zoom: "
              + ", ".join(f"z{z} {len(ts.tiles[z])}/{ts.covering[z]}" for z in MVT_ZOOMS))

    # 1. HTTP latency, cold and cached
    http: dict[str, tuple[Latencies, Latencies]] = {}
    content_paths: dict[str, list[str]] = {}
    for ts in tilesets:
        t = time.perf_counter()
        cold, cached, with_content = mvt_http(ts)
        http[ts.name] = (cold, cached)
        content_paths.setdefault(ts.city, []).extend(with_content)
        print(f"[1] {ts.name}: cold p50/p95 {fmt(p50_p95(cold.pooled()))} ms (first request {cold.first_ms:.0f} ms), "
              f"cached {fmt(p50_p95(cached.pooled()))} ms; statuses {cold.statuses}, cache {cold.cache} then "
              f"{cached.cache} ({time.perf_counter() - t:.0f} s)", flush=True)

    # 2. throughput
    wrk_results: dict[str, list[WrkResult]] = {}
    wrk_diagnostic: dict[str, list[WrkResult]] = {}
    if not args.skip_wrk:
        for city, root in roots.items():
            wrk_results[city] = throughput(city, root, content_paths[city], duration, args.threads, args.connections)
            # not a target: one worker, to tell the server's cost from the multi-worker socket set-up
            wrk_diagnostic[city] = throughput(city, root, content_paths[city], duration, args.threads,
                                              args.connections, workers=1, encodings=(False,))
            for w in wrk_results[city] + wrk_diagnostic[city]:
                print(f"[2] {city} {w.label}: {w.requests_per_s:,.0f} tiles/s over {w.urls} URLs, latency avg "
                      f"{w.latency_avg} p99 {w.latency_p99}, not-hit {w.misses}, bad {w.bad}", flush=True)

    # 3. in process, beside PostGIS
    inproc: dict[str, tuple[Latencies, Latencies]] = {}
    pgres: dict[str, dict[str, tuple[Latencies, Latencies]]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    pg_note = ""
    with contextlib.ExitStack() as stack:
        conn = None
        pg_layers: dict[str, list[PgLayer]] = {}
        if not args.skip_postgis:
            import psycopg

            pg = stack.enter_context(throwaway_cluster())
            conn = stack.enter_context(psycopg.connect(pg.dsn, autocommit=True))
            version = conn.execute("SELECT postgis_lib_version(), current_setting('server_version')").fetchone()
            loaded = 0.0
            for ts in tilesets:
                needed = [r for r in ts.layers if f"{ts.city}/{r['name']}" not in pg_layers]
                done, seconds = load_layers(pg, conn, ts.city, ts.root, needed)
                loaded += seconds
                for layer in done:
                    pg_layers[f"{ts.city}/{layer.name}"] = [layer]
            pg_note = (f"PostgreSQL {version[1]}, PostGIS {version[0]}, cluster on 127.0.0.1:{pg.port}; "
                       f"{len(pg_layers)} layers loaded with ogr2ogr + 3857 column + GiST in {loaded:.1f} s")
            print(pg_note)
        for ts in tilesets:
            first, warm, ours = inprocess_render(ts, rounds)
            inproc[ts.name] = (first, warm)
            line = (f"[3] {ts.name}: in-process first pass {fmt(p50_p95(first.pooled()))} ms, "
                    f"warm {fmt(p50_p95(warm.pooled()))} ms")
            if conn is not None:
                layers = [pg_layers[f"{ts.city}/{r['name']}"][0] for r in ts.layers]
                pgres[ts.name] = {}
                for variant, in_query in (("3857 column", False), ("ST_Transform in query", True)):
                    pg_first, pg_warm, theirs = postgis_render(conn, ts, layers, rounds, in_query)
                    pgres[ts.name][variant] = (pg_first, pg_warm)
                    if not in_query:
                        sizes[ts.name] = (sum(len(v) for v in ours.values()), sum(len(v) for v in theirs.values()))
                    line += f"; PostGIS ({variant}) first {fmt(p50_p95(pg_first.pooled()))}, warm " \
                            f"{fmt(p50_p95(pg_warm.pooled()))} ms"
            print(line, flush=True)

    # 4. terrain
    terrain_runs: list[TerrainRun] = []
    for city, root in roots.items():
        dem = next(r for r in records[city] if r["kind"] == "dem")
        run = TerrainRun(city, (root / dem["table"]).resolve(), {}, {})
        for z in TERRAIN_ZOOMS:
            run.tiles[z], run.covering[z] = sample_tiles(tuple(dem["bounds_wgs84"]), z, n_tiles, SEED)
        terrain_http(run, root, not args.skip_titiler)
        terrain_runs.append(run)
        line = (f"[4] {city} {dem['table']}: ours cold {fmt(p50_p95(run.ours_cold.pooled()))} ms, cached "
                f"{fmt(p50_p95(run.ours_cached.pooled()))} ms, statuses {run.ours_cold.statuses}")
        if run.titiler_cold:
            line += (f"; TiTiler cold {fmt(p50_p95(run.titiler_cold.pooled()))} ms, second "
                     f"{fmt(p50_p95(run.titiler_second.pooled()))} ms, statuses {run.titiler_cold.statuses}")
        print(line, flush=True)

    # -- the figure block ------------------------------------------------------------------------
    verdicts: list[bool] = []
    print("\n" + "=" * 100)
    print(f"bench/tiles.py  {time.strftime('%Y-%m-%d %H:%M')}  tiles per zoom <= {n_tiles}, warm rounds {rounds}, "
          f"wrk -t{args.threads} -c{args.connections} -d{duration:g}s")
    for line in machine:
        print(line)
    if pg_note:
        print(pg_note)
    if terrain_runs and not args.skip_titiler:
        print(f"TiTiler (titiler.application, rio-tiler, rasterio): {titiler_version()}")
    print("times in ms, p50/p95 over the sampled tiles; 'render' = TileService.vector_tile in process, no tile "
          "cache, warm snapshot (median of the warm rounds per tile); PostGIS = psycopg prepared statement, "
          "median of the warm rounds, pre-transformed 3857 column + GiST ('PG xform' = ST_Transform in the "
          "query); ratio = render / PostGIS p50")
    for ts in tilesets:
        cold, cached = http[ts.name]
        first, warm = inproc[ts.name]
        pg_warm = pgres.get(ts.name, {}).get("3857 column", (None, None))[1]
        pg_xform = pgres.get(ts.name, {}).get("ST_Transform in query", (None, None))[1]
        pg = pgres.get(ts.name, {})
        print(f"\nMVT {ts.name}  ({sum(r['feature_count'] for r in ts.layers):,} features in {len(ts.layers)} "
              f"layer(s); cold first request {cold.first_ms:.0f} ms, in-process first pass first tile "
              f"{first.first_ms:.0f} ms)")
        header = (f"  {'z':>3} {'n':>3} {'empty':>5} | {'HTTP cold':>15} | {'HTTP cached':>15} | "
                  f"{'render':>15} | {'PostGIS':>15} | {'PG xform':>15} | {'render/PG':>9} | {'HTTPcold/PG':>11}")
        print(header)
        for z in [*MVT_ZOOMS, None]:
            c, h, w = at_zoom(cold, z), at_zoom(cached, z), at_zoom(warm, z)
            pw, px = at_zoom(pg_warm, z), at_zoom(pg_xform, z)
            empty = cold.empty.get(z, 0) if z is not None else sum(cold.empty.values())
            n = len(cold.pooled() if z is None else cold.ms.get(z, []))
            print(f"  {'all' if z is None else z:>3} {n:>3} {empty:>5} | {fmt(c)} | {fmt(h)} | {fmt(w)} | "
                  f"{fmt(pw)} | {fmt(px)} | {w[0] / pw[0]:9.2f} | {c[0] / pw[0]:11.2f}")
        print(f"  in-process first pass (fresh TileService: loads and simplifies): {fmt(p50_p95(first.pooled()))}"
              + (f"; PostGIS first pass {fmt(p50_p95(pg['3857 column'][0].pooled()))}" if pg else ""))
        if ts.name in sizes:
            ours_b, theirs_b = sizes[ts.name]
            print(f"  bytes over the sample: ours {ours_b:,}, PostGIS {theirs_b:,} ({ours_b / max(theirs_b, 1):.2f}x)")

    print("\nverdicts")
    for ts in tilesets:
        pg = pgres.get(ts.name)
        if not pg:
            continue
        warm = inproc[ts.name][1].pooled()
        cold = http[ts.name][0].pooled()
        pg50 = p50_p95(pg["3857 column"][1].pooled())[0]
        r_render = p50_p95(warm)[0] / pg50
        r_http = p50_p95(cold)[0] / pg50
        r_first = p50_p95(inproc[ts.name][0].pooled())[0] / p50_p95(pg["3857 column"][0].pooled())[0]
        verdicts.append(r_render <= TARGET_MVT_RATIO)
        print(f"  MVT {ts.name:<16} render/PostGIS p50 {r_render:5.2f}x (target <= {TARGET_MVT_RATIO}: "
              f"{verdict(r_render <= TARGET_MVT_RATIO)}); first pass/first pass {r_first:5.2f}x; "
              f"HTTP cold/PostGIS {r_http:5.2f}x ({verdict(r_http <= TARGET_MVT_RATIO)}, HTTP on our side only)")
    for city, results in wrk_results.items():
        for w in results:
            ok = w.requests_per_s >= TARGET_TILES_PER_S and w.bad == 0
            verdicts.append(ok)
            print(f"  wrk {city:<6} {w.label:<36} {w.requests_per_s:8,.0f} tiles/s over {w.urls} cached URLs "
                  f"(latency avg {w.latency_avg}, p99 {w.latency_p99}; not-hit {w.misses}, bad {w.bad}) "
                  f"(target >= {TARGET_TILES_PER_S:,.0f}: {verdict(ok)})")
        for w in wrk_diagnostic.get(city, []):
            print(f"  wrk {city:<6} {w.label:<36} {w.requests_per_s:8,.0f} tiles/s (diagnostic, no target; latency "
                  f"avg {w.latency_avg}, p99 {w.latency_p99}; not-hit {w.misses}, bad {w.bad})")
    for run in terrain_runs:
        print(f"  terrain {run.city} ({run.cog.name}), tiles per zoom "
              + ", ".join(f"z{z} {len(run.tiles[z])}/{run.covering[z]}" for z in TERRAIN_ZOOMS))
        print(f"    {'z':>3} | {'ours cold':>15} | {'TiTiler cold':>15} | {'ours cached':>15} | {'TiTiler 2nd':>15} | "
              f"{'cold ratio':>10} | {'cached ratio':>12}")
        for z in [*TERRAIN_ZOOMS, None]:
            oc, oh = at_zoom(run.ours_cold, z), at_zoom(run.ours_cached, z)
            tc, th = at_zoom(run.titiler_cold, z), at_zoom(run.titiler_second, z)
            print(f"    {'all' if z is None else z:>3} | {fmt(oc)} | {fmt(tc)} | {fmt(oh)} | {fmt(th)} | "
                  f"{oc[0] / tc[0]:10.2f} | {oh[0] / th[0]:12.2f}")
        if run.titiler_cold:
            cold_ratio = p50_p95(run.ours_cold.pooled())[0] / p50_p95(run.titiler_cold.pooled())[0]
            cached_ratio = p50_p95(run.ours_cached.pooled())[0] / p50_p95(run.titiler_second.pooled())[0]
            verdicts += [cold_ratio <= TARGET_TERRAIN_COLD, cached_ratio <= TARGET_TERRAIN_CACHED]
            print(f"    ours/TiTiler p50: cold {cold_ratio:.2f}x (target <= {TARGET_TERRAIN_COLD}: "
                  f"{verdict(cold_ratio <= TARGET_TERRAIN_COLD)}), cached {cached_ratio:.2f}x (target <= "
                  f"{TARGET_TERRAIN_CACHED}: {verdict(cached_ratio <= TARGET_TERRAIN_CACHED)}); first request "
                  f"ours {run.ours_cold.first_ms:.0f} ms, TiTiler {run.titiler_cold.first_ms:.0f} ms; bytes "
                  f"ours {run.ours_cold.nbytes:,}, TiTiler {run.titiler_cold.nbytes:,}")
    load = os.getloadavg()
    print(f"\nload average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (other processes share the CPUs)")
    print(f"{sum(verdicts)} of {len(verdicts)} targets met")
    print("=" * 100)

    if args.profile:
        for ts in tilesets:
            profile_vector(ts, rounds, args.top)
        for run in terrain_runs:
            profile_terrain(run, args.top)
    return 0 if all(verdicts) else 1



if __name__ == "__main__":
    sys.exit(main())
