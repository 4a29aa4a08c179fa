"""Fixture factories: small cities, GIS files and DEMs made in the test's own folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from twin.workspace import City

SHARED_DATA = Path(os.environ.get("TWIN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

# A point in Yantai, in EPSG:4549 (CGCS2000 / 3-degree GK CM 120E).
YANTAI_X, YANTAI_Y = 623_000.0, 4_155_000.0


# The stores every store-facing test runs on; `both_backends` parametrizes a test over them.
BACKENDS = ["gpkg", "postgis"]
both_backends = pytest.mark.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def postgis_url() -> str:
    """A PostGIS database for the session: TWIN_TEST_DATABASE_URL when set (an existing server;
    each test gets its own schema), else a throwaway cluster on 127.0.0.1, removed afterwards."""
    existing = os.environ.get("TWIN_TEST_DATABASE_URL")
    if existing:
        yield existing
        return
    from twin.store.pgcluster import ensure_postgis_installed, throwaway_cluster

    ensure_postgis_installed()
    with throwaway_cluster() as cluster:
        yield cluster.url


def fresh_schema_url(base_url: str) -> str:
    """`base_url` with a schema of its own, so tests never share a city."""
    import uuid

    return f"{base_url}{'&' if '?' in base_url else '?'}schema=t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def backend(request) -> str:
    """The store a test's cities use: "gpkg" unless the test is parametrized with `both_backends`."""
    return getattr(request, "param", "gpkg")


def store_url_for(backend: str, request) -> str | None:
    """The store URL of a new city on `backend` (None: the default GeoPackage)."""
    if backend == "gpkg":
        return None
    return fresh_schema_url(request.getfixturevalue("postgis_url"))


@pytest.fixture
def city(tmp_path: Path, backend: str, request) -> City:
    """An empty city in EPSG:4549 (in a GeoPackage, or in PostGIS for `backend` "postgis")."""
    return City.init(tmp_path / "city", "EPSG:4549", name="test city", store=store_url_for(backend, request))


def shared(*parts: str) -> Path:
    """A file of ../shared/data; the suite needs them (they are the proof on real data)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: the tests need ../shared/data beside the repository "
                                f"(or TWIN_SHARED_DATA pointing at it)")
    return path


def write_geojson(path: Path, features: list[dict], crs: str | None = "EPSG:4549") -> Path:
    """Write a FeatureCollection; `crs` None writes no "crs" member."""
    doc: dict = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": f.get("properties", {}), "geometry": f["geometry"]} for f in features]}
    if crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs.split(':')[1]}"}}
    path.write_text(json.dumps(doc, ensure_ascii=False))
    return path


def line(x0: float, y0: float, x1: float, y1: float) -> dict:
    """A GeoJSON LineString from (x0, y0) to (x1, y1)."""
    return {"type": "LineString", "coordinates": [[x0, y0], [x1, y1]]}


def square(x: float, y: float, size: float) -> dict:
    """A GeoJSON Polygon square with south-west corner (x, y)."""
    return {"type": "Polygon", "coordinates": [[[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]]}


def point(x: float, y: float) -> dict:
    """A GeoJSON Point."""
    return {"type": "Point", "coordinates": [x, y]}


def pipe_features(n: int = 3) -> list[dict]:
    """n pipes of 100 m heading east from the Yantai test point, with Chinese survey columns."""
    return [{"geometry": line(YANTAI_X, YANTAI_Y + 10 * i, YANTAI_X + 100, YANTAI_Y + 10 * i),
             "properties": {"编号": f"WS-{i:03d}", "管径": 300 + 100 * i, "材质": "球墨铸铁", "埋深": 1.5,
                            "管线类型": "给水", "备注": f"note {i}"}} for i in range(n)]


PIPE_SPEC = """
kind = "pipe"
id = "编号"

[fields]
diameter_mm = "管径"
material = "材质"
depth_m = "埋深"
utility = "管线类型"
"""


@pytest.fixture
def pipe_spec(tmp_path: Path) -> Path:
    """A TOML spec mapping Chinese pipe survey columns to the canonical fields."""
    path = tmp_path / "pipe_spec.toml"
    path.write_text(PIPE_SPEC, encoding="utf-8")
    return path


def write_dem(path: Path, *, crs: str | None = "EPSG:4549", origin=(YANTAI_X - 500, YANTAI_Y + 500),
              size=(100, 100), cell=10.0, slope=0.01, base=100.0, nodata: float | None = -9999.0) -> Path:
    """A plane DEM z = base + slope * (x - origin_x), as a GeoTIFF."""
    width, height = size
    xs = origin[0] + (np.arange(width) + 0.5) * cell
    z = np.tile(base + slope * (xs - origin[0]), (height, 1)).astype("float32")
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
               "transform": from_origin(origin[0], origin[1], cell, cell), "nodata": nodata}
    if crs:
        profile["crs"] = crs
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(z, 1)
    return path


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`twin serve` running in a subprocess on 127.0.0.1, stopped by `close`."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, workers: int = 1,
                 args: list[str] | None = None) -> None:
        import os
        import subprocess
        import sys
        import time

        import httpx

        import tempfile

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        environment = {**os.environ, "TWIN_CATALOGUE_TTL": "0.2", **(env or {})}
        # a file, not a pipe: a pipe nobody reads fills up and stops the server mid-test
        self._log = tempfile.NamedTemporaryFile(prefix="twin-serve-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "twin.cli", "serve", str(root), "--port", str(self.port), "--workers", str(workers),
             *(args or [])],
            env=environment, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log()}")
            try:
                if httpx.get(f"{self.url}/conformance", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.close()
        raise RuntimeError("server did not start within 60 s")

    def log(self) -> str:
        """What the server printed so far (its access log and tracebacks)."""
        from pathlib import Path

        return Path(self._log.name).read_text(errors="replace")

    def close(self) -> None:
        import os
        import signal
        from pathlib import Path

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except Exception:
                os.killpg(self.process.pid, signal.SIGKILL)
        self._log.close()
        Path(self._log.name).unlink(missing_ok=True)


class InProcessServer:
    """The API app served by uvicorn in a thread of the test process, so a test can reach
    into `app.state` (to publish an event, say) while real clients talk HTTP to it."""

    def __init__(self, root: Path) -> None:
        import threading
        import time

        import uvicorn

        from api.app import create_app

        self.app = create_app(root)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("in-process server did not start")
            time.sleep(0.05)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


@pytest.fixture(scope="session")
def demo_city(demo_city_gpkg) -> City:
    """The demo's Yantai district (with its BIM models) in its GeoPackage, built once per test session.

    A module that runs on both stores overrides `demo_city` and `server` with `demo_on` and `server_on`.
    """
    return demo_city_gpkg


@pytest.fixture(scope="session")
def demo_city_gpkg(tmp_path_factory) -> City:
    """The demo's Yantai district (with its BIM models), built once per test session."""
    from twin.demo import build_demo

    out = tmp_path_factory.mktemp("demo")
    return build_demo(out, shared_data=SHARED_DATA)["yantai"]


@pytest.fixture(scope="session")
def demo_city_postgis(demo_city_gpkg, tmp_path_factory, postgis_url) -> City:
    """The demo's Yantai district moved into PostGIS with `twin export` (its own schema), once per session."""
    from twin.transfer import export_city

    folder = tmp_path_factory.mktemp("demo-postgis") / "yantai"
    shutil.copytree(demo_city_gpkg.root, folder, ignore=shutil.ignore_patterns("cache"))
    export_city(City.open(folder), fresh_schema_url(postgis_url))
    for leftover in folder.glob("city.*"):  # what serves it from now on is PostGIS alone
        if leftover.name != "city.json":
            leftover.unlink()
    return City.open(folder)


def demo_on(backend: str, request) -> City:
    """The session's demo city on one backend."""
    return request.getfixturevalue("demo_city_gpkg" if backend == "gpkg" else "demo_city_postgis")


def server_on(backend: str, request) -> "Server":
    """The session's `twin serve` of the demo city on one backend."""
    return request.getfixturevalue("server_gpkg" if backend == "gpkg" else "server_postgis")


@pytest.fixture(scope="session")
def server_postgis(demo_city_postgis):
    """`twin serve` over the demo city in PostGIS, for the whole session."""
    running = Server(demo_city_postgis.root)
    yield running
    running.close()


@pytest.fixture(scope="session")
def server(server_gpkg):
    """`twin serve` over the demo city, for the whole session."""
    return server_gpkg


@pytest.fixture(scope="session")
def server_gpkg(demo_city_gpkg):
    """`twin serve` over the demo city in its GeoPackage, for the whole session."""
    running = Server(demo_city_gpkg.root)
    yield running
    running.close()


@pytest.fixture(scope="session")
def live_server(demo_city_gpkg):
    """The demo city's API in this process, for tests that publish events to it."""
    running = InProcessServer(demo_city_gpkg.root)
    yield running
    running.close()


class Mosquitto:
    """A real Mosquitto broker on 127.0.0.1 with its own config, port and persistence folder."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        import shutil

        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise FileNotFoundError("mosquitto is not installed; scripts/install-system.sh installs it")
        self.binary = binary
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.config = folder / "mosquitto.conf"
        # persistence: what the broker accepted survives its restart, as on a real deployment
        import getpass

        # as root, mosquitto would switch to its own user, who may not write our folder
        self.config.write_text(f"user {getpass.getuser()}\n"
                               f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                               f"persistence_location {folder}/\nmax_queued_messages 0\n"
                               f"max_inflight_messages 0\nlog_dest file {folder}/mosquitto.log\n")
        self.process = None
        self.start()

    def start(self) -> None:
        import socket
        import subprocess
        import time

        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start within 20 s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM: it saves what it holds, as a service manager's stop does)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def broker(tmp_path):
    """A Mosquitto broker for one test."""
    running = Mosquitto(tmp_path / "mosquitto")
    yield running
    running.stop()


def copy_city(demo_city, folder: Path) -> Path:
    """A copy of the demo city that a test may write observations into (in PostGIS: a schema of its own)."""
    shutil.copytree(demo_city.root, folder, ignore=shutil.ignore_patterns("cache", "*.live.sqlite*"))
    url = demo_city.store.url
    if url.startswith("postgresql:"):
        from twin.store import open_store
        from twin.transfer import copy_store

        base = url.split("?")[0]
        target = open_store(folder, fresh_schema_url(base))
        copy_store(demo_city.store, target)
        config = json.loads((folder / "city.json").read_text())
        (folder / "city.json").write_text(json.dumps(dict(config, store=target.url), ensure_ascii=False))
    return folder
