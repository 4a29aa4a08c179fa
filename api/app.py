"""The FastAPI app serving one city: OGC API Features and Tiles, terrain, 3D Tiles.

`create_app(root)` builds it; `serve(root, ...)` runs it with uvicorn (several worker
processes with `workers`, each reading the same city; caches stay coherent through the
store's change log).
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.assets import StaticAssets
from api.auth import Tokens, Unauthorized, require_read
from api.deps import Services
from api.routes import events, features, health, indicators, sensors, tiles, web
from api.settings import ApiSettings
from api.view import PAGE_ASSETS, PIPE_SIMPLIFY_M, PRESETS, WEB_ROOT
from tiles.grid import TileOutOfRange
from tiles.service import TileService
from tiles.terrain import NoTerrain
from twin.crs import coordinate_transformer
from twin.errors import BadObservation, NotACity, StoreError, UnknownLayer, UnknownSensor
from twin.indicators import MissingLayer
from twin.events import EventHub
from twin.live import CityRegistry, LiveStatus
from twin.notify import follow_notices
from twin.query import CRS84, BadQuery, select_simplified
from twin.sensors import SensorMonitor, Thresholds
from twin.snapshots import CityView

__all__ = ["create_app", "app_from_env", "serve"]

log = logging.getLogger("twin.api")

# Domain errors and the status a client gets for them: the one place HTTP meets the model.
ERROR_STATUS: dict[type[Exception], int] = {
    BadQuery: 400,
    TileOutOfRange: 400,
    BadObservation: 400,
    Unauthorized: 401,
    UnknownLayer: 404,
    UnknownSensor: 404,
    NoTerrain: 404,
    MissingLayer: 404,
    StoreError: 503,  # the database is down or refuses: the request may succeed later
}


def _problem(status: int, title: str, detail: str) -> JSONResponse:
    return JSONResponse({"code": title, "description": detail}, status_code=status)


def create_app(root: str | Path | None = None, settings: ApiSettings | None = None) -> FastAPI:
    """The API for the city in folder `root` (default: settings.city, i.e. TWIN_CITY)."""
    settings = settings or ApiSettings()
    root = Path(root or settings.city or "")
    if not (root / "city.json").is_file():
        raise NotACity(f"{root} is not a city workspace; create one with `twin init`")
    view = CityView(root, ttl=settings.catalogue_ttl, notified_ttl=settings.notified_refresh_s)
    cache_dir = root / "cache" / "tiles" if settings.disk_cache else None
    hub = EventHub()
    registry = CityRegistry(view.records, lambda name: view.base_snapshot(name).frame, settings.sensor_snap_m)
    live = LiveStatus(view.city.store, publish=hub.publish, poll_s=settings.status_poll_s,
                      notified_poll_s=settings.notified_refresh_s)
    view.live, view.registry = live, registry
    listener = follow_notices(view, live) if settings.listen else None
    monitor = SensorMonitor(view.city.store, registry, Thresholds.load(settings.thresholds_file),
                            max_future_ms=int(settings.max_future_s * 1000))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # load every layer (and its Web Mercator copy) before the first user waits for it
        threading.Thread(target=_warm, args=(view, assets), daemon=True, name="twin-warm-up").start()
        stop = threading.Event()
        live.start()
        if listener is not None:
            listener.start()
        threading.Thread(target=_every, args=(settings.sweep_s, monitor.sweep, stop), daemon=True,
                         name="twin-staleness").start()
        feeds = _start_feeds(settings, monitor, view)
        try:
            yield
        finally:
            stop.set()
            for feed in feeds:
                feed.stop()
            if listener is not None:
                listener.stop()
            live.stop()

    assets = StaticAssets(directory=WEB_ROOT)

    app = FastAPI(title=f"twin: {view.city.name}", version="0.1.0", lifespan=lifespan,
                  description="A city information model: GIS layers, BIM models and terrain, served as "
                              "OGC API - Features and Tiles, Mapbox Vector Tiles, terrain tiles and 3D Tiles.")
    app.state.services = Services(settings, view, TileService(view, cache_dir, settings.tile_cache_items),
                                  hub, monitor, live, listener)
    app.state.tokens = Tokens(settings)

    for error, status in ERROR_STATUS.items():
        app.add_exception_handler(error, lambda request, exc, status=status: _problem(
            status, type(exc).__name__, str(exc)))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return _problem(400, "InvalidParameter", details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _problem(exc.status_code, "NotFound" if exc.status_code == 404 else "HTTPError", str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url)
        return _problem(500, "InternalError", f"{type(exc).__name__}: {exc}")

    app.add_middleware(GZipMiddleware, minimum_size=512)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST"], allow_headers=["*"],
                       expose_headers=["ETag", "Content-Crs"])
    reads = [Depends(require_read)]
    app.include_router(features.router, dependencies=reads)
    app.include_router(tiles.router, dependencies=reads)
    app.include_router(events.router, dependencies=reads)
    app.include_router(sensors.router)
    app.include_router(indicators.router, dependencies=reads)
    app.include_router(web.router, dependencies=reads)
    app.include_router(health.router)
    app.mount("/static", assets, name="static")
    return app


def _city_key(view: CityView) -> str:
    import hashlib

    return hashlib.blake2b(str(view.city.root.resolve()).encode(), digest_size=4).hexdigest()


def _every(seconds: float, action, stop: threading.Event) -> None:
    """Call `action` every `seconds` until `stop` is set, logging (not dying of) its failures."""
    while not stop.wait(seconds):
        try:
            action()
        except Exception:
            log.warning("%s failed", getattr(action, "__qualname__", action), exc_info=True)


def _start_feeds(settings: ApiSettings, monitor: SensorMonitor, view: CityView) -> list:
    """The observation feeds the settings ask for: an MQTT subscription, the in-process simulator."""
    feeds = []
    if settings.mqtt_url:
        from layers.mqtt import ObservationSubscriber

        # one persistent session per city and worker; with several workers a shared
        # subscription splits the stream between them instead of giving each all of it. One
        # worker subscribes plainly: over a restart of Mosquitto 2.0.11 (Debian 12) the tests
        # lost what arrived for a shared subscription before we reconnected (2 runs in 6),
        # and never with a plain one, which the broker keeps queuing for us.
        shared = settings.workers > 1
        client_id = f"twin-{_city_key(view)}" + (f"-{os.getpid()}" if shared else "")
        feeds.append(ObservationSubscriber(
            settings.mqtt_url, lambda rows, rejected: monitor.ingest(rows, rejected, source="mqtt"),
            client_id=client_id, shared=shared,
            max_future_ms=int(settings.max_future_s * 1000)).start())
    if settings.simulate_rate > 0:
        from twin.simulate import Simulator

        feeds.append(Simulator.for_city(view.city, monitor.registry, rate=settings.simulate_rate)
                     .start(monitor.ingest))
    return feeds


def _warm(view: CityView, assets: StaticAssets) -> None:
    """Get ready for the first visitor, the web view's first frame first: its scripts compressed,
    the reprojection of the pipes it asks for to CRS84 made (most of a second), its pages made,
    the pipes simplified; then every vector layer read into memory with its tile geometry."""
    try:
        assets.prepare(PAGE_ASSETS)
        pipes = [view.snapshot(r.name) for r in view.vector_layers() if r.kind == "pipe"]  # asked for first
        for snapshot in pipes:
            coordinate_transformer(snapshot.frame.crs, CRS84)
        for preset in PRESETS:
            web.cached_page(view, preset)
        for snapshot in pipes:
            select_simplified(snapshot, PIPE_SIMPLIFY_M)
    except Exception:
        log.warning("could not prepare the web view", exc_info=True)
    for record in view.vector_layers():
        try:
            view.snapshot(record.name).mercator()
        except Exception:  # a layer that fails here fails with a clear error on request
            log.warning("could not preload layer %s", record.name, exc_info=True)


def app_from_env() -> FastAPI:
    """App factory for uvicorn workers: the city comes from TWIN_CITY."""
    return create_app()


def serve(root: str | Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          mqtt: str | None = None, simulate_rate: float = 0.0) -> None:
    """Run the API with uvicorn on host:port (subscribed to `mqtt`, simulating readings if asked)."""
    import uvicorn

    root = Path(root).resolve()
    if workers > 1:
        os.environ["TWIN_CITY"] = str(root)
        os.environ["TWIN_WORKERS"] = str(workers)
        if mqtt:
            os.environ["TWIN_MQTT_URL"] = mqtt
        if simulate_rate:
            os.environ["TWIN_SIMULATE_RATE"] = str(simulate_rate)
        uvicorn.run("api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")
    else:
        overrides = {k: v for k, v in (("mqtt_url", mqtt), ("simulate_rate", simulate_rate)) if v}
        uvicorn.run(create_app(root, ApiSettings(**overrides)), host=host, port=port, log_level="warning")
