"""Change notices between the processes and machines that serve one city from PostgreSQL.

Every write other servers must hear about (a layer swapped or deleted, statuses changed)
sends ``NOTIFY twin_<schema>, '<json>'`` inside the transaction that makes the change, so
PostgreSQL delivers the notice only once the change is committed, and never for one that
was rolled back. Each server holds one `Listener`: a dedicated autocommit connection that
LISTENs on the city's channel in a thread and, on a notice, tells the process to re-read
what changed (the layer catalogue, the status events) at once rather than at its next poll.
Tiles and features are then invalidated by the store's change log, for exactly the layer
and area that changed.

A notice is a hint, never the data: a receiver always re-reads the store, so a notice lost
while the listener was reconnecting costs a poll interval, not a wrong answer. Its JSON::

    {"kind": "layer", "layer": "pipe", "version": 4, "bounds": [[x0, y0, x1, y1], ...]}
    {"kind": "status", "layers": ["pipe", "sensor"], "first_id": 120, "last_id": 131, "count": 12}

``bounds`` (city CRS) is null when the layer changed anywhere and missing, with
``"refetch": true``, when the boxes would not fit PostgreSQL's 8000-byte payload limit.

The GeoPackage store sends no notices; servers of such a city poll as before.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CHANNEL_PREFIX", "MAX_PAYLOAD_BYTES", "channel_for", "notice_payload", "parse_notice",
           "CommitNotifier", "install_notifier", "Listener", "listener_for", "follow_notices"]

log = logging.getLogger("twin.notify")

CHANNEL_PREFIX = "twin_"
MAX_IDENTIFIER_BYTES = 63
# PostgreSQL refuses payloads of 8000 bytes or more; keep a margin for the encoding
MAX_PAYLOAD_BYTES = 7900
# With notices flowing a server still re-reads this often, for writers that send none
# (an older twin, a DBA's UPDATE).
DEFAULT_SAFETY_S = 30.0
HEARTBEAT_S = 10.0  # a quiet listener checks its connection this often
BACKOFF_S = (0.2, 10.0)  # first and longest wait between reconnection attempts


def channel_for(schema: str) -> str:
    """The notification channel of the city in `schema` (at most 63 bytes, as PostgreSQL allows).

    Examples
    --------
    >>> channel_for("yantai")
    'twin_yantai'
    """
    return (CHANNEL_PREFIX + schema).encode()[:MAX_IDENTIFIER_BYTES].decode(errors="ignore")


def notice_payload(what: str, payload: dict) -> str:
    """The JSON text of a notice for a store commit (`what`: "layer" or "status"), within PostgreSQL's limit.

    Examples
    --------
    >>> notice_payload("layer", {"layer": "pipe", "version": 3, "changed": [(0.0, 0.0, 1.0, 1.0)]})
    '{"kind":"layer","layer":"pipe","version":3,"bounds":[[0.0,0.0,1.0,1.0]]}'
    """
    if what == "layer":
        changed = payload.get("changed")
        notice: dict[str, Any] = {"kind": "layer", "layer": payload["layer"], "version": payload.get("version"),
                                  "bounds": None if changed is None else [list(b) for b in changed]}
    elif what == "status":
        events = payload.get("events") or []
        ids = [e["id"] for e in events if e.get("id") is not None]
        notice = {"kind": "status", "layers": sorted({e["layer"] for e in events}),
                  "first_id": min(ids, default=None), "last_id": max(ids, default=None), "count": len(events)}
    else:
        notice = {"kind": what, **{k: v for k, v in payload.items() if isinstance(v, (str, int, float, bool))}}
    text = _dumps(notice)
    if len(text.encode()) <= MAX_PAYLOAD_BYTES:
        return text
    small = {k: v for k, v in notice.items() if k in ("kind", "layer", "version", "first_id", "last_id", "count")}
    text = _dumps({**small, "refetch": True})
    if len(text.encode()) <= MAX_PAYLOAD_BYTES:
        return text
    return _dumps({"kind": notice["kind"], "refetch": True})  # a layer name near the limit


def _dumps(notice: dict) -> str:
    return json.dumps(notice, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def parse_notice(text: str) -> dict:
    """A notice's payload as a dict; anything unreadable counts as "something changed, re-read all"."""
    try:
        notice = json.loads(text)
    except ValueError:
        return {"kind": "unknown", "refetch": True}
    if not isinstance(notice, dict) or not isinstance(notice.get("kind"), str):
        return {"kind": "unknown", "refetch": True}
    return notice


class CommitNotifier:
    """A store commit hook that sends the commit's notice on the city's channel, in its transaction."""

    def __init__(self, schema: str) -> None:
        self.channel = channel_for(schema)

    def __call__(self, conn: Any, what: str, payload: dict) -> None:
        """Queue the notice in `conn`'s open transaction; PostgreSQL sends it on commit."""
        conn.execute("SELECT pg_notify(%s, %s)", [self.channel, notice_payload(what, payload)])


def install_notifier(store: Any) -> bool:
    """Make a store send notices on every commit others must hear of; False for stores that cannot (GeoPackage)."""
    hooks = getattr(store, "commit_hooks", None)
    schema = getattr(store, "schema", None)
    if hooks is None or schema is None:
        return False
    if not any(isinstance(hook, CommitNotifier) for hook in hooks):
        hooks.append(CommitNotifier(schema))
    return True


class Listener:
    """LISTEN on one channel in a daemon thread, reconnecting with backoff when the connection drops.

    `on_notice(notice)` gets every notice (parsed). `on_connected()` runs each time the
    channel is (re)established, after LISTEN, so a receiver can re-read what it may have
    missed while no notices reached it; `on_lost()` when the connection drops, so it can
    go back to polling; `connected` says whether notices flow now.
    """

    def __init__(self, conninfo: str, channel: str, on_notice: Callable[[dict], Any],
                 on_connected: Callable[[], Any] | None = None, on_lost: Callable[[], Any] | None = None, *,
                 backoff: tuple[float, float] = BACKOFF_S,
                 heartbeat_s: float = HEARTBEAT_S, connect_timeout_s: float = 10.0) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.on_notice = on_notice
        self.on_connected = on_connected
        self.on_lost = on_lost
        self.backoff = backoff
        self.heartbeat_s = heartbeat_s
        self.connect_timeout_s = connect_timeout_s
        self.received = 0
        self.reconnects = 0
        self.backend_pid: int | None = None  # the server process of the listening connection
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._conn = None
        self._thread: threading.Thread | None = None

    @property
    def connected(self) -> bool:
        """True while the channel is listened to (notices arrive); False while reconnecting."""
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        """Block until the channel is listened to, at most `timeout` seconds."""
        return self._connected.wait(timeout)

    def start(self) -> "Listener":
        """Listen in a daemon thread until `stop`."""
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"twin-listen-{self.channel}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        wait = self.backoff[0]
        first = True
        while not self._stop.is_set():
            try:
                self._listen(first)
            except Exception as exc:  # a refused, dropped or killed connection: try again
                if self._connected.is_set() or first:
                    log.warning("listening for changes on %s failed (%s); polling until it is back",
                                self.channel, exc)
            was_connected = self._connected.is_set()
            self._connected.clear()
            self._close()
            if was_connected and self.on_lost is not None:
                self._call(self.on_lost)
            first = False
            # at once after a drop (a restarted server is often back), then ever longer
            wait = self.backoff[0] if was_connected else min(wait * 2, self.backoff[1])
            if self._stop.wait(wait):
                break
            self.reconnects += 1

    def _listen(self, first: bool) -> None:
        import psycopg
        from psycopg import sql

        # keepalives: a peer that vanished without a word (a cut network) is found within a minute
        self._conn = conn = psycopg.connect(self.conninfo, autocommit=True, connect_timeout=self.connect_timeout_s,
                                            keepalives=1, keepalives_idle=20, keepalives_interval=5,
                                            keepalives_count=4, application_name="twin listener")
        conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
        self.backend_pid = conn.info.backend_pid
        self._connected.set()
        if not first:
            log.info("listening for changes on %s again", self.channel)
        if self.on_connected is not None:
            self._call(self.on_connected)
        last_heard = time.monotonic()
        while not self._stop.is_set():
            # short waits, so `stop` is heard within a second; psycopg keeps notices that arrive
            # between two waits (or during the heartbeat) for the next one
            for notify in conn.notifies(timeout=1.0, stop_after=1000):
                last_heard = time.monotonic()
                self.received += 1
                try:
                    self.on_notice(parse_notice(notify.payload))
                except Exception:
                    log.warning("handling a change notice failed", exc_info=True)
            if time.monotonic() - last_heard >= self.heartbeat_s:
                conn.execute("SELECT 1")  # raises if the server or the network went away
                last_heard = time.monotonic()

    def _call(self, callback: Callable[[], Any]) -> None:
        try:
            callback()
        except Exception:
            log.warning("%s failed", getattr(callback, "__qualname__", callback), exc_info=True)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass


def listener_for(store: Any, on_notice: Callable[[dict], Any], **options: Any) -> Listener | None:
    """A (not yet started) listener for the city in `store`, or None when the store sends no notices."""
    conninfo = getattr(store, "conninfo", None) or getattr(store, "_conninfo", None)
    schema = getattr(store, "schema", None)
    if conninfo is None or schema is None or getattr(store, "commit_hooks", None) is None:
        return None
    return Listener(conninfo, channel_for(schema), on_notice, **options)


def follow_notices(view: Any, live: Any | None = None, **options: Any) -> Listener | None:
    """Keep a server's `CityView` (and its `LiveStatus`) current by the store's notices; None if it sends none.

    A layer notice expires the view's catalogue, so the next request reads the new version
    and the tile cache drops the tiles of the changed area; a status notice wakes the
    status poller, which publishes the new events to the SSE streams. While the listener
    is down both poll as they would without it; on reconnecting both re-read at once.
    The notifier is installed on the store too, so writes through this process notify.
    """
    store = view.city.store
    if not install_notifier(store):
        return None

    def on_notice(notice: dict) -> None:
        kind = notice.get("kind")
        if kind != "status":
            view.expire()
        if live is not None and kind != "layer":
            live.wake()

    def everything() -> None:
        view.expire()
        if live is not None:
            live.wake()

    listener = listener_for(store, on_notice, on_connected=everything, on_lost=everything, **options)
    if listener is None:
        return None
    view.notified = lambda: listener.connected
    if live is not None:
        live.notified = lambda: listener.connected
    return listener
