"""GET /events: status changes as Server-Sent Events."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from twin.events import EventHub, status_event


def read_events(url: str, count: int, received: list, timeout: float = 10) -> None:
    """Read `count` SSE messages from url into `received` as (event, data) pairs."""
    with httpx.stream("GET", url, timeout=timeout) as response:
        received.append(("headers", dict(response.headers)))
        event, data = None, []
        for line in response.iter_lines():
            if line.startswith("event:"):
                event = line.split(":", 1)[1].strip()
            elif line.startswith("data:"):
                data.append(line.split(":", 1)[1].strip())
            elif line == "" and event:
                received.append((event, json.loads("".join(data))))
                event, data = None, []
                if len(received) > count:
                    return


def test_a_published_status_change_reaches_every_stream_in_order(live_server):
    hub: EventHub = live_server.app.state.services.events
    streams = [[], []]
    readers = [threading.Thread(target=read_events, args=(f"{live_server.url}/events", 3, s)) for s in streams]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 10
    while hub.subscriber_count < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    for status in ("warning", "alarm", "normal"):
        hub.publish(status_event("pipe", "P-0001", status, sensor="S-0001", value=0.2))
    for reader in readers:
        reader.join(timeout=10)
    for received in streams:
        headers = received[0][1]
        assert headers["content-type"].startswith("text/event-stream")
        assert [e for e, _ in received[1:]] == ["status"] * 3
        assert [d["status"] for _, d in received[1:]] == ["warning", "alarm", "normal"]
        ids = [d["id"] for _, d in received[1:]]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert received[1][1]["layer"] == "pipe" and received[1][1]["uid"] == "P-0001"


def test_a_status_outside_the_four_is_refused():
    with pytest.raises(ValueError, match="not one of normal, warning, alarm, no_data"):
        status_event("pipe", "P-1", "broken")


def test_a_slow_subscriber_loses_the_oldest_events_and_is_told():
    hub = EventHub(backlog=5)

    async def run() -> list[dict]:
        stream = hub.subscribe()
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(0)  # subscribed
        for k in range(20):
            hub.publish({"type": "status", "n": k})
        await asyncio.sleep(0.05)
        got = [await first]
        while len(got) < 6:
            got.append(await stream.__anext__())
        await stream.aclose()
        return got

    got = asyncio.run(run())
    assert got[0] == {"type": "overflow"}
    assert [e["n"] for e in got[1:]] == [15, 16, 17, 18, 19]
    assert hub.subscriber_count == 0


def test_quiet_streams_get_heartbeats():
    hub = EventHub()

    async def run():
        stream = hub.subscribe(heartbeat=0.05)
        beat = await stream.__anext__()
        await stream.aclose()
        return beat

    assert asyncio.run(run()) is None
