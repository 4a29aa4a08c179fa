"""Sensor observations over MQTT: a subscriber that hands over parsed batches, and a publisher.

Devices publish to ``twin/sensors/{sensor_id}/observations`` a JSON object ``{"time": ...,
"value": ..., "quality": ...}`` (or an array of them); the topic names the sensor. The
subscriber speaks MQTT 5 with QoS 1 and a persistent session, and acknowledges a message
only after the batch holding it has been handed over (stored), so neither a broker that goes
away nor a restart of ours loses a reading the broker accepted: the subscriber reconnects
with backoff and the broker redelivers what we had not acknowledged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from layers.errors import BadObservation
from layers.sensors import MAX_FUTURE_MS, ObservationRow, loads, now_ms, parse_batch, parse_observation

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


class MQTTProtocolError(ConnectionError):
    """The broker sent something this subscriber does not speak; the connection is dropped."""


class ObservationSubscriber:
    """Subscribes to every sensor's topic and calls `on_batch(rows, rejected)` from one thread.

    A batch is what has arrived once the previous one is stored, waiting up to `batch_s` after
    its first message and holding at most `batch_size`; so batches grow with the rate and a
    lone reading still goes through within `batch_s`. With `shared`, several subscribers
    (server workers) split the stream through a shared subscription. Once `max_pending`
    messages are read but not yet stored it stops reading, and the broker keeps the rest:
    Mosquitto 2.0.11 sends past our receive maximum while we acknowledge, so a backlog would
    otherwise all come into our memory.

    It speaks the part of MQTT 5 a QoS 1 subscriber needs on a plain socket rather than through
    paho: paho reads a packet per select() in three recv() calls and sends each PUBACK through
    its queue and a wake-up socket, more than half of the server's time when it drained 11,000
    messages/s (py-spy). Here one recv() takes in every packet that has arrived, and one send
    acknowledges a batch.
    """

    def __init__(self, url: str, on_batch: Batch, *, client_id: str, shared: bool = False,
                 batch_size: int = 20_000, batch_s: float = 0.05, max_pending: int = 100_000,
                 max_future_ms: int = MAX_FUTURE_MS, keepalive: int = 15) -> None:
        self.host, self.port = parse_url(url)
        self.on_batch = on_batch
        self.client_id = client_id
        self.topic = f"$share/twin/{TOPIC}" if shared else TOPIC
        self.batch_size = batch_size
        self.batch_s = batch_s
        self.max_future_ms = max_future_ms
        self.keepalive = keepalive
        self.max_pending = max_pending
        self.connected = threading.Event()
        self.received = 0
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._connection = 0  # acknowledgements go to the connection that delivered the message
        self._last_sent = 0.0
        self._pending = 0  # messages read and not yet stored
        self._room = threading.Condition()
        self._reader = threading.Thread(target=self._connect_forever, daemon=True, name="twin-mqtt-reader")
        self._worker = threading.Thread(target=self._drain, daemon=True, name="twin-mqtt-batches")

    def start(self) -> "ObservationSubscriber":
        """Connect (retrying with backoff until the broker answers) and start handing over batches."""
        self._reader.start()
        self._worker.start()
        return self

    def stop(self) -> None:
        """Hand over and acknowledge what has arrived, then disconnect (the session stays on the broker)."""
        self._stop.set()  # the reader takes in nothing more: the broker keeps it for our next start
        self._worker.join(timeout=10)
        with self._send_lock:
            sock, self._sock = self._sock, None
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.sendall(b"\xe0\x00")  # DISCONNECT, normal
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(timeout=5)

    # the connection ---------------------------------------------------------------------

    def _connect_forever(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), timeout=10)
            except OSError as exc:
                log.warning("MQTT broker %s:%s does not answer (%s); retrying in %.1f s",
                            self.host, self.port, exc, delay)
            else:
                try:
                    self._serve(sock)
                except Exception as exc:
                    if self.connected.is_set():  # it worked until now: try again soon
                        delay = 0.1
                    if self._stop.is_set():
                        pass
                    elif isinstance(exc, (OSError, MQTTProtocolError)):
                        log.warning("lost the MQTT broker %s:%s (%s); reconnecting", self.host, self.port, exc)
                    else:
                        log.exception("reading from the MQTT broker %s:%s failed; reconnecting", self.host, self.port)
                finally:
                    self.connected.clear()
                    with self._send_lock:
                        if self._sock is sock:
                            self._sock = None
                    sock.close()
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _send(self, sock: socket.socket, data: bytes) -> None:
        with self._send_lock:
            sock.sendall(data)
            self._last_sent = time.monotonic()

    def _serve(self, sock: socket.socket) -> None:
        """One connection: CONNECT, then read until it breaks, handing PUBLISH packets to the queue."""
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        keepalive = self.keepalive
        self._send(sock, _connect_packet(self.client_id, keepalive))
        sock.settimeout(keepalive / 2)
        buf = bytearray()
        last_received = last_ping = time.monotonic()
        connection: int | None = None
        while True:  # until the connection breaks, or stop() ends it once the last acks are out
            if self._stop.is_set() and self._sock is not sock:
                return
            if self._pending >= self.max_pending:
                with self._room:
                    self._room.wait_for(lambda: self._pending < self.max_pending, timeout=1.0)
                last_received = time.monotonic()  # the broker has had nothing to answer meanwhile
                if time.monotonic() - self._last_sent >= keepalive / 2:  # a store that fails sends no acks
                    self._send(sock, b"\xc0\x00")
                continue
            try:
                data = sock.recv(1 << 18)
            except TimeoutError:
                data = None
            now = time.monotonic()
            if data is not None:
                if not data:
                    raise ConnectionError("the broker closed the connection")
                last_received = now
                buf += data
                try:
                    messages, used, control = _split_packets(buf)
                except (IndexError, ValueError) as exc:
                    raise MQTTProtocolError(f"a malformed packet from the broker ({exc})") from None
                del buf[:used]
                for kind, body in control:
                    if kind == CONNACK:
                        keepalive = self._connected(sock, body, keepalive)
                        connection = self._connection
                    elif kind == DISCONNECT:
                        raise ConnectionError(f"the broker disconnected us ({_reason(body)})")
                    elif kind == SUBACK:
                        if body[2:] and body[-1] >= 0x80:
                            raise MQTTProtocolError(f"the broker refused our subscription to {self.topic} "
                                                    f"(reason {body[-1]:#04x})")
                        log.info("subscribed to %s on %s:%s", self.topic, self.host, self.port)
                if messages and not self._stop.is_set():
                    if connection is None:
                        raise MQTTProtocolError("PUBLISH before CONNACK")
                    with self._room:
                        self._pending += len(messages)
                    self._queue.put((connection, messages))
            elif now - last_received > 1.5 * keepalive:
                raise TimeoutError(f"nothing from the broker for {now - last_received:.0f} s")
            # PINGREQ when we have sent nothing (the broker's keepalive), and when it has sent
            # nothing (ours: our acks alone would never tell us that it went away)
            if connection is not None and (now - self._last_sent >= keepalive / 2 or (
                    now - last_received >= keepalive / 2 and now - last_ping >= keepalive / 2)):
                self._send(sock, b"\xc0\x00")
                last_ping = now

    def _connected(self, sock: socket.socket, body: bytes, keepalive: int) -> int:
        """Take the CONNACK: subscribe, and follow the broker's keepalive if it sets one."""
        if len(body) < 2 or body[1] >= 0x80:
            code = body[1] if len(body) > 1 else None
            raise MQTTProtocolError(f"the broker refused us (reason {code:#04x})" if code is not None
                                    else "empty CONNACK")
        props = _properties(body, 2)
        keepalive = props.get(SERVER_KEEP_ALIVE, keepalive) or keepalive
        sock.settimeout(keepalive / 2)
        with self._send_lock:
            self._connection += 1
            self._sock = sock
        self._send(sock, _subscribe_packet(self.topic))
        self.connected.set()
        return keepalive

    def _acknowledge(self, connection: int, mids: list[int]) -> None:
        """PUBACK a batch in one send, on the connection that delivered it.

        On a later connection the broker has sent the unacknowledged messages again under
        the same packet ids, and may since have reused an id we would acknowledge: those are
        left to their redelivered copies (stored again as duplicates, which the store ignores).
        """
        if not mids:
            return
        with self._send_lock:
            if connection != self._connection or self._sock is None:
                return
            try:
                self._sock.sendall(struct.pack(f"!{len(mids)}I", *[0x40020000 | mid for mid in mids]))
                self._last_sent = time.monotonic()
            except OSError:  # perhaps half sent: end the connection, the broker redelivers the rest
                with contextlib.suppress(OSError):
                    self._sock.shutdown(socket.SHUT_RDWR)

    # the batches ------------------------------------------------------------------------

    def _drain(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._stop.is_set():
                    return
                continue
            received = now_ms()
            rows: list[ObservationRow] = []
            rejected: list[BadObservation] = []
            acks: dict[int, list[int]] = {}
            count = 0
            for connection, messages in batch:
                count += len(messages)
                mids = acks.setdefault(connection, [])
                for topic, payload, mid in messages:
                    parts = topic.split("/")
                    sensor_id = parts[2] if len(parts) == 4 else None
                    body = _with_sensor(payload, sensor_id)
                    if isinstance(body, dict):  # the usual message, without parse_batch's lists
                        try:
                            rows.append(parse_observation(body, sensor_id=sensor_id, received_ms=received,
                                                          max_future_ms=self.max_future_ms, source=f"mqtt {topic}",
                                                          index=0))
                        except BadObservation as exc:
                            rejected.append(exc)
                    else:
                        got, bad = parse_batch(body, sensor_id=sensor_id, max_future_ms=self.max_future_ms,
                                               source=f"mqtt {topic}", received_ms=received)
                        rows.extend(got)
                        rejected.extend(bad)
                    if mid:
                        mids.append(mid)
            while True:
                try:
                    self.on_batch(rows, rejected)
                    break
                except Exception:  # not acknowledged: kept and tried again, never dropped
                    log.exception("storing %d MQTT observations failed; retrying", len(rows))
                    if self._stop.wait(1.0):
                        return  # unacknowledged, so the broker gives them to us again next time
            self.received += count
            for connection, mids in acks.items():
                self._acknowledge(connection, mids)
            with self._room:
                self._pending -= count
                self._room.notify()

    def _take(self) -> list:
        """What has arrived, as (connection, messages) items: at least one, and no more once `batch_size`
        messages are in."""
        try:
            first = self._queue.get(timeout=0.2)
        except queue.Empty:
            return []
        batch = [first]
        size = len(first[1])
        deadline = time.monotonic() + self.batch_s
        while size < self.batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            batch.append(item)
            size += len(item[1])
        return batch


# MQTT 5 packet types (the high nibble of the first byte) and the properties we read
CONNACK, PUBLISH, SUBACK, PINGRESP, DISCONNECT = 2, 3, 9, 13, 14
SERVER_KEEP_ALIVE, REASON_STRING = 0x13, 0x1F
_PROPERTY_SIZE = {**dict.fromkeys((0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A), 1),
                  **dict.fromkeys((0x13, 0x21, 0x22, 0x23), 2), **dict.fromkeys((0x02, 0x11, 0x18, 0x27), 4)}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        value, digit = value >> 7, value & 0x7F
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _read_varint(buf, pos: int) -> tuple[int, int]:
    """A variable byte integer at `pos` and the position after it; (-1, pos) when incomplete."""
    value = shift = 0
    for i in range(pos, min(pos + 4, len(buf))):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    if len(buf) - pos >= 4:
        raise MQTTProtocolError("a remaining length longer than 4 bytes")
    return -1, pos


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _connect_packet(client_id: str, keepalive: int) -> bytes:
    """CONNECT, MQTT 5, clean start off: the broker keeps our session and what it queued for us."""
    props = (b"\x11" + struct.pack("!I", SESSION_EXPIRY_S)
             # without it the broker sends 20 at a time and waits for our acks
             + b"\x21" + struct.pack("!H", 65535))
    body = (_string("MQTT") + bytes([5, 0x00]) + struct.pack("!H", keepalive) + _varint(len(props)) + props
            + _string(client_id))
    return b"\x10" + _varint(len(body)) + body


def _subscribe_packet(topic: str) -> bytes:
    body = struct.pack("!H", 1) + b"\x00" + _string(topic) + b"\x01"  # packet id 1, no properties, QoS 1
    return b"\x82" + _varint(len(body)) + body


def _split_packets(buf: bytearray) -> tuple[list[tuple[str, bytes, int]], int, list[tuple[int, bytes]]]:
    """The complete packets at the start of `buf`: PUBLISH as (topic, payload, packet id or 0),
    the bytes they take, and the other packets as (type, body)."""
    messages: list[tuple[str, bytes, int]] = []
    control: list[tuple[int, bytes]] = []
    pos, end = 0, len(buf)
    while pos + 2 <= end:
        first = buf[pos]
        if buf[pos + 1] < 0x80:  # the common case: a remaining length under 128
            length, start = buf[pos + 1], pos + 2
        else:
            length, start = _read_varint(buf, pos + 1)
            if length < 0:
                break
        stop = start + length
        if stop > end:
            break
        kind = first >> 4
        if kind == PUBLISH:
            qos = (first >> 1) & 3
            at = start + 2 + ((buf[start] << 8) | buf[start + 1])
            topic = bytes(buf[start + 2:at]).decode("utf-8", "replace")
            mid = 0
            if qos:
                mid = (buf[at] << 8) | buf[at + 1]
                at += 2
            if buf[at] < 0x80:
                at += 1 + buf[at]
            else:
                props, at = _read_varint(buf, at)
                at += props
            messages.append((topic, bytes(buf[at:stop]), mid))
        elif kind != PINGRESP:
            control.append((kind, bytes(buf[start:stop])))
        pos = stop
    return messages, pos, control


def _properties(body: bytes, pos: int) -> dict[int, object]:
    """The properties at `pos` of a packet body (CONNACK, DISCONNECT), by identifier."""
    if pos >= len(body):
        return {}
    length, pos = _read_varint(body, pos)
    end, out = pos + length, {}
    while pos < end:
        ident = body[pos]
        pos += 1
        if ident in _PROPERTY_SIZE:
            size = _PROPERTY_SIZE[ident]
            out[ident] = int.from_bytes(body[pos:pos + size], "big")
            pos += size
        elif ident == 0x0B:
            out[ident], pos = _read_varint(body, pos)
        elif ident == 0x26:  # user property: a pair of strings
            for _ in range(2):
                pos += 2 + int.from_bytes(body[pos:pos + 2], "big")
        else:  # strings and binary data
            size = int.from_bytes(body[pos:pos + 2], "big")
            out[ident] = body[pos + 2:pos + 2 + size]
            pos += 2 + size
    return out


def _reason(body: bytes) -> str:
    """The reason code (and string) of a DISCONNECT from the broker."""
    if not body:
        return "reason 0x00"
    text = _properties(body, 1).get(REASON_STRING)
    return f"reason {body[0]:#04x}" + (f": {text.decode(errors='replace')}" if isinstance(text, bytes) else "")


def _with_sensor(payload: bytes, sensor_id: str | None):
    """The payload parsed, with the topic's sensor id on every object (the topic names the sensor)."""
    try:
        body = loads(payload)
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
