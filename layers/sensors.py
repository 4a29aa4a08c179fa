"""Sensor observations from the wire and from files: JSON bodies, MQTT payloads, SensorThings
Observations and CSV history, checked one by one.

The rules every ingest path shares (each rejection has a reason code, counted by the model):

- ``invalid_json``: the payload is not JSON at all; nothing in it can be read.
- ``not_an_object``: an element of the batch is not a JSON object.
- ``missing_sensor``: no ``sensor_id`` (and none given by the topic or the URL).
- ``bad_value``: ``value`` (SensorThings: ``result``) missing, not a number, NaN or infinite.
  JSON ``true``/``false`` are taken as 1 and 0 (a leak switch).
- ``bad_time``: ``time`` (SensorThings: ``phenomenonTime``) is not an ISO 8601 string. A
  reading without a time is stamped with the time it arrived; a time without a zone is UTC.
- ``future_time``: more than `max_future_ms` ahead of the receiving clock.

Times are kept as integer milliseconds since 1970 (UTC): two readings of one sensor within
the same millisecond are the same reading. Unknown sensors, duplicates and late readings
are the model's business (`twin.sensors`), since only it knows the city.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from layers.errors import BadObservation, SourceNotFound

__all__ = ["ObservationRow", "REASONS", "MAX_FUTURE_MS", "loads", "parse_time", "parse_observation", "parse_batch",
           "read_csv", "now_ms", "format_time"]

REASONS = ("invalid_json", "not_an_object", "missing_sensor", "unknown_sensor", "bad_value", "bad_time",
           "future_time")
MAX_FUTURE_MS = 5 * 60 * 1000  # clocks of field devices drift; beyond this a time is wrong
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class ObservationRow(NamedTuple):
    """One observation as stored: time in integer milliseconds since 1970 (UTC)."""

    sensor_id: str
    time_ms: int
    value: float
    quality: str | None = None


def now_ms() -> int:
    """The current time in milliseconds since 1970 (UTC)."""
    return _ms(datetime.now(timezone.utc))


def _ms(moment: datetime) -> int:
    delta = moment - _EPOCH  # exact, unlike a float timestamp
    return delta.days * 86_400_000 + delta.seconds * 1000 + delta.microseconds // 1000


def format_time(ms: int) -> str:
    """Milliseconds since 1970 as an ISO 8601 UTC time (``...T03:50:00.123Z``)."""
    return (_EPOCH + timedelta(milliseconds=ms)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def loads(raw: bytes | bytearray | str) -> Any:
    """JSON text parsed by orjson, or by the standard library where orjson refuses it.

    orjson is several times faster (it matters at 10,000 MQTT messages/s), but stricter: the
    standard library also reads NaN and Infinity (what Python's own json.dumps writes), which
    must reach the value check as ``bad_value`` rather than fail as ``invalid_json``.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def parse_time(text: Any, source: str | None = None, index: int | None = None) -> int:
    """An ISO 8601 time (zone-less means UTC) as milliseconds since 1970; raises BadObservation."""
    if not isinstance(text, str):
        raise BadObservation(source, "bad_time", f"time {text!r} is not an ISO 8601 string", index)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadObservation(source, "bad_time", f"time {text!r} is not an ISO 8601 date and time", index) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return _ms(moment)


def _value(raw: Any, source: str | None, index: int | None) -> float:
    if isinstance(raw, bool):
        return 1.0 if raw else 0.0
    if isinstance(raw, (int, float)):
        value = float(raw)
        if math.isfinite(value):
            return value
        raise BadObservation(source, "bad_value", f"value {raw!r} is not a finite number", index)
    raise BadObservation(source, "bad_value", f"value {raw!r} is not a number", index)


def parse_observation(item: Any, *, sensor_id: str | None = None, received_ms: int | None = None,
                      max_future_ms: int = MAX_FUTURE_MS, source: str | None = None,
                      index: int | None = None) -> ObservationRow:
    """One observation object (our form or SensorThings') as a row; raises BadObservation.

    `sensor_id` (from an MQTT topic or a Datastream URL) is used when the object names none.
    """
    if not isinstance(item, dict):
        raise BadObservation(source, "not_an_object", f"expected a JSON object, got {type(item).__name__}", index)
    sid = item.get("sensor_id", sensor_id)
    if sid is None or sid == "":
        raise BadObservation(source, "missing_sensor", "no sensor_id", index)
    if not isinstance(sid, str):
        sid = str(sid)
    raw = item["value"] if "value" in item else item.get("result")
    value = _value(raw, source, index)
    received = received_ms if received_ms is not None else now_ms()
    stamp = item["time"] if "time" in item else item.get("phenomenonTime")
    time = received if stamp is None else parse_time(stamp, source, index)
    if time > received + max_future_ms:
        raise BadObservation(source, "future_time", f"time {stamp} is more than {max_future_ms // 1000} s "
                                                    f"ahead of the server clock", index)
    quality = item["quality"] if "quality" in item else item.get("resultQuality")
    return ObservationRow(sid, time, value, None if quality is None else str(quality))


def parse_batch(body: bytes | str | Any, *, sensor_id: str | None = None, max_future_ms: int = MAX_FUTURE_MS,
                source: str | None = None, received_ms: int | None = None
                ) -> tuple[list[ObservationRow], list[BadObservation]]:
    """A JSON body holding one observation or an array of them: the good rows and the rejections.

    A body that is not JSON at all is one rejection (``invalid_json``). `received_ms` is when
    it arrived (default: now), the time of readings without one.
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return [], [BadObservation(source, "invalid_json", f"not JSON: {exc}")]
    items = body if isinstance(body, list) else [body]
    received = received_ms if received_ms is not None else now_ms()
    rows: list[ObservationRow] = []
    rejected: list[BadObservation] = []
    for index, item in enumerate(items):
        try:
            rows.append(parse_observation(item, sensor_id=sensor_id, received_ms=received,
                                          max_future_ms=max_future_ms, source=source, index=index))
        except BadObservation as exc:
            rejected.append(exc)
    return rows, rejected


def read_csv(path: str | Path, batch_size: int = 50_000, max_future_ms: int = MAX_FUTURE_MS
             ) -> Iterator[tuple[list[ObservationRow], list[BadObservation]]]:
    """A CSV file of history (columns sensor_id, time, value and optionally quality) in batches."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFound(path, "file does not exist")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = {"sensor_id", "time", "value"} - set(reader.fieldnames or [])
        if missing:
            raise BadObservation(path, "missing_columns", f"needs columns sensor_id, time, value; "
                                                          f"missing {', '.join(sorted(missing))}")
        rows: list[ObservationRow] = []
        rejected: list[BadObservation] = []
        received = now_ms()
        for line, record in enumerate(reader, start=2):
            try:
                raw = (record.get("value") or "").strip()
                try:
                    number: Any = float(raw)
                except ValueError:
                    number = raw
                item = {"sensor_id": (record.get("sensor_id") or "").strip() or None, "time": record.get("time"),
                        "value": number}
                if record.get("quality"):
                    item["quality"] = record["quality"]
                rows.append(parse_observation(item, received_ms=received, max_future_ms=max_future_ms,
                                              source=str(path), index=line))
            except BadObservation as exc:
                rejected.append(exc)
            if len(rows) + len(rejected) >= batch_size:
                yield rows, rejected
                rows, rejected = [], []
        if rows or rejected:
            yield rows, rejected
