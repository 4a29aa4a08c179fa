"""A throwaway PostgreSQL + PostGIS cluster on 127.0.0.1: initdb, start, stop and delete.

The test suite's PostGIS fixture and the benchmarks use it; a deployment points twin at
its own server instead. Needs the Debian packages `postgresql` and `postgresql-NN-postgis-3`
(`ensure_postgis_installed` installs them with apt when missing, as root). As root the
server runs as the `postgres` user (PostgreSQL refuses to run as root)::

    with throwaway_cluster() as pg:
        print(pg.url)          # postgresql://postgres@127.0.0.1:PORT/twin
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

__all__ = ["Cluster", "throwaway_cluster", "ensure_postgis_installed", "free_port", "pg_bin"]

DB = "twin"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bin() -> Path:
    """The bin folder of the newest installed PostgreSQL server."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    if not found:
        raise FileNotFoundError("no PostgreSQL server under /usr/lib/postgresql "
                                "(scripts/install-system.sh, or apt-get install postgresql)")
    return Path(found[-1]).parent


def ensure_postgis_installed() -> str:
    """Install postgresql and the matching postgis package with apt when missing; returns what was done."""
    done = []
    try:
        bin_dir = pg_bin()
    except FileNotFoundError:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        bin_dir = pg_bin()
        done.append("postgresql")
    major = bin_dir.parent.name
    if not glob.glob(f"/usr/share/postgresql/{major}/extension/postgis.control"):
        package = f"postgresql-{major}-postgis-3"
        if not done:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        done.append(package)
    return ", ".join(done) if done else f"already installed (PostgreSQL {major})"


def _as_server_user(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a server tool as `postgres` when we are root (the server refuses root), else as ourselves."""
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, **kwargs)


@dataclass
class Cluster:
    """A running cluster: where it is and how to reach it."""

    data_dir: Path
    port: int
    bin_dir: Path
    db: str = DB

    @property
    def dsn(self) -> str:
        """libpq connection string of the cluster's database."""
        return f"host=127.0.0.1 port={self.port} dbname={self.db} user=postgres"

    @property
    def url(self) -> str:
        """The same database as a postgresql:// URL (what `twin init --db` takes)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.db}"

    def psql(self, sql: str, db: str | None = None) -> str:
        """Run SQL with psql; returns its unaligned output."""
        dsn = self.dsn if db is None else f"host=127.0.0.1 port={self.port} dbname={db} user=postgres"
        done = subprocess.run([str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                               "-d", dsn, "-c", sql], check=True, capture_output=True, text=True)
        return done.stdout.strip()

    def createdb(self, name: str, postgis: bool = True) -> str:
        """Create another database (with PostGIS unless told not to); returns its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        if postgis:
            self.psql("CREATE EXTENSION postgis", db=name)
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def load_gpkg(self, gpkg: Path, layer: str, table: str) -> float:
        """Copy one GeoPackage layer into `table` with ogr2ogr (geometry column `geom`, key `fid`); seconds taken."""
        t = time.perf_counter()
        subprocess.run(["ogr2ogr", "-f", "PostgreSQL", f"PG:{self.dsn}", str(gpkg), layer, "-nln", table,
                        "-lco", "GEOMETRY_NAME=geom", "-lco", "FID=fid", "-lco", "OVERWRITE=YES",
                        "-lco", "SPATIAL_INDEX=GIST"], check=True, capture_output=True, text=True)
        return time.perf_counter() - t


@contextlib.contextmanager
def throwaway_cluster(parent: Path | None = None, db: str = DB) -> Iterator[Cluster]:
    """initdb a cluster in a fresh folder, start it on 127.0.0.1:<free port> with PostGIS in `db`;
    stopped and removed afterwards."""
    bin_dir = pg_bin()
    data_dir = Path(tempfile.mkdtemp(prefix="twin-pg-", dir=parent))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    data_dir.chmod(0o700)
    port = free_port()
    started = False
    try:
        _as_server_user([str(bin_dir / "initdb"), "-D", str(data_dir), "-U", "postgres", "--auth=trust",
                         "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, text=True)
        # fsync off: a throwaway cluster that dies is rebuilt, never recovered
        options = (f"-p {port} -k {data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB -c jit=off "
                   f"-c max_connections=300")
        _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-o", options, "-l",
                         str(data_dir / "server.log"), "-w", "-t", "60", "start"], check=True, capture_output=True,
                        text=True)
        started = True
        cluster = Cluster(data_dir, port, bin_dir, db)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db],
                       check=True, capture_output=True, text=True)
        cluster.psql("CREATE EXTENSION postgis")
        yield cluster
    finally:
        if started:
            _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-m", "immediate", "-w", "stop"],
                            capture_output=True, text=True)
        shutil.rmtree(data_dir, ignore_errors=True)
