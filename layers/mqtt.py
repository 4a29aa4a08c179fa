"""Sensor observations over MQTT: a subscriber that hands over parsed batches, and a publisher.

Devices publish to ``twin/sensors/{sensor_id}/observations`` a JSON object ``{"time": ...,
"value": ..., "quality": ...}`` (or an array of them); the topic names the sensor. The
subscriber speaks MQTT 5 with QoS 1 and a persistent session, and acknowledges a message
only after the batch holding it has been handed over (stored), so neither a broker that goes
away nor a restart of ours loses a reading the broker accepted: paho reconnects with backoff
and the broker redelivers what we had not acknowledged.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from layers.errors import BadObservation
from layers.sensors import MAX_FUTURE_MS, ObservationRow, parse_batch

__all__ = ["TOPIC", "topic_for", "parse_url", "ObservationSubscriber", "ObservationPublisher"]

log = logging.getLogger("twin.mqtt")

TOPIC = "twin/sensors/+/observations"
SESSION_EXPIRY_S = 3600  # how long the broker keeps our unacknowledged readings while we are away

Batch = Callable[[list[ObservationRow], list[BadObservation]], object]


def topic_for(sensor_id: str) -> str:
    """The topic a sensor publishes its observations to."""
    return f"twin/sensors/{sensor_id}/observations"


def parse_url(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://host[:port]`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
        raise ValueError(f"MQTT URL {url!r} is not of the form mqtt://host[:port]")
    return parts.hostname, parts.port or 1883


class ObservationSubscriber:
    """Subscribes to every sensor's topic and calls `on_batch(rows, rejected)` from one thread.

    Messages are gathered for up to `batch_s` seconds or `batch_size` messages; with `shared`,
    several subscribers (server workers) split the stream through a shared subscription.
    """

    def __init__(self, url: str, on_batch: Batch, *, client_id: str, shared: bool = False,
                 batch_size: int = 5000, batch_s: float = 0.05, max_future_ms: int = MAX_FUTURE_MS) -> None:
        self.host, self.port = parse_url(url)
        self.on_batch = on_batch
        self.topic = f"$share/twin/{TOPIC}" if shared else TOPIC
        self.batch_size = batch_size
        self.batch_s = batch_s
        self.max_future_ms = max_future_ms
        self.connected = threading.Event()
        self.received = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=paho.MQTTv5, manual_ack=True)
        self._client.reconnect_delay_set(min_delay=0.1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._worker = threading.Thread(target=self._drain, daemon=True, name="twin-mqtt-batches")

    def start(self) -> "ObservationSubscriber":
        """Connect (retrying with backoff until the broker answers) and start handing over batches."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = 65535  # without it the broker sends 20 at a time and waits for our acks
        self._client.connect_async(self.host, self.port, keepalive=15, clean_start=False, properties=props)
        self._client.loop_start()
        self._worker.start()
        return self

    def stop(self) -> None:
        """Hand over what has arrived, then disconnect."""
        self._stop.set()
        self._worker.join(timeout=10)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("MQTT broker %s:%s refused us: %s", self.host, self.port, reason_code)
            return
        client.subscribe(self.topic, qos=1)
        self.connected.set()
        log.info("subscribed to %s on %s:%s", self.topic, self.host, self.port)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("lost the MQTT broker %s:%s (%s); reconnecting", self.host, self.port, reason_code)

    def _on_message(self, client, userdata, message) -> None:
        self._queue.put((message.topic, message.payload, message.mid, message.qos))

    def _drain(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            rows: list[ObservationRow] = []
            rejected: list[BadObservation] = []
            for topic, payload, _, _ in batch:
                parts = topic.split("/")
                sensor_id = parts[2] if len(parts) == 4 else None
                got, bad = parse_batch(_with_sensor(payload, sensor_id), sensor_id=sensor_id,
                                       max_future_ms=self.max_future_ms, source=f"mqtt {topic}")
                rows.extend(got)
                rejected.extend(bad)
            while True:
                try:
                    self.on_batch(rows, rejected)
                    break
                except Exception:  # not acknowledged: kept and tried again, never dropped
                    log.exception("storing %d MQTT observations failed; retrying", len(rows))
                    time.sleep(1.0)
            self.received += len(batch)
            for _, _, mid, qos in batch:
                if qos:
                    self._client.ack(mid, qos)

    def _take(self) -> list:
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        deadline = time.monotonic() + self.batch_s
        while len(batch) < self.batch_size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch


def _with_sensor(payload: bytes, sensor_id: str | None):
    """The payload parsed, with the topic's sensor id on every object (the topic names the sensor)."""
    try:
        body = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return payload  # parse_batch reports it as invalid JSON
    for item in body if isinstance(body, list) else [body]:
        if isinstance(item, dict) and sensor_id is not None:
            item["sensor_id"] = sensor_id
    return body


class ObservationPublisher:
    """Publishes observations with QoS 1; while the broker is away paho queues them and resends.

    It keeps a named session on the broker: a client that comes back to no session must drop
    the messages the broker had not yet acknowledged (MQTT 5, 3.2.2.1.1), so an anonymous
    publisher loses what was in flight when the broker restarts.
    """

    def __init__(self, url: str, client_id: str = "", max_inflight: int = 1000) -> None:
        self.host, self.port = parse_url(url)
        client_id = client_id or f"twin-publisher-{uuid.uuid4().hex[:12]}"
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=5)
        self.connected = threading.Event()
        self.client.on_connect = lambda *a: self.connected.set()
        self.client.on_disconnect = lambda *a: self.connected.clear()

    def start(self, timeout: float = 30) -> "ObservationPublisher":
        """Connect and wait for the broker (up to `timeout` seconds)."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect_async(self.host, self.port, keepalive=15, properties=props)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            raise ConnectionError(f"no MQTT broker answered at {self.host}:{self.port}")
        return self

    def publish(self, sensor_id: str, observation: dict | list | bytes | str) -> paho.MQTTMessageInfo:
        """Send one observation (or a list of them, or raw bytes) to the sensor's topic."""
        payload = observation if isinstance(observation, (bytes, str)) else json.dumps(observation)
        return self.client.publish(topic_for(sensor_id), payload, qos=1)

    def stop(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()
