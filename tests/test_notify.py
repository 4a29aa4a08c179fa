"""Change notices through PostgreSQL LISTEN/NOTIFY (twin.notify), on the session's PostgreSQL."""

from __future__ import annotations

import json
import threading
import time

import pytest

from conftest import both_backends, pipe_features, write_geojson
from twin.notify import (
    MAX_PAYLOAD_BYTES,
    CommitNotifier,
    Listener,
    channel_for,
    follow_notices,
    install_notifier,
    listener_for,
    notice_payload,
    parse_notice,
)

psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def pg_conninfo(postgis_url):
    """The session's PostgreSQL database (its URL is a libpq connection string too)."""
    return postgis_url


class Heard:
    """What a listener's callbacks saw, with a way to wait for it."""

    def __init__(self) -> None:
        self.notices: list[dict] = []
        self.connected = 0
        self.lost = 0
        self._changed = threading.Condition()

    def notice(self, notice: dict) -> None:
        with self._changed:
            self.notices.append(notice)
            self._changed.notify_all()

    def on_connected(self) -> None:
        with self._changed:
            self.connected += 1
            self._changed.notify_all()

    def on_lost(self) -> None:
        with self._changed:
            self.lost += 1
            self._changed.notify_all()

    def wait_for(self, predicate, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(predicate, timeout)


@pytest.fixture
def listening(pg_conninfo):
    """A started listener on the channel of schema "city_a", and what it heard."""
    heard = Heard()
    listener = Listener(pg_conninfo, channel_for("city_a"), heard.notice, heard.on_connected, heard.on_lost,
                        backoff=(0.05, 0.5), heartbeat_s=0.5).start()
    assert listener.wait_connected(10)
    yield listener, heard
    listener.stop()


def test_a_layer_notice_names_the_layer_version_and_changed_boxes():
    notice = json.loads(notice_payload("layer", {"layer": "pipe", "version": 4, "changed": [(1, 2, 3, 4)]}))
    assert notice == {"kind": "layer", "layer": "pipe", "version": 4, "bounds": [[1, 2, 3, 4]]}


def test_a_layer_changed_anywhere_has_null_bounds():
    notice = json.loads(notice_payload("layer", {"layer": "pipe", "version": 5, "changed": None}))
    assert notice["bounds"] is None and "refetch" not in notice


def test_a_notice_too_large_for_postgresql_says_refetch_instead_of_listing_boxes():
    boxes = [(623_000.0 + i, 4_155_000.0 + i, 623_001.5 + i, 4_155_001.5 + i) for i in range(2000)]
    text = notice_payload("layer", {"layer": "pipe", "version": 9, "changed": boxes})
    assert len(text.encode()) <= MAX_PAYLOAD_BYTES < 8000
    assert json.loads(text) == {"kind": "layer", "layer": "pipe", "version": 9, "refetch": True}


def test_a_status_notice_gives_the_event_ids_and_layers():
    events = [{"id": 7, "layer": "pipe"}, {"id": 8, "layer": "sensor"}, {"id": 9, "layer": "pipe"}]
    notice = json.loads(notice_payload("status", {"events": events}))
    assert notice == {"kind": "status", "layers": ["pipe", "sensor"], "first_id": 7, "last_id": 9, "count": 3}


def test_an_unreadable_notice_means_reread_everything():
    assert parse_notice("not json") == {"kind": "unknown", "refetch": True}
    assert parse_notice("[1, 2]")["refetch"] is True
    assert parse_notice('{"kind": "layer", "layer": "pipe"}')["layer"] == "pipe"


def test_a_channel_name_fits_postgresql_identifiers():
    assert channel_for("yantai") == "twin_yantai"
    assert len(channel_for("x" * 63).encode()) == 63


def test_a_geopackage_city_sends_and_hears_no_notices(city):
    assert install_notifier(city.store) is False
    assert listener_for(city.store, lambda notice: None) is None


def test_a_notice_arrives_only_when_its_transaction_commits(pg_conninfo, listening):
    listener, heard = listening
    notify = CommitNotifier("city_a")
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        with conn.transaction():
            notify(conn, "layer", {"layer": "pipe", "version": 2, "changed": [(0, 0, 1, 1)]})
            time.sleep(0.3)
            assert heard.notices == []  # not before the commit
        started = time.monotonic()
        assert heard.wait_for(lambda: len(heard.notices) == 1, 2)
        assert time.monotonic() - started < 1
        assert heard.notices[0] == {"kind": "layer", "layer": "pipe", "version": 2, "bounds": [[0, 0, 1, 1]]}

        with pytest.raises(RuntimeError), conn.transaction():
            notify(conn, "layer", {"layer": "pipe", "version": 3, "changed": None})
            raise RuntimeError("the write failed")
        notify_other = CommitNotifier("city_b")  # another city's channel
        with conn.transaction():
            notify_other(conn, "layer", {"layer": "pipe", "version": 1, "changed": None})
        with conn.transaction():
            notify(conn, "status", {"events": [{"id": 1, "layer": "pipe"}]})
    assert heard.wait_for(lambda: len(heard.notices) == 2, 2)
    time.sleep(0.2)
    assert [n["kind"] for n in heard.notices] == ["layer", "status"]  # neither the rolled back nor city_b's


def test_a_listener_whose_connection_is_killed_reconnects_and_hears_again(pg_conninfo, listening):
    listener, heard = listening
    assert heard.connected == 1 and listener.connected
    with psycopg.connect(pg_conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [listener.backend_pid])
        assert heard.wait_for(lambda: heard.lost == 1, 5)  # told, so it can poll meanwhile
        assert heard.wait_for(lambda: heard.connected == 2, 5)  # and told again when back, to re-read
        assert listener.connected and listener.reconnects >= 1
        with conn.transaction():
            CommitNotifier("city_a")(conn, "layer", {"layer": "green", "version": 1, "changed": None})
    assert heard.wait_for(lambda: [n.get("layer") for n in heard.notices] == ["green"], 2)


def test_a_listener_keeps_trying_while_the_server_is_unreachable():
    from conftest import free_port

    heard = Heard()
    listener = Listener(f"host=127.0.0.1 port={free_port()} user=postgres dbname=none connect_timeout=1",
                        "twin_x", heard.notice, heard.on_connected, heard.on_lost, backoff=(0.05, 0.2)).start()
    try:
        time.sleep(1.0)
        assert not listener.connected and heard.connected == 0 and heard.lost == 0
        assert listener.reconnects >= 2
    finally:
        started = time.monotonic()
        listener.stop()
        assert time.monotonic() - started < 2


def test_a_view_rereads_its_catalogue_when_expired_not_only_when_its_ttl_runs_out(city, tmp_path):
    from twin.snapshots import CityView
    from twin.workspace import City

    source = write_geojson(tmp_path / "pipes.geojson", pipe_features(2))
    city.ingest(source, kind="pipe")
    view = CityView(city.root, ttl=0.0, notified_ttl=3600)
    view.notified = lambda: True  # notices flow: the copy is trusted until one comes
    assert view.record("pipe").version == 1
    City.open(city.root).ingest(write_geojson(tmp_path / "more.geojson", pipe_features(3)), kind="pipe")
    assert view.record("pipe").version == 1
    view.expire()
    assert view.record("pipe").version == 2
    view.notified = lambda: False  # the listener is down: back to the ttl
    City.open(city.root).ingest(source, kind="pipe")
    assert view.record("pipe").version == 3


def test_a_woken_status_poller_publishes_at_once_rather_at_its_next_tick(city):
    from twin.live import LiveStatus
    from twin.store import StatusChange

    published: list[dict] = []
    live = LiveStatus(city.store, publish=published.append, poll_s=3600, notified_poll_s=3600)
    live.start()
    try:
        time.sleep(0.1)
        city.store.update_statuses(lambda readings, statuses: [StatusChange("pipe", "pipe.1", "alarm")])
        time.sleep(0.3)
        assert published == []
        started = time.monotonic()
        live.wake()
        deadline = started + 2
        while not published and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [e["status"] for e in published] == ["alarm"] and time.monotonic() - started < 0.5
    finally:
        live.stop()


@both_backends
def test_a_server_view_follows_another_process_writes_at_once_on_postgis_and_by_polling_on_geopackage(
        city, backend, tmp_path):
    from twin.live import LiveStatus
    from twin.snapshots import CityView
    from twin.store import StatusChange
    from twin.workspace import City

    city.ingest(write_geojson(tmp_path / "pipes.geojson", pipe_features(2)), kind="pipe")
    view = CityView(city.root, ttl=3600, notified_ttl=3600)  # only a notice makes it re-read
    published: list[dict] = []
    live = LiveStatus(view.city.store, publish=published.append, poll_s=3600, notified_poll_s=3600)
    listener = follow_notices(view, live)
    if backend == "gpkg":
        assert listener is None  # nothing to hear: the server polls
        return
    listener.start()
    live.start()
    try:
        assert listener.wait_connected(10)
        assert view.record("pipe").version == 1
        writer = City.open(city.root)  # another process, as far as the store can tell
        writer.ingest(write_geojson(tmp_path / "more.geojson", pipe_features(3)), kind="pipe")
        started = time.monotonic()
        while view.record("pipe").version != 2:
            assert time.monotonic() - started < 1, "the view did not hear of the ingest"
            time.sleep(0.01)
        writer.store.update_statuses(lambda readings, statuses: [StatusChange("pipe", "pipe.1", "alarm")])
        started = time.monotonic()
        while not published:
            assert time.monotonic() - started < 1, "the status poller was not woken"
            time.sleep(0.01)
        assert [(e["uid"], e["status"]) for e in published] == [("pipe.1", "alarm")]
        assert listener.received == 2
    finally:
        live.stop()
        listener.stop()


def test_a_server_view_whose_listener_drops_polls_until_it_hears_again(postgis_url, tmp_path):
    from conftest import fresh_schema_url

    from twin.snapshots import CityView
    from twin.workspace import City

    city = City.init(tmp_path / "city", "EPSG:4549", store=fresh_schema_url(postgis_url))
    city.ingest(write_geojson(tmp_path / "pipes.geojson", pipe_features(2)), kind="pipe")
    view = CityView(city.root, ttl=0.2, notified_ttl=3600)
    listener = follow_notices(view, None, backoff=(6.0, 6.0))  # back 6 s after a drop
    listener.start()
    try:
        assert listener.wait_connected(10) and view.notified()
        with psycopg.connect(postgis_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", [listener.backend_pid])
        started = time.monotonic()
        while view.notified():
            assert time.monotonic() - started < 2, "the drop went unnoticed"
            time.sleep(0.01)
        assert view.record("pipe").version == 1
        City.open(city.root).ingest(write_geojson(tmp_path / "more.geojson", pipe_features(3)), kind="pipe")
        time.sleep(0.3)  # more than the polling ttl, less than the reconnection
        assert not listener.connected and view.record("pipe").version == 2
        assert listener.wait_connected(10) and view.notified()
    finally:
        listener.stop()
