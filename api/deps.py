"""What every route needs: the city's services, and responses with validators."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request, Response

from api.settings import ApiSettings
from tiles.service import TileService
from twin.events import EventHub
from twin.snapshots import CityView

if TYPE_CHECKING:
    from twin.live import LiveStatus
    from twin.notify import Listener
    from twin.sensors import SensorMonitor

__all__ = ["Services", "services", "json_response", "not_modified"]


@dataclass
class Services:
    """The city and its tile service, shared by all requests of a process."""

    settings: ApiSettings
    view: CityView
    tiles: TileService
    events: EventHub
    sensors: SensorMonitor | None = None
    live: LiveStatus | None = None
    listener: Listener | None = None  # change notices from the store, where it sends them


def services(request: Request) -> Services:
    """The app's services (a FastAPI dependency)."""
    return request.app.state.services


def not_modified(request: Request, etag: str) -> bool:
    """True if the client already holds the representation with this ETag."""
    match = request.headers.get("if-none-match")
    return match is not None and (match.strip() == "*" or etag in [m.strip() for m in match.split(",")])


def json_response(request: Request, body: dict | list, media_type: str = "application/json",
                  headers: dict[str, str] | None = None, max_age: int = 0) -> Response:
    """JSON with an ETag (and 304 when the client has it).

    A top-level `timeStamp` (OGC API Features' response time) is left out of the ETag, so
    the same features a second later are still the same representation.
    """
    stamp = body.get("timeStamp") if isinstance(body, dict) else None
    content = {key: value for key, value in body.items() if key != "timeStamp"} if stamp is not None else body
    data = json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    if stamp is not None:
        data = data[:-1] + (b',' if len(data) > 2 else b'') + b'"timeStamp":' + json.dumps(stamp).encode() + b'}'
    all_headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}" if max_age else "no-cache",
                   **(headers or {})}
    if not_modified(request, etag):
        return Response(status_code=304, headers=all_headers)
    return Response(data, media_type=media_type, headers=all_headers)
