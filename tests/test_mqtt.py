"""The MQTT subscriber against a real Mosquitto: what it acknowledges, and when."""

from __future__ import annotations

import threading
import time

from conftest import Mosquitto
from layers.mqtt import ObservationPublisher, ObservationSubscriber
from layers.sensors import format_time, now_ms


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def publish(broker: Mosquitto, count: int) -> set[tuple[str, int]]:
    """`count` readings of sensor S-1, each acknowledged by the broker; their keys."""
    base = now_ms() - 3_600_000
    publisher = ObservationPublisher(broker.url).start()
    infos = [publisher.publish("S-1", {"time": format_time(base + k), "value": 0.3}) for k in range(count)]
    for info in infos:
        info.wait_for_publish(timeout=30)
    publisher.stop()
    return {("S-1", base + k) for k in range(count)}


def test_a_reading_is_acknowledged_only_once_its_batch_is_stored(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto")
    try:
        attempts = threading.Event()

        def store_is_down(rows, rejected):
            attempts.set()
            raise OSError("the store is down")

        failing = ObservationSubscriber(broker.url, store_is_down, client_id="twin-test").start()
        wait_for(failing.connected.is_set)
        sent = publish(broker, 50)
        wait_for(attempts.is_set)
        time.sleep(0.5)  # every message has reached the subscriber by now
        failing.stop()

        stored: list = []
        working = ObservationSubscriber(broker.url, lambda rows, rejected: stored.extend(rows),
                                        client_id="twin-test").start()
        wait_for(lambda: len(stored) >= len(sent))
        working.stop()
        assert {(r.sensor_id, r.time_ms) for r in stored} == sent
    finally:
        broker.stop()


def test_a_stored_reading_is_acknowledged_and_not_delivered_again(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto")
    try:
        stored: list = []
        first = ObservationSubscriber(broker.url, lambda rows, rejected: stored.extend(rows),
                                      client_id="twin-test").start()
        wait_for(first.connected.is_set)
        sent = publish(broker, 200)
        wait_for(lambda: len(stored) >= len(sent))
        first.stop()
        assert {(r.sensor_id, r.time_ms) for r in stored} == sent

        again: list = []
        second = ObservationSubscriber(broker.url, lambda rows, rejected: again.extend(rows),
                                       client_id="twin-test").start()
        wait_for(second.connected.is_set)
        publish(broker, 1)  # a new reading: once it is through, anything redelivered would be too
        wait_for(lambda: len(again) >= 1)
        time.sleep(0.5)
        second.stop()
        assert len(again) == 1
    finally:
        broker.stop()


def test_the_subscriber_tells_invalid_messages_from_valid_ones_in_one_batch(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto")
    try:
        got: list = []
        bad: list = []

        def store(rows, rejected):
            got.extend(rows)
            bad.extend(rejected)

        subscriber = ObservationSubscriber(broker.url, store, client_id="twin-test").start()
        wait_for(subscriber.connected.is_set)
        publisher = ObservationPublisher(broker.url).start()
        t = format_time(now_ms() - 60_000)
        for payload in (b"{not json", b'{"time": "%s", "value": NaN}' % t.encode(), b"[1]",
                        b'[{"time": "%s", "value": 1}, {"time": "%s", "value": true}]'
                        % (t.encode(), format_time(now_ms() - 30_000).encode()),
                        b'{"time": "%s", "value": 0.3, "sensor_id": "S-OTHER"}' % t.encode()):
            publisher.publish("S-2", payload).wait_for_publish(timeout=30)
        publisher.stop()
        wait_for(lambda: len(got) + len(bad) >= 6)
        subscriber.stop()
        assert sorted(e.reason for e in bad) == ["bad_value", "invalid_json", "not_an_object"]
        # the topic names the sensor, whatever the payload says
        assert [(r.sensor_id, r.value) for r in got] == [("S-2", 1.0), ("S-2", 1.0), ("S-2", 0.3)]
    finally:
        broker.stop()


def test_a_subscriber_whose_store_lags_leaves_the_backlog_on_the_broker(tmp_path):
    broker = Mosquitto(tmp_path / "mosquitto")
    try:
        stored: list = []
        release = threading.Event()

        def slow_store(rows, rejected):
            release.wait(60)
            stored.extend(rows)

        subscriber = ObservationSubscriber(broker.url, slow_store, client_id="twin-test", max_pending=100).start()
        wait_for(subscriber.connected.is_set)
        sent = publish(broker, 10_000)
        time.sleep(1.0)
        # read but not stored: what came in before it stopped reading, within one recv of the bound
        assert subscriber._pending < 5000
        release.set()
        wait_for(lambda: len(stored) >= len(sent))
        subscriber.stop()
        assert len(stored) == len(sent) and {(r.sensor_id, r.time_ms) for r in stored} == sent
    finally:
        broker.stop()
