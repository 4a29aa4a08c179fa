"""Status events of the city model, fanned out to live subscribers (the web page's SSE stream).

An event is a small JSON-able dict. The shape every producer and consumer agrees on::

    {"id": 17, "type": "status", "time": "2026-11-22T03:50:00Z",
     "layer": "pipe", "uid": "pipe.JS-0042", "status": "alarm", "previous": "normal",
     "sensor": "sensor.S-0007", "value": 0.12}

`uid` is the feature's uid (its feature id, as in the features API and the tiles); `layer`
names its layer; `status` is one of STATUSES. Producers call `EventHub.publish` from any thread; each subscriber (an asyncio
consumer such as an SSE response) gets every event published after it subscribed, in order.
A subscriber that falls `backlog` events behind loses the oldest and is told so by a
`{"type": "overflow"}` event, so a stalled browser tab never holds the server's memory.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime, timezone

__all__ = ["STATUSES", "EventHub", "status_event"]

STATUSES = ("normal", "warning", "alarm", "no_data")


def status_event(layer: str, uid: str, status: str, previous: str | None = None, **extra) -> dict:
    """A status-change event for feature `<layer>.<uid>`."""
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {', '.join(STATUSES)}")
    return {"type": "status", "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "layer": layer, "uid": uid, "status": status, "previous": previous, **extra}


class _Subscriber:
    def __init__(self, loop: asyncio.AbstractEventLoop, backlog: int):
        self.loop = loop
        self.queue: deque[dict] = deque(maxlen=backlog)
        self.ready = asyncio.Event()
        self.overflowed = False

    def push(self, event: dict) -> None:  # runs on the subscriber's loop
        if len(self.queue) == self.queue.maxlen:
            self.overflowed = True
        self.queue.append(event)
        self.ready.set()


class EventHub:
    """In-process fan-out of events to asyncio subscribers, safe to publish from any thread."""

    def __init__(self, backlog: int = 10_000):
        self.backlog = backlog
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._subscribers: set[_Subscriber] = set()

    @property
    def subscriber_count(self) -> int:
        """How many consumers are listening now."""
        return len(self._subscribers)

    def publish(self, event: dict) -> dict:
        """Give `event` an id and deliver it to every subscriber; returns the event sent."""
        with self._lock:
            event = {"id": next(self._ids), **event}
            subscribers = list(self._subscribers)
        for subscriber in subscribers:
            try:
                subscriber.loop.call_soon_threadsafe(subscriber.push, event)
            except RuntimeError:  # its loop has closed: the subscriber is gone
                self._subscribers.discard(subscriber)
        return event

    async def subscribe(self, heartbeat: float | None = None) -> AsyncIterator[dict | None]:
        """Every event published from now on, as they come (an endless async iterator); with
        `heartbeat`, a None after that many quiet seconds, so a stream can show it is alive."""
        subscriber = _Subscriber(asyncio.get_running_loop(), self.backlog)
        with self._lock:
            self._subscribers.add(subscriber)
        try:
            while True:
                try:
                    await asyncio.wait_for(subscriber.ready.wait(), heartbeat)
                except asyncio.TimeoutError:
                    yield None
                    continue
                subscriber.ready.clear()
                if subscriber.overflowed:
                    subscriber.overflowed = False
                    yield {"type": "overflow"}
                while subscriber.queue:
                    yield subscriber.queue.popleft()
        finally:
            with self._lock:
                self._subscribers.discard(subscriber)
