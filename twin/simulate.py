"""A live feed for the demo: plausible readings for every sensor of a city, and now and then a
leak, a pressure drop that spreads along the water main from a burst pipe and heals again.

The readings go to a sink: `SensorMonitor.ingest` in-process (what `twin demo` does) or an
MQTT publisher (`twin sensors simulate --mqtt`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from layers.sensors import ObservationRow, now_ms
from twin.sensors import SensorInfo, SensorRegistry
from twin.workspace import City

__all__ = ["Simulator", "Leak"]

log = logging.getLogger("twin.simulate")

TICK_S = 0.1
# Typical readings by property (and utility): mean and spread.
NORMAL = {("pressure", "water"): (0.36, 0.015), ("pressure", "gas"): (0.30, 0.008), ("flow", None): (120.0, 25.0),
          ("level", None): (0.35, 0.08), ("leak", None): (0.0, 0.0)}
LEAK_DROP_MPA = 0.26  # at the burst pipe; each pipe further along the main sees 70 % of the last
LEAK_SPREAD_S = 4.0  # seconds for the drop to reach the next pipe along the main
LEAK_LASTS_S = 60.0


class Leak:
    """A burst on one water pipe: how far each pipe is from it (in segments) and when it began."""

    def __init__(self, pipe: str, hops: dict[str, int], began: float) -> None:
        self.pipe = pipe
        self.hops = hops
        self.began = began

    def drop(self, pipe: str | None, t: float) -> float:
        """The pressure drop (MPa) on `pipe` at time `t` (seconds)."""
        hop = self.hops.get(pipe) if pipe is not None else None
        if hop is None:
            return 0.0
        age = t - self.began - hop * LEAK_SPREAD_S
        if age < 0 or t - self.began > LEAK_LASTS_S + hop * LEAK_SPREAD_S:
            return 0.0
        return LEAK_DROP_MPA * 0.7 ** hop * min(1.0, age / 2.0)


class Simulator:
    """Readings for a city's sensors at `rate` a second, with a leak every `leak_every_s`."""

    def __init__(self, sensors: list[SensorInfo], water_mains: dict[str, list[str]], rate: float = 1000.0,
                 leak_every_s: float = 180.0, seed: int = 7) -> None:
        self.sensors = sensors
        self.water_mains = water_mains  # water pipe uid -> connected water pipe uids
        self.rate = rate
        self.leak_every_s = leak_every_s
        self.rng = np.random.default_rng(seed)
        self.sent = 0
        self.leaks = 0
        self.leak: Leak | None = None
        self._next_leak = time.monotonic() + min(20.0, leak_every_s)
        self._last: dict[str, int] = {}
        self._cursor = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_city(cls, city: City, registry: Callable[[], SensorRegistry], rate: float = 1000.0,
                 leak_every_s: float = 180.0) -> "Simulator":
        """A simulator of the city's sensors, its water mains found by shared pipe ends."""
        reg = registry()
        ends: dict[tuple[float, float], list[str]] = {}
        for record in city.layers_of_kind("pipe"):
            frame = city.features(record.name)
            water = frame[frame["utility"] == "water"] if "utility" in frame.columns else frame.iloc[:0]
            for uid, line in zip(water["uid"].astype(str), water.geometry):
                coords = np.asarray(line.geoms[0].coords if line.geom_type.startswith("Multi") else line.coords)
                for x, y in (coords[0][:2], coords[-1][:2]):
                    ends.setdefault((round(float(x), 1), round(float(y), 1)), []).append(uid)
        mains: dict[str, list[str]] = {}
        for uids in ends.values():
            for uid in uids:
                mains.setdefault(uid, []).extend(u for u in uids if u != uid)
        sensors = sorted(reg.sensors.values(), key=lambda s: s.sensor_id)
        return cls(sensors, mains, rate=rate, leak_every_s=leak_every_s)

    def _maybe_leak(self, now: float) -> None:
        if now < self._next_leak:
            return
        self._next_leak = now + self.leak_every_s
        watched = [s.pipe for s in self.sensors if s.property == "pressure" and s.utility == "water"
                   and s.pipe in self.water_mains]
        if not watched:
            return
        start = watched[int(self.rng.integers(len(watched)))]
        hops, queue = {start: 0}, deque([start])
        while queue:  # breadth first along the mains, a few segments out
            pipe = queue.popleft()
            if hops[pipe] >= 4:
                continue
            for other in self.water_mains.get(pipe, []):
                if other not in hops:
                    hops[other] = hops[pipe] + 1
                    queue.append(other)
        self.leak = Leak(start, hops, now)
        self.leaks += 1
        log.info("simulated leak on %s, spreading over %d pipes", start, len(hops))

    def _value(self, sensor: SensorInfo, t: float) -> float:
        mean, spread = NORMAL.get((sensor.property, sensor.utility)) or NORMAL.get((sensor.property, None), (1.0, 0.1))
        daily = 1.0 + 0.03 * math.sin(2 * math.pi * t / 86_400.0)
        value = mean * daily + spread * float(self.rng.standard_normal())
        if self.leak is not None:
            drop = self.leak.drop(sensor.pipe, t)
            if sensor.property == "pressure" and sensor.utility == "water":
                value -= drop
            elif sensor.property == "flow" and drop:
                value += drop * 1500.0  # water rushing to the burst
        if sensor.property == "leak":
            return 0.0
        return round(max(value, 0.0), 4)

    def readings(self, n: int) -> list[ObservationRow]:
        """The next `n` readings, sensor after sensor, stamped now (distinct times per sensor)."""
        if not self.sensors:
            return []
        wall, t = now_ms(), time.monotonic()
        self._maybe_leak(t)
        rows = []
        for _ in range(n):
            sensor = self.sensors[self._cursor]
            self._cursor = (self._cursor + 1) % len(self.sensors)
            stamp = max(wall, self._last.get(sensor.sensor_id, 0) + 1)
            self._last[sensor.sensor_id] = stamp
            rows.append(ObservationRow(sensor.sensor_id, stamp, self._value(sensor, t)))
        return rows

    def start(self, sink: Callable[[list[ObservationRow]], object]) -> "Simulator":
        """Send readings to `sink` from a daemon thread, every tenth of a second, until `stop`."""
        def run() -> None:
            owed = 0.0
            while not self._stop.wait(TICK_S):
                owed += self.rate * TICK_S
                n = int(owed)
                owed -= n
                try:
                    sink(self.readings(n))
                    self.sent += n
                except Exception:  # the demo keeps going when its store is briefly busy
                    log.warning("simulated readings could not be sent", exc_info=True)
        self._thread = threading.Thread(target=run, daemon=True, name="twin-simulator")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sending."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @staticmethod
    def mqtt_sink(publisher) -> Callable[[list[ObservationRow]], None]:
        """A sink that publishes each reading to its sensor's topic."""
        from layers.sensors import format_time

        def send(rows: list[ObservationRow]) -> None:
            for row in rows:
                publisher.publish(row.sensor_id, {"time": format_time(row.time_ms), "value": row.value})
        return send
