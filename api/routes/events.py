"""Live status changes as Server-Sent Events, for the web page and any EventSource client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse

from api.deps import Services, services

router = APIRouter(tags=["Live status"])

HEARTBEAT_S = 15.0


async def _stream(svc: Services) -> AsyncIterator[bytes]:
    # the reconnect delay first, so a browser that loses us retries within two seconds
    yield b"retry: 2000\n: connected\n\n"
    async for event in svc.events.subscribe(heartbeat=HEARTBEAT_S):
        if event is None:
            yield b": keep-alive\n\n"
            continue
        data = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        head = f"id: {event['id']}\n" if "id" in event else ""
        yield f"{head}event: {event['type']}\ndata: {data}\n\n".encode("utf-8")


@router.get("/events", summary="Status changes as Server-Sent Events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: status` messages whose data is a JSON object "
                                            "{id, type, time, layer, uid, status, previous, ...}."}})
async def events(svc: Annotated[Services, Depends(services)]) -> StreamingResponse:
    """Every status change of a pipe, sensor or facility from now on, as it happens."""
    return StreamingResponse(_stream(svc), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
