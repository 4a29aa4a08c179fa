"""Sensor routes and feeds against real parts: `twin serve --mqtt` in a subprocess, a real
Mosquitto broker, HTTP clients and an SSE reader."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import mapbox_vector_tile
import pytest

from conftest import Mosquitto, Server, copy_city
from both_stores import backend, demo_city, server  # noqa: F401  (every test here runs on both stores)
from layers.mqtt import ObservationPublisher
from layers.sensors import format_time, now_ms
from test_api_events import read_events

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

@pytest.fixture(scope="module")
def feed(demo_city, tmp_path_factory):
    """A copy of the demo city served with a write token and subscribed to a real broker."""
    folder = tmp_path_factory.mktemp("sensors")
    broker = Mosquitto(folder / "mosquitto")
    root = copy_city(demo_city, folder / "city")
    server = Server(root, env={"TWIN_API_TOKEN": TOKEN, "TWIN_SWEEP_S": "3600"}, args=["--mqtt", broker.url])
    yield server, broker, root
    server.close()
    broker.stop()


def sensor_ids(root: Path) -> list[str]:
    from twin.workspace import City

    return sorted(City.open(root).features("sensor")["sensor_id"])


def stored_keys(root: Path) -> list[tuple[str, int]]:
    from twin.workspace import City

    return [(row[0], row[1]) for chunk in City.open(root).store.read_live("observations") for row in chunk]


def wait_for(condition, timeout: float = 90.0, every: float = 0.2):
    """Poll `condition` until it returns something true (not a timed test: a deadline for hangs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not met in time")


def counts(server: Server) -> dict[str, int]:
    return httpx.get(f"{server.url}/sensors/stats", timeout=10).json()["counts"]


def test_writes_need_a_token_and_reads_stay_open(feed):
    server, _, _ = feed
    body = [{"sensor_id": "S-0001", "value": 0.35}]
    assert httpx.post(f"{server.url}/sensors/observations", json=body).status_code == 401
    wrong = httpx.post(f"{server.url}/sensors/observations", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["code"] == "Unauthorized"
    assert httpx.get(f"{server.url}/sensors/latest").status_code == 200
    assert httpx.get(f"{server.url}/collections/pipe/items?limit=1").status_code == 200


def test_forty_thousand_readings_over_mqtt_and_http_are_each_stored_once_and_every_invalid_one_counted(feed):
    server, broker, root = feed
    before = counts(server)
    ids = sensor_ids(root)
    base = now_ms() - 2 * 3_600_000  # two hours ago: history, distinct from the other tests' readings
    valid: set[tuple[str, int]] = set()
    invalid = {"invalid_json": 0, "bad_value": 0, "bad_time": 0, "unknown_sensor": 0, "future_time": 0}

    def reading(k: int) -> tuple[str, dict]:
        sid, t = ids[k % len(ids)], base + k
        kind = k % 97
        if kind == 1:
            invalid["bad_value"] += 1
            return sid, {"time": format_time(t), "value": "high"}
        if kind == 2:
            invalid["bad_time"] += 1
            return sid, {"time": "32/13/2024", "value": 0.3}
        if kind == 3:
            invalid["unknown_sensor"] += 1
            return "S-NONE", {"time": format_time(t), "value": 0.3}
        if kind == 4:
            invalid["future_time"] += 1
            return sid, {"time": format_time(now_ms() + 86_400_000), "value": 0.3}
        valid.add((sid, t))
        return sid, {"time": format_time(t), "value": 0.3 + (k % 7) / 100}

    publisher = ObservationPublisher(broker.url).start()
    for k in range(20_000):
        if k % 97 == 5:
            invalid["invalid_json"] += 1
            publisher.publish(ids[0], b"{not json")
        else:
            publisher.publish(*reading(k))
    resent = [(s, t) for s, t in sorted(valid)[:100]]
    for sid, t in resent:  # a device that sends again: idempotent
        publisher.publish(sid, {"time": format_time(t), "value": 0.0})
    with httpx.Client(timeout=60, headers=AUTH) as client:
        for start in range(20_000, 40_000, 1000):
            batch = [dict(reading(k)[1], sensor_id=reading_sid) for k in range(start, start + 1000)
                     for reading_sid in [ids[k % len(ids)] if k % 97 != 3 else "S-NONE"]]
            response = client.post(f"{server.url}/sensors/observations", json=batch)
            assert response.status_code == 200, response.text
        assert client.post(f"{server.url}/sensors/observations", content=b"[{]").status_code == 400
        invalid["invalid_json"] += 1
    expected_stored = before.get("stored", 0) + len(valid)
    try:
        wait_for(lambda: counts(server).get("stored", 0) >= expected_stored
                 and counts(server).get("duplicates", 0) >= before.get("duplicates", 0) + len(resent), timeout=60)
    finally:
        print("before", before, "after", counts(server), "expected", expected_stored, invalid)
    publisher.stop()
    after = counts(server)
    assert after["stored"] == expected_stored
    assert after.get("duplicates", 0) - before.get("duplicates", 0) == len(resent)
    for reason, n in invalid.items():
        assert after.get(reason, 0) - before.get(reason, 0) == n, reason
    keys = [k for k in stored_keys(root) if base <= k[1] < base + 40_000]
    assert len(keys) == len(set(keys)) == len(valid) and set(keys) == valid


def test_a_pipe_alarm_reaches_the_event_stream_the_features_and_the_tiles(feed):
    server, _, _ = feed
    received: list = []
    reader = threading.Thread(target=read_events, args=(f"{server.url}/events", 4, received, 60))
    reader.start()
    wait_for(lambda: received)  # the stream is open
    time.sleep(0.3)  # the subscription is taken after the headers go out
    t = now_ms()
    for value, status in ((0.05, "alarm"), (0.36, "normal")):
        response = httpx.post(f"{server.url}/sensors/observations", headers=AUTH,
                              json={"sensor_id": "S-0001", "time": format_time(t), "value": value})
        assert response.status_code == 201, response.text
        t += 1
        if status == "alarm":
            wait_for(lambda: any(d.get("uid") == "pipe.JS-0001" and d.get("status") == "alarm"
                                 for _, d in received[1:]))
            alarms = httpx.get(f"{server.url}/collections/pipe/items?status=alarm").json()
            assert "pipe.JS-0001" in [f["id"] for f in alarms["features"]]
            tile = _pipe_tile(server)
            assert tile["pipe.JS-0001"] == "alarm"
    reader.join(timeout=60)
    status_events = [d for e, d in received[1:] if e == "status"]
    assert [(d["layer"], d["uid"], d["status"]) for d in status_events] == [
        ("sensor", "sensor.S-0001", "alarm"), ("pipe", "pipe.JS-0001", "alarm"),
        ("sensor", "sensor.S-0001", "normal"), ("pipe", "pipe.JS-0001", "normal")]
    assert status_events[1]["sensor"] == "S-0001" and status_events[1]["value"] == 0.05
    assert _pipe_tile(server)["pipe.JS-0001"] == "normal", "the cached tile was redrawn"


def _pipe_tile(server: Server) -> dict[str, str]:
    """Status by pipe uid in the z17 tile over pipe.JS-0001's middle."""
    import morecantile

    feature = httpx.get(f"{server.url}/collections/pipe/items/pipe.JS-0001").json()
    coords = feature["geometry"]["coordinates"]
    lon, lat = (coords[0][0] + coords[-1][0]) / 2, (coords[0][1] + coords[-1][1]) / 2
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, 17)
    response = httpx.get(f"{server.url}/collections/pipe/tiles/WebMercatorQuad/{tile.z}/{tile.y}/{tile.x}")
    assert response.status_code == 200, response.text
    layer = mapbox_vector_tile.decode(response.content)["pipe"]
    return {f["properties"]["uid"]: f["properties"].get("status") for f in layer["features"]}


def test_a_sensorthings_device_posts_to_its_datastream(feed):
    server, _, _ = feed
    url = f"{server.url}/v1.1/Datastreams('S-0002')/Observations"
    t = format_time(now_ms() - 60_000)
    response = httpx.post(url, headers=AUTH, json={"phenomenonTime": t, "result": 0.31, "resultQuality": "good"})
    assert response.status_code == 201, response.text
    assert response.headers["location"].endswith("/v1.1/Datastreams('S-0002')/Observations")
    assert httpx.post(url, headers=AUTH, json={"phenomenonTime": t, "result": None}).status_code == 400
    missing = httpx.post(f"{server.url}/v1.1/Datastreams('S-NONE')/Observations", headers=AUTH, json={"result": 1})
    assert missing.status_code == 404
    history = httpx.get(f"{server.url}/sensors/S-0002/observations", params={"start": t}).json()
    assert history["observations"][0] == {"time": t, "value": 0.31}
    latest = {s["sensor_id"]: s for s in httpx.get(f"{server.url}/sensors/latest").json()["sensors"]}
    assert latest["S-0002"]["pipe_id"] == "pipe.RQ-0001" and latest["S-0002"]["status"] in ("normal", "warning")


def test_history_is_downsampled_per_bucket_and_bad_parameters_are_400(feed):
    server, _, _ = feed
    hour = 3_600_000
    t0 = (now_ms() // hour - 30) * hour
    batch = [{"sensor_id": "S-0003", "time": format_time(t0 + k * 60_000), "value": k % 10 / 10} for k in range(120)]
    assert httpx.post(f"{server.url}/sensors/observations", headers=AUTH, json=batch).json()["stored"] == 120
    body = httpx.get(f"{server.url}/sensors/S-0003/observations",
                     params={"start": format_time(t0), "end": format_time(t0 + 2 * hour), "bucket": "PT1H"}).json()
    assert [(b["count"], b["min"], b["max"]) for b in body["observations"]] == [(60, 0.0, 0.9), (60, 0.0, 0.9)]
    assert httpx.get(f"{server.url}/sensors/S-0003/observations?bucket=often").status_code == 400
    assert httpx.get(f"{server.url}/sensors/S-0003/observations?start=soon").status_code == 400
    assert httpx.get(f"{server.url}/sensors/S-NONE/observations").status_code == 404


def test_a_broker_restart_mid_stream_loses_nothing(demo_city, tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto")
    root = copy_city(demo_city, tmp_path / "city")
    server = Server(root, env={"TWIN_API_TOKEN": TOKEN}, args=["--mqtt", broker.url])
    try:
        ids = sensor_ids(root)
        base = now_ms() - 3_600_000
        publisher = ObservationPublisher(broker.url).start()
        sent = set()
        for k in range(10_000):
            if k == 4000:
                wait_for(lambda: counts(server).get("stored", 0) > 0)
                broker.stop()
                broker.start()  # same port; the subscriber and the publisher reconnect by themselves
            sid, t = ids[k % len(ids)], base + k
            publisher.publish(sid, {"time": format_time(t), "value": 0.35})
            sent.add((sid, t))
        wait_for(lambda: counts(server).get("stored", 0) >= len(sent))
        publisher.stop()
        keys = stored_keys(root)
        assert len(keys) == len(set(keys)) and set(keys) == sent
        assert counts(server)["stored"] == len(sent)
    finally:
        server.close()
        broker.stop()


def test_status_changes_written_by_another_process_reach_every_worker(demo_city, tmp_path):
    root = copy_city(demo_city, tmp_path / "city")
    server = Server(root, workers=2)
    try:
        streams = [[] for _ in range(4)]
        readers = [threading.Thread(target=read_events, args=(f"{server.url}/events", 2, s, 60)) for s in streams]
        for reader in readers:
            reader.start()
        wait_for(lambda: all(streams))
        time.sleep(0.5)
        csv = tmp_path / "alarm.csv"
        csv.write_text(f"sensor_id,time,value\nS-0001,{format_time(now_ms())},0.05\n")
        import subprocess
        import sys

        result = subprocess.run([sys.executable, "-m", "twin.cli", "sensors", "replay", str(root), str(csv)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        for reader in readers:
            reader.join(timeout=60)
        for received in streams:
            assert [(d["uid"], d["status"]) for _, d in received[1:]] == [("sensor.S-0001", "alarm"),
                                                                           ("pipe.JS-0001", "alarm")]
            assert received[1][1]["id"] < received[2][1]["id"], "ids are the store's, the same in every worker"
    finally:
        server.close()
