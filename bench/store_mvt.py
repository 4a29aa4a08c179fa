"""Benchmark: vector tiles of a city kept in PostGIS, drawn by our encoder or by ST_AsMVT.

Decides whether the PostGIS store should hand tiles to `ST_AsMVT`. Run by hand from the
repository root (as root: it runs a throwaway cluster as the `postgres` user)::

    .venv/bin/python bench/store_mvt.py [--demo bench/out/demo] [--tiles 30] [--rounds 5]

The demo's Yantai district (built under --demo when missing) is moved into a throwaway
PostGIS with `twin export`'s copy. For tiles sampled (fixed seed) over the `pipe` and
`building` layers at z14..z17, in this process:

- *ours*: `TileService.vector_tile` over the PostGIS city, no tile cache: the first pass
  on a fresh service (it loads each layer from PostGIS once), then warm passes (the layer
  in memory; the median of the passes per tile);
- *ST_AsMVT*: one prepared statement per tile over the store's own table (geometry in the
  city CRS, transformed in the query), the same attributes and zoom ranges;
- *ST_AsMVT 3857*: the same over a Web Mercator copy of the geometry with its own GiST
  index (what the store would have to keep to give PostGIS its best case).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    """Build or reuse the demo, move it into PostGIS, time both ways of drawing tiles."""
    import morecantile
    import psycopg
    from psycopg import sql

    from tiles.service import TileService
    from tiles.vector import TILE_PROPERTIES, zoom_range
    from twin.snapshots import CityView
    from twin.store import open_store
    from twin.store.pgcluster import throwaway_cluster
    from twin.transfer import copy_store
    from twin.workspace import City

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=REPO / "bench" / "out" / "demo")
    parser.add_argument("--tiles", type=int, default=30, help="tiles per zoom and layer")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not (args.demo / "yantai" / "city.json").exists():
        from twin.demo import build_demo

        print(f"building the demo into {args.demo} ...", flush=True)
        build_demo(args.demo)
    source = City.open(args.demo / "yantai")
    tms = morecantile.tms.get("WebMercatorQuad")
    rng = random.Random(8)
    with throwaway_cluster() as pg:
        import shutil
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="twin-mvt-"))
        for f in source.root.glob("*.tif"):
            shutil.copy(f, folder / f.name)
        target = open_store(folder, f"{pg.url}?schema=yantai")
        t = time.perf_counter()
        copy_store(source.store, target)
        print(f"copied Yantai into PostGIS in {time.perf_counter() - t:.1f} s "
              f"({pg.psql('SELECT postgis_lib_version()')}, PostgreSQL {pg.psql('SHOW server_version')})")
        (folder / "city.json").write_text(
            f'{{"name": "yantai", "crs": "{source.config.crs}", "store": "{target.url}"}}')
        conn = psycopg.connect(pg.dsn, autocommit=True)
        print(f"{'layer':>9} {'z':>3} {'tiles':>5} | {'ours first':>10} {'ours warm':>10} | "
              f"{'ST_AsMVT':>9} {'ST_AsMVT 3857':>13} | (p50 ms; p95 in brackets)")
        for layer in ("pipe", "building"):
            record = target.layer(layer)
            columns = [c for c in TILE_PROPERTIES.get(record.kind, ["uid", "name"])
                       if c in target.read_features(layer).columns]
            table = sql.Identifier("yantai", record.table)
            conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS g3857 geometry").format(table))
            conn.execute(sql.SQL("UPDATE {} SET g3857 = ST_Force2D(ST_Transform(geom, 3857))").format(table))
            conn.execute(sql.SQL("CREATE INDEX ON {} USING gist (g3857)").format(table))
            conn.execute(sql.SQL("ANALYZE {}").format(table))
            srid = conn.execute(sql.SQL("SELECT ST_SRID(geom) FROM {} LIMIT 1").format(table)).fetchone()[0]
            west, south, east, north = record.bounds_wgs84
            cols = sql.SQL("").join(sql.SQL(", {}").format(sql.Identifier(c)) for c in columns)
            env = sql.SQL("ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int)")
            in_query = sql.SQL(
                "SELECT ST_AsMVT(q, {name}, 4096, 'geom') FROM (SELECT ST_AsMVTGeom(ST_Force2D(ST_Transform(geom, 3857)), "
                "{env}, 4096, 64, true) AS geom{cols} FROM {table} WHERE geom && ST_Transform(ST_TileEnvelope("
                "%(z)s::int, %(x)s::int, %(y)s::int, margin => 64.0 / 4096), {srid})) q").format(
                name=sql.Literal(layer), env=env, cols=cols, table=table, srid=sql.Literal(srid))
            mercator = sql.SQL(
                "SELECT ST_AsMVT(q, {name}, 4096, 'geom') FROM (SELECT ST_AsMVTGeom(g3857, {env}, 4096, 64, true) "
                "AS geom{cols} FROM {table} WHERE g3857 && ST_TileEnvelope(%(z)s::int, %(x)s::int, %(y)s::int, "
                "margin => 64.0 / 4096)) q").format(name=sql.Literal(layer), env=env, cols=cols, table=table)
            service = TileService(CityView(folder), None, memory_items=0)
            for z in range(max(14, zoom_range(record.kind)[0]), 18):
                tiles = list(tms.tiles(west, south, east, north, [z]))
                tiles = rng.sample(tiles, min(args.tiles, len(tiles)))
                first, warm, pg_in, pg_merc = [], [], [], []
                for tile in tiles:
                    t = time.perf_counter()
                    service.vector_tile([layer], z, tile.x, tile.y, f"layer/{layer}")
                    first.append((time.perf_counter() - t) * 1000)
                for statement, out in ((in_query, pg_in), (mercator, pg_merc)):
                    per = {tile: [] for tile in tiles}
                    for _ in range(args.rounds + 1):  # the first round prepares the statement
                        for tile in tiles:
                            t = time.perf_counter()
                            conn.execute(statement, {"z": z, "x": tile.x, "y": tile.y}, prepare=True).fetchone()
                            per[tile].append((time.perf_counter() - t) * 1000)
                    out.extend(statistics.median(v[1:]) for v in per.values())
                per = {tile: [] for tile in tiles}
                for _ in range(args.rounds):
                    for tile in tiles:
                        t = time.perf_counter()
                        service.vector_tile([layer], z, tile.x, tile.y, f"layer/{layer}")
                        per[tile].append((time.perf_counter() - t) * 1000)
                warm.extend(statistics.median(v) for v in per.values())

                def cell(values):
                    return f"{pct(values, 0.5):5.2f} ({pct(values, 0.95):5.1f})"

                print(f"{layer:>9} {z:>3} {len(tiles):>5} | {cell(first):>10} {cell(warm):>10} | "
                      f"{cell(pg_in):>9} {cell(pg_merc):>13}", flush=True)
        conn.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
