"""Benchmark: sustained sensor ingest over HTTP and MQTT, and the latency from publish to SSE.

Run by hand from the repository root (Mosquitto installed; see scripts/install-system.sh)::

    .venv/bin/python bench/sensors.py                   # 60 s of MQTT, 20 s of HTTP
    .venv/bin/python bench/sensors.py --mqtt-seconds 20 --http-seconds 10
    .venv/bin/python bench/sensors.py --mqtt-rate 12000  # MQTT paced: does the server keep up?

It builds the demo city once under bench/out/, copies it fresh for the run, starts a
Mosquitto broker on a free port and `twin serve CITY --mqtt URL` as a subprocess, then:

a) HTTP: 4 client threads post batches of 5,000 observations (JSON arrays) for
   `--http-seconds`; the rate is observations stored per second of wall time, read from
   the server's own counters (target >= 50,000/s);
b) MQTT: `--publishers` processes (2) publish one message per observation (QoS 1, every
   one acknowledged by the broker) for `--mqtt-seconds`, as fast as they can or at
   `--mqtt-rate` messages/s in all. They write raw MQTT (see `flood`), so they are not what
   is measured: one paho publisher tops out near 2,000 messages/s here, one of these near
   100,000. The rate is messages stored per second from the first publish until the last
   is stored; loss is what the broker acknowledged minus the rows of the run found in the
   store, so every message stored exactly once is zero (target >= 10,000 msg/s, zero loss);
c) latency: 200 readings that flip a sensor between normal and alarm, published over
   MQTT one at a time; each is timed from publish to the SSE `status` event for its pipe
   (target p95 <= 1 s);
d) MQTT backlog: `--backlog` readings queued on the broker while the server is stopped,
   timed from the server's restart (start-up included) until the last is stored.

The machine is shared with other work, so the figures are noisy; the script prints them
with the machine, and exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from conftest import Mosquitto, Server  # noqa: E402
from layers.mqtt import ObservationPublisher  # noqa: E402
from layers.sensors import format_time, now_ms  # noqa: E402
from report import cpu_model  # noqa: E402

OUT = REPO / "bench" / "out" / "sensors"
TOKEN = "bench-token"


def demo_city() -> Path:
    """The demo city, built once and copied fresh (without observations) for each run."""
    built = OUT / "demo" / "yantai"
    if not (built / "city.json").exists():
        from twin.demo import build_demo

        build_demo(OUT / "demo")
    run = OUT / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(built, run, ignore=shutil.ignore_patterns("cache", "*.live.sqlite*"))
    return run


def stored(server: Server) -> int:
    return httpx.get(f"{server.url}/sensors/stats", timeout=30).json()["counts"].get("stored", 0)


def bench_http(server: Server, ids: list[str], seconds: float, batch: int = 5000, threads: int = 4) -> float:
    """Observations stored per second by concurrent batch posts."""
    stop = time.monotonic() + seconds
    base = now_ms() - 10 * 86_400_000
    counter = iter(range(10**12))
    lock = threading.Lock()

    def client() -> None:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {TOKEN}",
                                                "Content-Type": "application/json"}) as http:
            while time.monotonic() < stop:
                with lock:
                    start = next(counter) * batch
                body = json.dumps([{"sensor_id": ids[k % len(ids)], "time": format_time(base + k), "value": 0.35}
                                   for k in range(start, start + batch)])
                http.post(f"{server.url}/sensors/observations", content=body).raise_for_status()

    before, t0 = stored(server), time.monotonic()
    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (stored(server) - before) / (time.monotonic() - t0)


def _mqtt_packet(kind: int, body: bytes) -> bytes:
    """An MQTT control packet: type and flags, the remaining length as a varint, the body."""
    head, n = bytearray([kind]), len(body)
    while True:
        n, digit = n >> 7, n & 0x7F
        head.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(head) + body


def _mqtt_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def flood(port: int, ids: list[str], base: int, first: int, step: int, seconds: float, rate: float,
          results, window: int = 10_000, limit: int = 0) -> None:
    """One publisher process: QoS 1 readings ``base + k`` for k = first, first + step, ... on raw MQTT 3.1.1.

    One paho publisher tops out near 2,000 QoS 1 messages/s here, so it measures itself. This
    one writes PUBLISH packets 200 at a time and counts the broker's 4-byte PUBACKs, with at
    most `window` unacknowledged: about 100,000 messages/s from one process with no
    subscriber. `rate` (messages/s, 0: as fast as it can) paces it; it stops after `seconds`
    or `limit` messages. Puts (sent, acknowledged by the broker, first send, last send, last
    PUBACK, last k) on `results`.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # clean session, no keepalive: nothing but PUBACKs comes back, so every 4 bytes are one
    sock.sendall(_mqtt_packet(0x10, _mqtt_string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", 0)
                              + _mqtt_string(f"twin-bench-flood-{os.getpid()}")))
    if sock.recv(4) != b"\x20\x02\x00\x00":
        raise ConnectionError("the broker refused the flood publisher")
    topics = [_mqtt_string(f"twin/sensors/{sid}/observations") for sid in ids]
    sent = acked = spare = 0
    k = first
    chunk = 200 if not rate else max(10, min(200, int(rate / 100)))
    t0 = time.monotonic()
    stop = t0 + seconds
    while (now := time.monotonic()) < stop and not (limit and sent >= limit):
        if rate and sent > (now - t0) * rate:
            time.sleep(min(sent / rate - (now - t0), 0.01))
            continue
        buf = bytearray()
        for _ in range(min(chunk, limit - sent) if limit else chunk):
            sent += 1
            body = (topics[k % len(topics)] + struct.pack("!H", sent % 65535 + 1)
                    + b'{"time": "%s", "value": 0.35}' % format_time(base + k).encode())
            buf += _mqtt_packet(0x32, body)
            k += step
        sock.setblocking(True)
        sock.sendall(buf)
        while True:
            blocking = sent - acked > window
            sock.setblocking(blocking)
            try:
                data = sock.recv(1 << 16)
            except BlockingIOError:
                break
            if not data:
                raise ConnectionError("the broker closed the flood publisher's connection")
            spare += len(data)
            acked, spare = acked + spare // 4, spare % 4
            if sent - acked <= window:
                break
    t1 = time.monotonic()
    sock.setblocking(True)
    while acked < sent:
        data = sock.recv(1 << 16)
        if not data:
            raise ConnectionError("the broker closed the flood publisher's connection")
        spare += len(data)
        acked, spare = acked + spare // 4, spare % 4
    t2 = time.monotonic()
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()
    results.put((sent, acked, t0, t1, t2, k - step))


@dataclass
class MqttRun:
    """What one MQTT measurement saw."""

    publishers: int
    sent: int  # acknowledged by the broker, every one
    publish_s: float  # from the first publish to the last PUBACK
    stored: int  # rows of the run in the store
    stored_s: float  # from the first publish to the last row stored
    lag_s: float  # from the last PUBACK to the last row stored
    duplicates: int  # redelivered and ignored by the store

    @property
    def publish_rate(self) -> float:
        """Messages/s the publishers had acknowledged by the broker."""
        return self.sent / self.publish_s

    @property
    def stored_rate(self) -> float:
        """Messages/s stored, from the first publish to the last row stored."""
        return self.stored / self.stored_s

    @property
    def lost(self) -> int:
        """Acknowledged by the broker and not in the store."""
        return self.sent - self.stored


def count_rows(city: Path, lo: int, hi: int) -> int:
    """Observations stored with a time in [lo, hi) (read from the store, not the counters)."""
    with sqlite3.connect(f"file:{city / 'city.live.sqlite'}?mode=ro", uri=True, timeout=60) as conn:
        return conn.execute("SELECT COUNT(*) FROM twin_observations WHERE time >= ? AND time < ?",
                            (lo, hi)).fetchone()[0]


def bench_mqtt(server: Server, broker: Mosquitto, city: Path, ids: list[str], seconds: float,
               publishers: int, rate: float, base_days: int = 20) -> MqttRun:
    """`publishers` processes publish for `seconds` (at `rate` in all, 0: flat out) while the server stores."""
    base = now_ms() - base_days * 86_400_000
    before = httpx.get(f"{server.url}/sensors/stats", timeout=30).json()["counts"]
    results: mp.Queue = mp.Queue()
    procs = [mp.Process(target=flood, args=(broker.port, ids, base, p, publishers, seconds, rate / publishers,
                                            results), daemon=True) for p in range(publishers)]
    for proc in procs:
        proc.start()
    runs = [results.get(timeout=seconds + 300) for _ in procs]
    for proc in procs:
        proc.join()
    sent = sum(r[1] for r in runs)
    t0, last_ack = min(r[2] for r in runs), max(r[4] for r in runs)
    deadline = time.monotonic() + 300
    while stored(server) - before.get("stored", 0) < sent and time.monotonic() < deadline:
        time.sleep(0.1)
    done = time.monotonic()
    time.sleep(1.0)  # a redelivery still on its way shows up as a duplicate by now
    after = httpx.get(f"{server.url}/sensors/stats", timeout=30).json()["counts"]
    last_k = max(r[5] for r in runs)
    return MqttRun(publishers, sent, last_ack - t0, count_rows(city, base, base + last_k + 1),
                   done - t0, max(0.0, done - last_ack), after.get("duplicates", 0) - before.get("duplicates", 0))


def bench_mqtt_backlog(city: Path, broker: Mosquitto, ids: list[str], count: int,
                       stored_before: int) -> tuple[float, int]:
    """Messages stored per second when the server drains a backlog the broker queued for it.

    The readings are queued while the server is stopped (its persistent session keeps them)
    and timed from its restart (start-up included) until the last is stored.
    """
    base = now_ms() - 30 * 86_400_000
    results: mp.Queue = mp.Queue()
    filler = mp.Process(target=flood, args=(broker.port, ids, base, 0, 1, 3600, 0, results),
                        kwargs={"limit": count}, daemon=True)
    filler.start()
    queued = results.get(timeout=600)[1]
    filler.join()
    t0 = time.monotonic()
    server = Server(city, env={"TWIN_API_TOKEN": TOKEN}, args=["--mqtt", broker.url])
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and stored(server) < stored_before + queued:
            time.sleep(0.1)
        return queued / (time.monotonic() - t0), stored(server) - stored_before
    finally:
        server.close()


def bench_latency(server: Server, broker: Mosquitto, samples: int = 200) -> list[float]:
    """Seconds from publishing a status-changing reading to its pipe's SSE event."""
    arrived: dict[str, float] = {}
    ready = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{server.url}/events", timeout=None) as response:
            ready.set()
            for line in response.iter_lines():
                if line.startswith("data:"):
                    event = json.loads(line[5:])
                    if event.get("layer") == "pipe" and event.get("uid") == "pipe.JS-0001":
                        arrived[f"{event['status']}-{len(arrived)}"] = time.monotonic()
                        if len(arrived) >= samples:
                            return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    ready.wait(30)
    time.sleep(0.5)
    publisher = ObservationPublisher(broker.url).start()
    latencies = []
    for k in range(samples):
        value = 0.05 if k % 2 == 0 else 0.36
        count = len(arrived)
        sent = time.monotonic()
        publisher.publish("S-0001", {"time": format_time(now_ms()), "value": value})
        while len(arrived) == count and time.monotonic() - sent < 10:
            time.sleep(0.002)
        if len(arrived) > count:
            latencies.append(max(arrived.values()) - sent)
    publisher.stop()
    return latencies


def main() -> int:
    """Run the four measurements and print them with the machine."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--http-seconds", type=float, default=20.0)
    parser.add_argument("--mqtt-seconds", type=float, default=60.0, help="how long the MQTT publishers publish")
    parser.add_argument("--mqtt-rate", type=float, default=0.0,
                        help="messages/s the MQTT publishers offer in all (0: as many as they can)")
    parser.add_argument("--publishers", type=int, default=2, help="MQTT publisher processes")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=100_000, help="readings queued for the drain measurement")
    args = parser.parse_args()
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}")
    city = demo_city()
    # a session left on the broker by an earlier run would hand its readings to this one
    shutil.rmtree(OUT / "mosquitto", ignore_errors=True)
    broker = Mosquitto(OUT / "mosquitto")
    server = Server(city, env={"TWIN_API_TOKEN": TOKEN}, args=["--mqtt", broker.url])
    try:
        from twin.workspace import City

        ids = sorted(City.open(city).features("sensor")["sensor_id"])
        time.sleep(3)  # let the server preload its layers
        http_rate = bench_http(server, ids, args.http_seconds)
        print(f"HTTP batches of 5,000 from 4 threads, {args.http_seconds:.0f} s: {http_rate:,.0f} observations/s "
              f"stored (target >= 50,000)")
        mqtt = bench_mqtt(server, broker, city, ids, args.mqtt_seconds, args.publishers, args.mqtt_rate)
        offered = f"at {args.mqtt_rate:,.0f}/s" if args.mqtt_rate else "as fast as they can"
        print(f"MQTT, one message per observation, QoS 1, {mqtt.publishers} publishers {offered} for "
              f"{args.mqtt_seconds:.0f} s: {mqtt.sent:,} published ({mqtt.publish_rate:,.0f}/s, each acknowledged "
              f"by the broker); {mqtt.stored_rate:,.0f} messages/s stored over {mqtt.stored_s:.1f} s from the first "
              f"publish to the last stored ({mqtt.lag_s:.1f} s after the last publish), {mqtt.lost:,} lost, "
              f"{mqtt.duplicates:,} redelivered (target >= 10,000/s, 0 lost)")
        latencies = bench_latency(server, broker, args.latency_samples)
        p50 = statistics.median(latencies) if latencies else float("nan")
        p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) >= 20 else float("nan")
        print(f"publish -> SSE status event over MQTT, {len(latencies)} of {args.latency_samples} samples: "
              f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms (target p95 <= 1000 ms)")
        stored_before = stored(server)  # the counts live in the store: the restarted server goes on from them
        server.close()
        drain_rate, drained = bench_mqtt_backlog(city, broker, ids, args.backlog, stored_before)
        print(f"MQTT backlog of {args.backlog:,} queued while the server was stopped: {drain_rate:,.0f} messages/s "
              f"stored from its restart (start-up included), {drained:,} stored")
        with sqlite3.connect(city / "city.live.sqlite") as conn:
            print(f"observations stored in the run: {conn.execute('SELECT COUNT(*) FROM twin_observations').fetchone()[0]:,}")
    finally:
        server.close()
        broker.stop()
    missed = http_rate < 50_000 or mqtt.stored_rate < 10_000 or mqtt.lost != 0 or not (p95 <= 1.0)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
