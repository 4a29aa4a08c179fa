"""Benchmark: the same city served from its GeoPackage and from PostGIS, by one and several workers.

Run by hand from the repository root (as root: it may apt-get install wrk and PostGIS, and
runs a throwaway PostgreSQL cluster as the `postgres` user)::

    .venv/bin/python bench/postgis.py              # 20 tiles per zoom, wrk 3 rounds of 10 s
    .venv/bin/python bench/postgis.py --quick      # 6 tiles per zoom, wrk 1 round of 4 s

The Yantai demo city (bench/tiles.py builds it into bench/out/demo, once) is copied and
moved into a throwaway PostGIS cluster with `twin export --to postgresql://...`. Tilesets:
Yantai's `building` and `pipe` layers and its combined tileset, tiles sampled (fixed seed)
over each tileset's extent at z12..z17. What is measured, in this order:

1. MVT latency over HTTP, sequential, per backend: *cold* is the first request of each
   tile on a fresh `twin serve` without disk cache (its first tile also waits for the
   layers to load from the store), *cached* the same tiles again (X-Tile-Cache: hit).
2. Cached throughput: `wrk -t2 -c16` cycling over the tiles of (1) that have content,
   rendered once and warmed first: GeoPackage with `--workers 2`, PostGIS with `--workers 1`,
   `2` and `4`; the configurations take turns for `--wrk-rounds` rounds (this machine is
   shared) and the best round of each is its figure.
3. Change propagation between two servers: from sending one `twin serve` a reading that
   changes a pipe's status (the write included) until the other's SSE stream carries it;
   PostGIS (LISTEN/NOTIFY) beside GeoPackage (the other polls every TWIN_STATUS_POLL_S, 0.15 s).

Targets: PostGIS cold MVT p50 <= 1.5 x GeoPackage's (pooled over the tilesets); throughput
rising with workers up to the cores. The exit status is 1 when one is missed. Every server
and the cluster are stopped at the end, on error too.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
# this checkout first (the venv's editable install may point at another); bench/ last, so the
# project's `tiles` package wins over bench/tiles.py, which is loaded below under its own name
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH_DIR] + [str(BENCH_DIR)]

import httpx  # noqa: E402

from postgis_cluster import ensure_postgis_installed, throwaway_cluster  # noqa: E402


def _load_tiles_bench():
    spec = importlib.util.spec_from_file_location("bench_tiles", BENCH_DIR / "tiles.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_tiles"] = module
    spec.loader.exec_module(module)
    sys.path.append(str(BENCH_DIR))  # it takes bench/ off the path; the helpers above are loaded
    return module


bt = _load_tiles_bench()

OUT = BENCH_DIR / "out" / "postgis"
SEED = bt.SEED
TARGET_COLD_RATIO = 1.5
STATUS_SAMPLES = 30


def export_to_postgis(demo_root: Path, url: str) -> tuple[Path, float]:
    """A copy of the demo city moved into PostGIS with `twin export`; its folder and the seconds it took."""
    root = OUT / "yantai"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(demo_root, root, ignore=shutil.ignore_patterns("cache", "*.live.sqlite*"))
    t = time.perf_counter()
    done = subprocess.run([*bt.twin_cli(), "export", str(root), "--to", f"{url}?schema=yantai", "--quiet"],
                          cwd=REPO, env=bt.checkout_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"twin export failed: {done.stdout}{done.stderr}")
    seconds = time.perf_counter() - t
    for leftover in root.glob("city.*"):  # served from PostGIS alone
        if leftover.name != "city.json":
            leftover.unlink()
    return root, seconds


def tilesets(city: str, root: Path, records: list[dict], n_tiles: int) -> list:
    """Yantai's building, pipe and combined tilesets, tiles sampled per zoom."""
    from tiles.service import TILE_LAYER_KINDS

    by_name = {r["name"]: r for r in records}
    sets = [bt.Tileset(city, root, "building", [by_name["building"]]),
            bt.Tileset(city, root, "pipe", [by_name["pipe"]]),
            bt.Tileset(city, root, "combined",
                       sorted((r for r in records if r["kind"] in TILE_LAYER_KINDS), key=lambda r: r["name"]),
                       combined=True)]
    for ts in sets:
        for z in bt.MVT_ZOOMS:
            ts.tiles[z], ts.covering[z] = bt.sample_tiles(ts.extent(), z, n_tiles, SEED)
    return sets


# -- 3. change propagation -----------------------------------------------------------------------

def propagation(root: Path, samples: int) -> list[float]:
    """Milliseconds from sending one server a status-changing reading to the event on the other's SSE stream."""
    token = "bench-token"
    env = bt.checkout_env({k: v for k, v in os.environ.items() if not k.startswith("TWIN_")})
    env.update({"TWIN_API_TOKEN": token, "TWIN_SWEEP_S": "3600", "TWIN_DISK_CACHE": "false"})
    arrived: dict[str, float] = {}
    seen = threading.Condition()
    with contextlib.ExitStack() as stack:
        one, other = (stack.enter_context(_serve(root, env, f"propagation-{root.name}-{k}")) for k in range(2))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # until the other hears notices (where the store sends them)
            if httpx.get(f"{other}/health", timeout=5).json()["changes"] != "polling":
                break
            time.sleep(0.05)

        def read() -> None:
            try:
                with httpx.stream("GET", f"{other}/events", timeout=None) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            event = json.loads(line[5:])
                            if event.get("layer") == "pipe":
                                with seen:
                                    arrived[f"{event['status']}:{event['value']}"] = time.perf_counter()
                                    seen.notify_all()
            except httpx.HTTPError:
                if not stop.is_set():
                    raise

        stop = threading.Event()
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(1.0)  # subscribed
        out = []
        with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            for k in range(samples):
                status, value = ("alarm", 0.05 + k * 1e-4) if k % 2 == 0 else ("normal", 0.36 + k * 1e-4)
                sent = time.perf_counter()
                response = client.post(f"{one}/sensors/observations", json={
                    "sensor_id": "S-0001", "time": _iso(int(time.time() * 1000)), "value": round(value, 6)})
                response.raise_for_status()
                key = f"{status}:{round(value, 6)}"
                with seen:
                    if not seen.wait_for(lambda: key in arrived, timeout=10):
                        raise RuntimeError(f"the other server never showed {key}")
                out.append((arrived[key] - sent) * 1000)
                time.sleep(0.05)
        stop.set()
    return out


def _serve(root: Path, env: dict[str, str], log_name: str):
    """`twin serve CITY` on a free port with `env` (a context manager of its base URL)."""
    port = bt.free_port()
    command = [*bt.twin_cli(), "serve", str(root), "--host", "127.0.0.1", "--port", str(port)]
    return bt.server(command, env, "/health", log_name, port)


def _iso(t_ms: int) -> str:
    from layers.sensors import format_time

    return format_time(t_ms)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 tiles per zoom, wrk 4 s, 10 propagation samples")
    parser.add_argument("--tiles", type=int, default=None, help="tiles sampled per zoom (default 20, 6 with --quick)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of each wrk run (default 10, 4 --quick)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--workers", default="1,2,4", help="worker counts against PostGIS (default 1,2,4)")
    parser.add_argument("--wrk-rounds", type=int, default=None,
                        help="interleaved wrk rounds per configuration, the best counts (default 3, 1 --quick)")
    args = parser.parse_args(argv)
    n_tiles = args.tiles or (6 if args.quick else 20)
    duration = args.duration or (4.0 if args.quick else 10.0)
    samples = 10 if args.quick else STATUS_SAMPLES
    wrk_rounds = args.wrk_rounds or (1 if args.quick else 3)
    worker_counts = [int(w) for w in args.workers.split(",")]

    installed = {"wrk": bt.ensure_wrk(), "postgresql + postgis": ensure_postgis_installed(),
                 "psycopg": bt.ensure_psycopg()}
    for line in bt.describe_machine():
        print(line)
    for what, done in installed.items():
        print(f"{what}: {done}")
    roots = bt.ensure_demo()
    OUT.mkdir(parents=True, exist_ok=True)
    ok = True
    with throwaway_cluster() as pg:
        url = f"postgresql://postgres@127.0.0.1:{pg.port}/{getattr(pg, 'db', 'bench')}"
        print("PostgreSQL " + pg.psql("SELECT current_setting('server_version') || ', PostGIS ' || "
                                      "postgis_lib_version()"))
        pg_root, seconds = export_to_postgis(roots["yantai"], url)
        print(f"twin export of the Yantai demo to PostGIS: {seconds:.1f} s")
        records = bt.catalogue(roots["yantai"])
        backends = {"gpkg": tilesets("yantai", roots["yantai"], records, n_tiles),
                    "postgis": tilesets("yantai-postgis", pg_root, records, n_tiles)}
        for ts in backends["gpkg"]:
            print(f"{ts.label}: {len(ts.layers)} layer(s), {sum(r['feature_count'] for r in ts.layers):,} features; "
                  f"tiles sampled/covering per zoom: "
                  + ", ".join(f"z{z} {len(ts.tiles[z])}/{ts.covering[z]}" for z in bt.MVT_ZOOMS))

        # 1. cold and cached latency per backend
        cold: dict[str, list[float]] = {"gpkg": [], "postgis": []}
        cached: dict[str, list[float]] = {"gpkg": [], "postgis": []}
        paths: dict[str, list[str]] = {"gpkg": [], "postgis": []}
        for gpkg_ts, pg_ts in zip(backends["gpkg"], backends["postgis"], strict=True):
            for backend, ts in (("gpkg", gpkg_ts), ("postgis", pg_ts)):
                first, again, with_content = bt.mvt_http(ts)
                cold[backend] += first.pooled()
                cached[backend] += again.pooled()
                paths[backend] += with_content
                print(f"[1] {backend:7s} {ts.label:8s}: cold p50/p95 {bt.fmt(bt.p50_p95(first.pooled()))} ms "
                      f"(first request {first.first_ms:.0f} ms), cached {bt.fmt(bt.p50_p95(again.pooled()))} ms; "
                      f"statuses {first.statuses}", flush=True)
        if sorted(paths["gpkg"]) != sorted(paths["postgis"]):
            print("    note: the backends differ in which tiles have content "
                  f"({len(paths['gpkg'])} vs {len(paths['postgis'])})")
        ratio = bt.p50_p95(cold["postgis"])[0] / bt.p50_p95(cold["gpkg"])[0]
        for backend in ("gpkg", "postgis"):
            print(f"[1] {backend:7s} all tilesets: cold p50/p95 {bt.fmt(bt.p50_p95(cold[backend]))} ms, "
                  f"cached {bt.fmt(bt.p50_p95(cached[backend]))} ms over {len(cold[backend])} tiles")
        print(f"[1] PostGIS / GeoPackage cold p50: {ratio:.2f} (target <= {TARGET_COLD_RATIO}: "
              f"{bt.verdict(ratio <= TARGET_COLD_RATIO)})")
        ok &= ratio <= TARGET_COLD_RATIO

        # 2. cached throughput: configurations interleaved round by round, so a burst of load from
        # elsewhere on the machine does not land on one of them only; the best round counts
        results: dict[tuple[str, int], bt.WrkResult] = {}
        rounds: dict[tuple[str, int], list[float]] = {}
        runs = [("gpkg", 2)] + [("postgis", w) for w in worker_counts]
        for k in range(wrk_rounds):
            for backend, workers in runs:
                root = roots["yantai"] if backend == "gpkg" else pg_root
                (result,) = bt.throughput(f"yantai-{backend}", root, paths[backend], duration, args.threads,
                                          args.connections, workers=workers, encodings=(False,))
                rounds.setdefault((backend, workers), []).append(result.requests_per_s)
                best = results.get((backend, workers))
                if best is None or result.requests_per_s > best.requests_per_s:
                    results[(backend, workers)] = result
                print(f"    round {k + 1}: {backend} --workers {workers}: {result.requests_per_s:,.0f} tiles/s, "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
        for (backend, workers), result in results.items():
            print(f"[2] {backend:7s} --workers {workers}: {result.requests_per_s:,.0f} tiles/s (best of "
                  f"{', '.join(f'{r:,.0f}' for r in rounds[backend, workers])}) over {result.urls} URLs, latency avg "
                  f"{result.latency_avg} p99 {result.latency_p99}, not-hit {result.misses}, bad {result.bad}",
                  flush=True)
        cores = os.cpu_count() or 1
        up_to_cores = [w for w in sorted(worker_counts) if w <= cores]
        rising = all(results[("postgis", a)].requests_per_s < results[("postgis", b)].requests_per_s
                     for a, b in zip(up_to_cores, up_to_cores[1:]))
        figures = ", ".join(f"{w}: {results['postgis', w].requests_per_s:,.0f}/s" for w in up_to_cores)
        print(f"[2] PostGIS throughput rising with workers up to the {cores} cores ({figures}): {bt.verdict(rising)}")
        ok &= rising

        # 3. change propagation between two servers
        for backend, root in (("postgis", pg_root), ("gpkg", _writable_copy(roots["yantai"]))):
            ms = propagation(root, samples)
            p50, p95 = bt.p50_p95(ms)
            print(f"[3] {backend:7s} reading POSTed to one server -> status event on the other's SSE stream: "
                  f"p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(ms):.0f} ms over {len(ms)} changes "
                  f"({'LISTEN/NOTIFY' if backend == 'postgis' else 'polling every 0.15 s'})", flush=True)

    print("targets: " + ("all met" if ok else "NOT all met"))
    return 0 if ok else 1


def _writable_copy(root: Path) -> Path:
    """A copy of a GeoPackage city that the propagation run may write readings into."""
    copy = OUT / "yantai-gpkg"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("cache", "*.live.sqlite*"))
    return copy


if __name__ == "__main__":
    sys.exit(main())
