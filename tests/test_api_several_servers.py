"""Several `twin serve` processes on one PostGIS city: a change made through any of them (an
ingest, a status change) reaches every other one's tiles, items and SSE stream within a second.

The servers poll only every 60 s here (TWIN_CATALOGUE_TTL, TWIN_STATUS_POLL_S), so what
brings the change across in time is PostgreSQL LISTEN/NOTIFY (twin.notify), not the poll.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import geopandas as gpd
import httpx
import mapbox_vector_tile
import morecantile
import pytest

from conftest import Server, copy_city
from layers.sensors import format_time, now_ms
from test_api_events import read_events

pytest.importorskip("twin.store.postgis", reason="needs the PostGIS store")

TOKEN = "several-servers-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# polls slower than any deadline here: only a change notice can meet it
QUIET = {"TWIN_API_TOKEN": TOKEN, "TWIN_CATALOGUE_TTL": "60", "TWIN_STATUS_POLL_S": "60", "TWIN_SWEEP_S": "3600",
         "TWIN_DISK_CACHE": "false"}
WITHIN_S = 1.0
TMS = morecantile.tms.get("WebMercatorQuad")


def listening(server: Server, timeout: float = 30) -> None:
    """Wait until the server hears the store's change notices."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{server.url}/health", timeout=5).json()["changes"] == "notices":
            return
        time.sleep(0.05)
    raise AssertionError(f"{server.url} does not hear change notices: {server.log()[-2000:]}")


def until(condition, within: float, seen=lambda: None) -> float:
    """Poll `condition` (every 20 ms) until it is true; the seconds it took, failing past `within` with `seen()`."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        elapsed = time.monotonic() - started
        if elapsed > within:
            raise AssertionError(f"not seen within {within} s; seen: {seen()}")
        time.sleep(0.02)


def pipe_tile(server: Server, z: int, x: int, y: int) -> tuple[dict[str, dict], str]:
    """The pipe layer's features of one tile by uid, and whether the server had it cached."""
    response = httpx.get(f"{server.url}/collections/pipe/tiles/WebMercatorQuad/{z}/{y}/{x}", timeout=30)
    assert response.status_code == 200, response.text
    layer = mapbox_vector_tile.decode(response.content)["pipe"]
    return {f["properties"]["uid"]: f["properties"] for f in layer["features"]}, response.headers["x-tile-cache"]


def tile_over(server: Server, uid: str, z: int = 17) -> tuple[int, int, int]:
    """The tile at zoom `z` over the middle of pipe `uid`."""
    coords = httpx.get(f"{server.url}/collections/pipe/items/{uid}", timeout=30).json()["geometry"]["coordinates"]
    middle = coords[len(coords) // 2]
    tile = TMS.tile(middle[0], middle[1], z)
    return tile.z, tile.x, tile.y


@pytest.fixture(scope="module")
def city_root(demo_city_postgis, tmp_path_factory) -> Path:
    """A copy of the PostGIS demo city (a schema of its own) that these tests write to."""
    return copy_city(demo_city_postgis, tmp_path_factory.mktemp("several") / "city")


@pytest.fixture(scope="module")
def two_servers(city_root):
    """Two `twin serve` processes on the same PostGIS city, both hearing notices."""
    servers = [Server(city_root, env=QUIET), Server(city_root, env=QUIET)]
    try:
        for server in servers:
            listening(server)
        yield servers
    finally:
        for server in servers:
            server.close()


def test_an_ingest_shows_in_the_other_servers_items_and_tiles_within_a_second(two_servers, city_root,
                                                                               demo_city_gpkg, tmp_path):
    _, other = two_servers
    sources = demo_city_gpkg.root.parent / "sources"
    pipes = gpd.read_file(sources / "pipes.gpkg")
    uid = httpx.get(f"{other.url}/collections/pipe/items?limit=1", timeout=30).json()["features"][0]["id"]
    near, far = tile_over(other, uid), None
    # a tile of the same layer far from the edit, which must stay cached
    for candidate in httpx.get(f"{other.url}/collections/pipe/items?limit=200", timeout=30).json()["features"]:
        tile = tile_over(other, candidate["id"])
        if abs(tile[1] - near[1]) > 2 or abs(tile[2] - near[2]) > 2:
            far = tile
            break
    assert far is not None
    before, _ = pipe_tile(other, *near)
    pipe_tile(other, *far)
    assert pipe_tile(other, *near)[1] == "hit" and pipe_tile(other, *far)[1] == "hit"
    version = httpx.get(f"{other.url}/collections/pipe", timeout=30).json()

    edited = pipes.copy()
    material_column = _source_column(sources / "pipe_spec.toml", "material")
    row = _row_of(edited, sources / "pipe_spec.toml", uid)
    edited.loc[row, material_column] = "PE100 (re-surveyed)"
    source = tmp_path / "pipes-edited.gpkg"
    edited.to_file(source, driver="GPKG")
    done = subprocess.run([sys.executable, "-m", "twin.cli", "ingest", str(city_root), str(source), "--kind", "pipe",
                           "--spec", str(sources / "pipe_spec.toml")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # the ingest has committed: the other server must show it within a second
    took = until(lambda: httpx.get(f"{other.url}/collections/pipe/items/{uid}", timeout=5)
                 .json()["properties"]["material"] == "PE100 (re-surveyed)", WITHIN_S)
    features, cache = pipe_tile(other, *near)
    assert cache == "miss" and features[uid]["material"] == "PE100 (re-surveyed)"
    assert before[uid]["material"] != "PE100 (re-surveyed)"
    assert pipe_tile(other, *far)[1] == "hit", "a tile the edit does not touch stays cached"
    assert httpx.get(f"{other.url}/collections/pipe", timeout=30).json() != version
    print(f"the other server showed the ingest after {took * 1000:.0f} ms")


def _source_column(spec: Path, field: str) -> str:
    from layers.spec import load_spec

    return load_spec(spec).fields[field].column


def _row_of(pipes: gpd.GeoDataFrame, spec: Path, uid: str):
    from layers.spec import load_spec

    key = uid.split(".", 1)[1]
    id_column = load_spec(spec).id_column
    if id_column:
        matches = pipes.index[pipes[id_column].astype(str) == key]
        assert len(matches) == 1, f"no single source row for {uid}"
        return matches[0]
    return pipes.index[int(key) - 1]


def test_a_status_change_through_one_server_reaches_the_others_event_stream_within_a_second(two_servers):
    one, other = two_servers
    received: list = []
    reader = threading.Thread(target=read_events, args=(f"{other.url}/events", 2, received, 30), daemon=True)
    reader.start()
    until(lambda: received, 10)  # the stream is open
    time.sleep(0.3)  # the subscription is taken after the headers go out
    response = httpx.post(f"{one.url}/sensors/observations", headers=AUTH, timeout=30,
                          json={"sensor_id": "S-0001", "time": format_time(now_ms()), "value": 0.05})
    assert response.status_code == 201, response.text
    took = until(lambda: any(e == "status" and d.get("uid") == "pipe.JS-0001" and d["status"] == "alarm"
                             for e, d in received[1:]), WITHIN_S, lambda: received[1:])
    reader.join(timeout=10)
    assert [(d["layer"], d["uid"], d["status"]) for _, d in received[1:]] == [
        ("sensor", "sensor.S-0001", "alarm"), ("pipe", "pipe.JS-0001", "alarm")]
    alarms = httpx.get(f"{other.url}/collections/pipe/items?status=alarm", timeout=30).json()
    assert "pipe.JS-0001" in [f["id"] for f in alarms["features"]]
    print(f"the other server's stream carried the alarm after {took * 1000:.0f} ms")


def test_every_worker_of_a_multi_worker_server_follows_changes_within_a_second(city_root):
    server = Server(city_root, env=QUIET, workers=2)
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers up, each hearing notices
            health = httpx.get(f"{server.url}/health", timeout=5).json()
            if health["changes"] == "notices":
                pids.add(health["pid"])
        assert len(pids) == 2, "both workers answered, listening"
        streams = [[] for _ in range(6)]  # spread over the workers by the kernel
        readers = [threading.Thread(target=read_events, args=(f"{server.url}/events", 2, s, 30), daemon=True)
                   for s in streams]
        for reader in readers:
            reader.start()
        until(lambda: all(streams), 10)
        time.sleep(0.3)
        response = httpx.post(f"{server.url}/sensors/observations", headers=AUTH, timeout=30,
                              json={"sensor_id": "S-0004", "time": format_time(now_ms()), "value": 0.05})
        assert response.status_code == 201, response.text
        until(lambda: all(len(s) >= 3 for s in streams), WITHIN_S, lambda: [s[1:] for s in streams])
        for stream in streams:
            assert [(d["uid"], d["status"]) for _, d in stream[1:3]] == [("sensor.S-0004", "alarm"),
                                                                        ("pipe.JS-0002", "alarm")]
        # the feature shows the alarm from whichever worker answers
        seen: set[int] = set()
        for _ in range(20):
            alarms = httpx.get(f"{server.url}/collections/pipe/items?status=alarm&limit=1000", timeout=30).json()
            assert "pipe.JS-0002" in [f["id"] for f in alarms["features"]]
            seen.add(httpx.get(f"{server.url}/health", timeout=5).json()["pid"])
        assert seen == pids
    finally:
        server.close()
