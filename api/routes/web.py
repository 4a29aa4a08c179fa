"""The web view: the page at `/` for browsers, its assets, and the BIM element pick."""

from __future__ import annotations

import threading
from typing import Annotated

import geopandas as gpd
import pandas as pd
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse

from api.deps import Services, json_response, services
from api.view import PRESETS, page_html
from twin.bim import ELEMENT_LAYER, element_at
from twin.crs import WGS84, transformer
from twin.errors import UnknownLayer
from twin.query import CRS84, BadQuery, feature
from twin.snapshots import CityView

router = APIRouter(tags=["Web view"])

_pages: dict[tuple, str] = {}
_pages_lock = threading.Lock()


def wants_html(request: Request) -> bool:
    """True when the client asked for the page (`?f=html`, or a browser's Accept) rather than JSON."""
    asked = request.query_params.get("f")
    if asked:
        return asked == "html"
    accept = request.headers.get("accept", "")
    return "text/html" in accept


def page_response(request: Request, svc: Services) -> Response:
    """The web view of the city, built once per catalogue state."""
    preset = request.query_params.get("preset", "planning")
    if preset not in PRESETS:
        raise BadQuery(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")
    return HTMLResponse(cached_page(svc.view, preset), headers={"Cache-Control": "no-cache"})


def cached_page(view: CityView, preset: str) -> str:
    """The page of `preset` for the city's current layer versions (the server's warm-up makes it
    before the first visitor asks)."""
    key = (preset, tuple(sorted((name, r.version) for name, r in view.records().items())))
    with _pages_lock:
        page = _pages.get(key)
    if page is None:
        page = page_html(view.city, preset)
        with _pages_lock:
            if len(_pages) > 16:
                _pages.clear()
            _pages[key] = page
    return page


@router.get("/bim/pick", summary="The BIM element at a 3D point", response_class=Response)
def pick_element(
    request: Request,
    svc: Annotated[Services, Depends(services)],
    lon: Annotated[float, Query(ge=-180, le=180, description="Longitude of the point (degrees)")],
    lat: Annotated[float, Query(ge=-90, le=90, description="Latitude of the point (degrees)")],
    z: Annotated[float, Query(ge=-11_000, le=9_000, description="Height of the point (metres, the city's heights)")],
    tolerance: Annotated[float, Query(gt=0, le=5, description="How far from an element's surface (metres)")] = 0.5,
) -> Response:
    """The element whose surface is at (lon, lat, z), as a feature of `bim-elements` with its
    GlobalId, class, storey and property sets: what a click on a BIM model in the 3D view picks."""
    models = [svc.view.snapshot(r.name).frame for r in svc.view.vector_layers() if r.kind in ("bim", "facility")]
    if not models:
        raise UnknownLayer("this city has no BIM models")
    frame = gpd.GeoDataFrame(pd.concat(models, ignore_index=True), crs=models[0].crs)
    x, y = transformer(WGS84, frame.crs).transform(lon, lat)
    global_id = element_at(svc.view.city.root, frame, x, y, z, tolerance)
    if global_id is None:
        raise UnknownLayer(f"no BIM element within {tolerance} m of ({lon}, {lat}, {z})")
    found = feature(svc.view.snapshot(ELEMENT_LAYER), f"{ELEMENT_LAYER}.{global_id}", CRS84)
    if found is None:
        raise UnknownLayer(f"element {global_id} is in a model but not in the element table")
    return json_response(request, found, media_type="application/geo+json")
