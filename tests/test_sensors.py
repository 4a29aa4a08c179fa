"""Sensors in the model: thresholds, the sensor-to-pipe links, the store's observation rules,
the bad-input rules of every ingest path, CSV replay and the simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import YANTAI_X, YANTAI_Y, both_backends, pipe_features, point, write_geojson
from layers.spec import LayerSpec
from layers.sensors import format_time, now_ms, parse_batch
from twin.errors import SpecError, UnknownSensor
from twin.live import CityRegistry
from twin.sensors import SensorInfo, SensorMonitor, Thresholds, assess_statuses
from twin.simulate import Leak
from twin.store import ObservationRow, Reading
from twin.workspace import City

HOUR = 3_600_000


@pytest.fixture
def watched_city(city: City, tmp_path: Path, pipe_spec: Path) -> City:
    """Three water pipes (pipe.WS-000..002, 10 m apart) and four sensors: S-1 and S-2 on
    WS-000 by pipe_id, S-3 without one 2 m from WS-002, S-4 far from every pipe."""
    city.ingest(write_geojson(tmp_path / "pipes.geojson", pipe_features(3)), "pipe", spec=pipe_spec)
    sensors = [
        {"geometry": point(YANTAI_X + 50, YANTAI_Y), "properties": {"sensor_id": "S-1", "property": "pressure",
                                                                   "unit": "MPa", "pipe_id": "pipe.WS-000"}},
        {"geometry": point(YANTAI_X + 60, YANTAI_Y), "properties": {"sensor_id": "S-2", "property": "pressure",
                                                                   "unit": "MPa", "pipe_id": "WS-000"}},
        {"geometry": point(YANTAI_X + 50, YANTAI_Y + 22), "properties": {"sensor_id": "S-3", "property": "pressure",
                                                                        "unit": "m"}},
        {"geometry": point(YANTAI_X + 500, YANTAI_Y + 500), "properties": {"sensor_id": "S-4", "property": "level",
                                                                          "unit": "m"}},
    ]
    city.ingest(write_geojson(tmp_path / "sensors.geojson", sensors), "sensor", spec=LayerSpec(id_column="sensor_id"))
    return city


def monitor_of(city: City, snap_m: float = 10.0) -> SensorMonitor:
    """The ingest path a server or the CLI builds for a city."""
    return SensorMonitor(city.store, CityRegistry(lambda: {r.name: r for r in city.layers()}, city.features, snap_m))


def test_default_thresholds_turn_pressure_into_normal_warning_and_alarm():
    bands = Thresholds.load()
    water = SensorInfo("S-1", "sensor", "sensor.S-1", "pressure", "MPa", "pipe.P", "pipe", "water")
    gas = SensorInfo("S-2", "sensor", "sensor.S-2", "pressure", "MPa", "pipe.G", "pipe", "gas")
    now = now_ms()
    assert [bands.status(water, Reading("S-1", now, v), now) for v in (0.35, 0.17, 0.05, 0.7, 0.9)] == \
        ["normal", "warning", "alarm", "warning", "alarm"]
    assert bands.status(gas, Reading("S-2", now, 0.45), now) == "warning", "gas has its own, narrower bands"


def test_pressure_in_metres_of_head_is_judged_against_bands_in_mpa():
    bands = Thresholds.load()
    head = SensorInfo("J-1", "sensor", "sensor.J-1", "pressure", "m", None, None, "water")
    now = now_ms()
    assert bands.status(head, Reading("J-1", now, 35.0), now) == "normal"  # 0.34 MPa
    assert bands.status(head, Reading("J-1", now, 5.0), now) == "alarm"  # 0.05 MPa


def test_a_reading_older_than_the_staleness_window_is_no_data(tmp_path):
    path = tmp_path / "bands.toml"
    path.write_text("stale_after_s = 60\n[level]\nunit = 'm'\nwarning = [0, 1]\nalarm = [0, 2]\n")
    bands = Thresholds.load(path)
    level = SensorInfo("L-1", "sensor", "sensor.L-1", "level", "m")
    now = now_ms()
    assert bands.status(level, Reading("L-1", now - 59_000, 0.5), now) == "normal"
    assert bands.status(level, Reading("L-1", now - 61_000, 0.5), now) == "no_data"


def test_a_thresholds_file_with_a_band_upside_down_names_the_file_and_the_key(tmp_path):
    path = tmp_path / "bands.toml"
    path.write_text("[flow]\nwarning = [10, 1]\n")
    with pytest.raises(SpecError, match=r"bands.toml.*flow.warning must be \[low, high\]"):
        Thresholds.load(path)


@both_backends
def test_a_sensor_without_pipe_id_watches_the_nearest_pipe_within_the_tolerance(watched_city):
    registry = monitor_of(watched_city, snap_m=5.0).registry()
    assert registry.info("S-1").pipe == "pipe.WS-000"
    assert registry.info("S-2").pipe == "pipe.WS-000", "a pipe_id without the layer prefix is found too"
    assert registry.info("S-3").pipe == "pipe.WS-002" and registry.info("S-3").utility == "water"
    assert registry.info("S-4").pipe is None
    assert monitor_of(watched_city, snap_m=1.0).registry().info("S-3").pipe is None
    with pytest.raises(UnknownSensor):
        registry.info("S-404")


@both_backends
def test_a_pipe_takes_the_worst_status_of_its_sensors(watched_city):
    registry = monitor_of(watched_city).registry()
    now = now_ms()
    changes = assess_statuses(registry, Thresholds.load(), now, {"S-1": Reading("S-1", now, 0.17)},
                              {("sensor", "sensor.S-2"): "alarm", ("pipe", "pipe.WS-000"): "alarm"})
    assert [(c.layer, c.uid, c.status) for c in changes] == [("sensor", "sensor.S-1", "warning")], \
        "S-2 is still in alarm, so the pipe stays an alarm"
    changes = assess_statuses(registry, Thresholds.load(), now, {"S-2": Reading("S-2", now, 0.35)},
                              {("sensor", "sensor.S-1"): "warning", ("sensor", "sensor.S-2"): "alarm",
                               ("pipe", "pipe.WS-000"): "alarm"})
    assert ("pipe", "pipe.WS-000", "warning", "S-1") in [(c.layer, c.uid, c.status, c.sensor) for c in changes]


@both_backends
def test_duplicates_of_sensor_and_time_are_stored_once_and_counted(watched_city):
    monitor = monitor_of(watched_city)
    t = now_ms()
    first = monitor.ingest([ObservationRow("S-1", t, 0.35), ObservationRow("S-1", t, 0.99)])
    again = monitor.ingest([ObservationRow("S-1", t, 0.5)])
    assert (first.stored, first.duplicates, again.stored, again.duplicates) == (1, 1, 0, 1)
    assert [r.mean for r in watched_city.store.history("S-1")] == [0.35], "the first value stands"
    assert watched_city.store.latest(["S-1"])[0].value == 0.35
    assert watched_city.store.ingest_counts() == {"stored": 1, "duplicates": 2}


@both_backends
def test_a_late_reading_is_history_but_moves_neither_the_latest_nor_the_status(watched_city):
    monitor = monitor_of(watched_city)
    t = now_ms()
    monitor.ingest([ObservationRow("S-1", t, 0.35)])
    report = monitor.ingest([ObservationRow("S-1", t - 1000, 0.01)])
    assert (report.stored, report.late, report.events) == (1, 1, 0)
    assert watched_city.store.latest(["S-1"])[0].value == 0.35
    assert watched_city.store.statuses()[("sensor", "sensor.S-1")] == "normal"
    assert [r.mean for r in watched_city.store.history("S-1")] == [0.01, 0.35]


@both_backends
def test_a_status_change_is_recorded_once_as_an_event_for_the_sensor_and_its_pipe(watched_city):
    monitor = monitor_of(watched_city)
    t = now_ms()
    monitor.ingest([ObservationRow("S-1", t, 0.05)])
    monitor.ingest([ObservationRow("S-1", t + 1, 0.06)])  # still an alarm: no new event
    events = watched_city.store.events_since(0)
    assert [(e["layer"], e["uid"], e["status"], e["previous"]) for e in events] == [
        ("sensor", "sensor.S-1", "alarm", None), ("pipe", "pipe.WS-000", "alarm", None)]
    assert events[1]["sensor"] == "S-1" and events[1]["value"] == 0.05
    assert events[0]["id"] < events[1]["id"] == watched_city.store.last_event_id()


@both_backends
def test_silent_sensors_turn_to_no_data_when_swept_and_so_do_their_pipes(watched_city, tmp_path):
    def monitor(stale_s: float) -> SensorMonitor:
        path = tmp_path / f"bands-{stale_s}.toml"
        path.write_text(f"stale_after_s = {stale_s}\n[pressure]\nunit = 'MPa'\nwarning = [0.2, 0.6]\nalarm = [0.1, 0.8]\n")
        return SensorMonitor(watched_city.store, monitor_of(watched_city).registry, Thresholds.load(path))

    monitor(60).ingest([ObservationRow("S-1", now_ms() - 5000, 0.35), ObservationRow("S-2", now_ms(), 0.35)])
    assert monitor(60).sweep() == [], "nothing is stale within a minute"
    events = monitor(1).sweep()  # S-1's reading is 5 s old: stale under a 1 s window
    assert [(e["uid"], e["status"], e["previous"]) for e in events] == [("sensor.S-1", "no_data", "normal"),
                                                                        ("pipe.WS-000", "no_data", "normal")] or \
        [(e["uid"], e["status"]) for e in events][:1] == [("sensor.S-1", "no_data")]
    assert watched_city.store.statuses()[("sensor", "sensor.S-1")] == "no_data"


@both_backends
def test_history_downsamples_to_min_mean_max_per_bucket(watched_city):
    monitor = monitor_of(watched_city)
    t0 = (now_ms() // HOUR - 3) * HOUR
    monitor.ingest([ObservationRow("S-1", t0 + k * 600_000, 0.30 + 0.01 * k) for k in range(12)])
    buckets = watched_city.store.history("S-1", bucket_ms=HOUR)
    assert [(b.time_ms - t0, b.count) for b in buckets] == [(0, 6), (HOUR, 6)]
    assert buckets[0].min == pytest.approx(0.30) and buckets[0].max == pytest.approx(0.35)
    assert buckets[0].mean == pytest.approx(0.325)
    window = watched_city.store.history("S-1", start_ms=t0 + HOUR, end_ms=t0 + HOUR + 1_200_000)
    assert [r.time_ms - t0 for r in window] == [HOUR, HOUR + 600_000], "start inclusive, end exclusive"


BAD_INPUT = {
    "invalid_json": b'[{"sensor_id": "S-1", "value": 1',
    "not_an_object": b'[42]',
    "missing_sensor": b'[{"value": 0.3}]',
    "unknown_sensor": b'[{"sensor_id": "S-404", "value": 0.3}]',
    "bad_value (NaN)": b'[{"sensor_id": "S-1", "value": NaN}]',
    "bad_value (text)": b'[{"sensor_id": "S-1", "value": "0.3"}]',
    "bad_value (missing)": b'[{"sensor_id": "S-1"}]',
    "bad_time": b'[{"sensor_id": "S-1", "time": "yesterday", "value": 0.3}]',
    "future_time": json.dumps([{"sensor_id": "S-1", "time": format_time(now_ms() + 2 * HOUR), "value": 0.3}]).encode(),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
@both_backends
def test_bad_input_is_rejected_counted_and_logged_without_stopping_the_valid_ones(watched_city, case, caplog):
    monitor = monitor_of(watched_city)
    reason = case.split(" ")[0]
    report = monitor.ingest_payload(BAD_INPUT[case])
    assert report.rejected == {reason: 1} and report.stored == 0
    assert reason in caplog.text
    if reason != "invalid_json":  # an unreadable body has no valid part; any other batch does
        good = {"sensor_id": "S-2", "time": format_time(now_ms()), "value": 0.35}
        mixed = json.loads(BAD_INPUT[case].decode().replace("NaN", '"NaN"'))
        if case == "bad_value (NaN)":
            mixed = [{"sensor_id": "S-1", "value": float("nan")}]
        report = monitor.ingest_payload([good, *mixed, good | {"sensor_id": "S-1"}])
        assert report.stored == 2 and report.rejected_total == 1
    counts = watched_city.store.ingest_counts()
    assert counts[reason] == (1 if reason == "invalid_json" else 2)


def test_a_reading_without_a_time_is_stamped_on_arrival_and_zone_less_times_are_utc():
    before = now_ms()
    rows, _ = parse_batch(b'[{"sensor_id": "S-1", "value": true}, '
                          b'{"sensor_id": "S-1", "time": "2024-05-01T08:00:00", "value": 1}]')
    assert before <= rows[0].time_ms <= now_ms() and rows[0].value == 1.0
    assert format_time(rows[1].time_ms) == "2024-05-01T08:00:00.000Z"


@both_backends
def test_replay_loads_a_csv_once_however_often_it_is_replayed(watched_city, tmp_path):
    t0 = now_ms() - 10 * HOUR
    lines = ["sensor_id,time,value,quality"] + [f"S-1,{format_time(t0 + k * 60_000)},{0.3 + k / 1000},good"
                                                for k in range(500)]
    lines += ["S-1,not a time,0.3,", "S-404,2024-01-01T00:00:00Z,0.3,", "S-2,2024-01-01T00:00:00Z,nan,"]
    path = tmp_path / "history.csv"
    path.write_text("\n".join(lines) + "\n")
    for run in range(2):
        result = subprocess.run([sys.executable, "-m", "twin.cli", "sensors", "replay", str(watched_city.root),
                                 str(path)], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert "503 observations: 0 stored, 500 duplicates" in result.stdout
    assert "3 rejected (bad_time 1, bad_value 1, unknown_sensor 1)" in result.stdout
    assert len(watched_city.store.history("S-1")) == 500
    assert watched_city.store.history("S-1", limit=1)[0].time_ms == t0


def test_a_simulated_leak_drops_pressure_most_at_the_burst_and_spreads_along_the_main():
    leak = Leak("pipe.A", {"pipe.A": 0, "pipe.B": 1, "pipe.C": 2}, began=100.0)
    assert leak.drop("pipe.B", 101.0) == 0.0, "the drop has not reached the next pipe yet"
    at_peak = [leak.drop(p, 115.0) for p in ("pipe.A", "pipe.B", "pipe.C", "pipe.Z")]
    assert at_peak[0] > at_peak[1] > at_peak[2] > at_peak[3] == 0.0
    assert leak.drop("pipe.A", 200.0) == 0.0, "the leak heals"
