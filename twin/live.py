"""Live status in a serving process: the sensor registry kept in step with the layers, and the
statuses of pipes and sensors kept current by tailing the store's status events.

Every process that serves a city runs one `LiveStatus` poller: it reads the events that any
process (another worker, `twin sensors simulate`, a replay) recorded in the store, publishes
them to the process's `EventHub` (so each SSE stream carries every change) and holds the
statuses the features and tiles of that process show. Where the store sends change notices
(twin.notify), a notice `wake`s the poller at once, and it polls only every `notified_poll_s`
while notices flow.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import geopandas as gpd

from twin.sensors import SensorRegistry
from twin.store import LayerRecord, Store

__all__ = ["CityRegistry", "LiveStatus", "STATUS_KINDS"]

log = logging.getLogger("twin.live")

STATUS_KINDS = ("pipe", "sensor")  # layer kinds whose features carry a live status
RECENT_EVENTS = 20_000


class CityRegistry:
    """A sensor registry rebuilt whenever a sensor or pipe layer gets a new version (callable)."""

    def __init__(self, records: Callable[[], dict[str, LayerRecord]], frame: Callable[[str], gpd.GeoDataFrame],
                 snap_m: float = 10.0) -> None:
        self._records = records
        self._frame = frame
        self.snap_m = snap_m
        self._key: tuple | None = None
        self._registry = SensorRegistry()
        self._lock = threading.Lock()

    def __call__(self) -> SensorRegistry:
        records = [r for r in self._records().values() if r.kind in ("sensor", "pipe")]
        key = tuple(sorted((r.name, r.version) for r in records))
        if key != self._key:
            with self._lock:
                if key != self._key:
                    self._registry = SensorRegistry.build(
                        {r.name: self._frame(r.name) for r in records if r.kind == "sensor"},
                        {r.name: self._frame(r.name) for r in records if r.kind == "pipe"}, self.snap_m)
                    self._key = key
        return self._registry


class LiveStatus:
    """Statuses of pipes and sensors as recorded in the store, followed by polling its events."""

    def __init__(self, store: Store, publish: Callable[[dict], Any] | None = None, poll_s: float = 0.15,
                 notified_poll_s: float = 30.0) -> None:
        self.store = store
        self.publish = publish
        self.poll_s = poll_s
        self.notified_poll_s = notified_poll_s
        # set by a server that hears change notices: True while they flow
        self.notified: Callable[[], bool] = lambda: False
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._statuses: dict[tuple[str, str], str] = store.statuses()
        self._values: dict[tuple[str, str], float | None] = {}
        self.last_id = self._base = store.last_event_id()
        self._versions: dict[str, int] = {}
        self._recent: deque[tuple[int, str, str]] = deque(maxlen=RECENT_EVENTS)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Poll the store in a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="twin-status-events")
        self._thread.start()

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wake(self) -> None:
        """Poll now rather than at the next tick (a change notice came): safe from any thread."""
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.notified_poll_s if self.notified() else self.poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while self.poll() >= 1000:  # catch up on a burst before sleeping again
                    pass
            except Exception:  # a locked or briefly unreadable store: try again next tick
                log.warning("reading status events failed", exc_info=True)

    def poll(self) -> int:
        """Take in the events recorded since the last poll and publish them; returns how many."""
        events = self.store.events_since(self.last_id, limit=1000)
        if not events:
            return 0
        with self._lock:
            for event in events:
                key = (event["layer"], event["uid"])
                self._statuses[key] = event["status"]
                self._values[key] = event["value"]
                self._versions[event["layer"]] = event["id"]
                self._recent.append((event["id"], event["layer"], event["uid"]))
            self.last_id = events[-1]["id"]
        if self.publish is not None:
            for event in events:
                self.publish(event)
        return len(events)

    def version(self, layer: str) -> int:
        """A number that grows whenever a feature of `layer` changes status."""
        return self._versions.get(layer, self._base)

    def statuses(self, layer: str) -> tuple[dict[str, str], dict[str, float | None]]:
        """The recorded statuses of a layer's features, and the readings behind them, by uid."""
        with self._lock:
            statuses = {uid: s for (name, uid), s in self._statuses.items() if name == layer}
            values = {uid: v for (name, uid), v in self._values.items() if name == layer}
        return statuses, values

    def changed_since(self, layer: str, version: int) -> list[str] | None:
        """The uids of `layer` whose status changed after `version` (None: too many to say)."""
        with self._lock:
            if self._recent and self._recent[0][0] <= version + 1:
                return sorted({uid for id_, name, uid in self._recent if id_ > version and name == layer})
        uids: set[str] = set()
        after = version
        for _ in range(10):
            events = self.store.events_since(after, limit=5000)
            uids |= {e["uid"] for e in events if e["layer"] == layer}
            if len(events) < 5000:
                return sorted(uids)
            after = events[-1]["id"]
        return None
