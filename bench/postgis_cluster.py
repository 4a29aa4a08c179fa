"""A throwaway PostGIS cluster for benchmarks: initdb, start on 127.0.0.1, stop and delete.

Used by bench/tiles.py; not a test fixture. Needs the Debian packages `postgresql` and
`postgresql-NN-postgis-3` (installed on first use when missing, as root) and runs the
server as the `postgres` user::

    with throwaway_cluster() as pg:
        print(pg.dsn)          # host=127.0.0.1 port=... dbname=bench user=postgres
        pg.load_gpkg(gpkg, "pipe_v1", "yantai_pipe")
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cluster", "throwaway_cluster", "ensure_postgis_installed", "free_port"]

DB = "bench"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    """The bin folder of the newest installed PostgreSQL server."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise FileNotFoundError("no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)")
    return Path(found[-1]).parent


def ensure_postgis_installed() -> str:
    """Install postgresql and the matching postgis package with apt when missing; returns what was done."""
    done = []
    try:
        pg_bin = _pg_bin()
    except FileNotFoundError:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        pg_bin = _pg_bin()
        done.append("postgresql")
    major = pg_bin.parent.name
    if not glob.glob(f"/usr/share/postgresql/{major}/extension/postgis.control"):
        package = f"postgresql-{major}-postgis-3"
        if not done:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        done.append(package)
    return ", ".join(done) if done else f"already installed (PostgreSQL {major})"


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *args], **kwargs)


@dataclass
class Cluster:
    """A running cluster: where it is and how to reach it."""

    data_dir: Path
    port: int
    bin_dir: Path

    @property
    def dsn(self) -> str:
        """libpq connection string of the benchmark database."""
        return f"host=127.0.0.1 port={self.port} dbname={DB} user=postgres"

    def psql(self, sql: str) -> str:
        """Run SQL with psql; returns its unaligned output."""
        done = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", self.dsn, "-c", sql], check=True, capture_output=True, text=True)
        return done.stdout.strip()

    def load_gpkg(self, gpkg: Path, layer: str, table: str) -> float:
        """Copy one GeoPackage layer into `table` with ogr2ogr (geometry column `geom`, key `fid`); seconds taken."""
        t = time.perf_counter()
        subprocess.run(["ogr2ogr", "-f", "PostgreSQL", f"PG:{self.dsn}", str(gpkg), layer, "-nln", table,
                        "-lco", "GEOMETRY_NAME=geom", "-lco", "FID=fid", "-lco", "OVERWRITE=YES",
                        "-lco", "SPATIAL_INDEX=GIST"], check=True, capture_output=True, text=True)
        return time.perf_counter() - t


@contextlib.contextmanager
def throwaway_cluster(parent: Path | None = None) -> Iterator[Cluster]:
    """initdb a cluster in a fresh folder, start it on 127.0.0.1:<free port> with PostGIS; stopped and removed after."""
    bin_dir = _pg_bin()
    data_dir = Path(tempfile.mkdtemp(prefix="twin-bench-pg-", dir=parent))
    shutil.chown(data_dir, "postgres", "postgres")
    data_dir.chmod(0o700)
    port = free_port()
    started = False
    try:
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, text=True)
        # fsync off: a benchmark cluster that dies is rebuilt, never recovered
        options = (f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c shared_buffers=256MB -c jit=off")
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l",
                      str(data_dir / "server.log"), "-w", "-t", "60", "start"], check=True, capture_output=True,
                     text=True)
        started = True
        cluster = Cluster(data_dir, port, bin_dir)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", DB],
                       check=True, capture_output=True, text=True)
        cluster.psql("CREATE EXTENSION postgis")
        yield cluster
    finally:
        if started:
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "fast", "-w", "stop"],
                         capture_output=True, text=True)
        shutil.rmtree(data_dir, ignore_errors=True)
