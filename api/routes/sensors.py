"""Sensor observations: ingest (JSON and SensorThings), latest values, history, counters."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from api.auth import require_read, require_write
from api.deps import Services, json_response, services
from layers.errors import BadObservation
from layers.sensors import format_time, parse_time
from twin.query import BadQuery
from twin.sensors import latest_readings, parse_bucket

router = APIRouter(tags=["Sensors"])

SensorId = Annotated[str, Path(description="A sensor's sensor_id, e.g. S-0001.")]


def _single(body: bytes) -> bool:
    return not body.lstrip().startswith(b"[")


@router.post("/sensors/observations", summary="Post observations", dependencies=[Depends(require_write)],
             responses={200: {"description": "A batch: what was stored, duplicated, late or rejected (and why)."},
                        201: {"description": "One observation, stored (or already held)."},
                        400: {"description": "Not JSON, or the one observation was rejected."}})
async def post_observations(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """One observation `{sensor_id, time, value, quality?}` or a JSON array of them."""
    body = await request.body()
    report = await run_in_threadpool(svc.sensors.ingest_payload, body, source="http")
    if report.rejected.get("invalid_json") or (_single(body) and report.rejected_total):
        return JSONResponse(report.to_dict(), status_code=400)
    return JSONResponse(report.to_dict(), status_code=201 if _single(body) else 200)


@router.post("/v1.1/Datastreams({datastream_id})/Observations", tags=["SensorThings"],
             summary="Post an Observation (OGC SensorThings API 1.1)", dependencies=[Depends(require_write)],
             status_code=201)
async def post_sensorthings_observation(
    datastream_id: Annotated[str, Path(description="The Datastream: a sensor_id, quoted ('S-0001') or bare.")],
    request: Request, svc: Annotated[Services, Depends(services)],
) -> Response:
    """A SensorThings Observation `{phenomenonTime, result, resultQuality?}` of one sensor's Datastream."""
    sensor_id = datastream_id.strip().strip("'\"")
    svc.sensors.registry().info(sensor_id)  # 404 for a Datastream we do not have
    body = await request.body()
    report = await run_in_threadpool(svc.sensors.ingest_payload, body, sensor_id=sensor_id, source="sensorthings")
    if report.rejected_total or not _single(body):
        error = report.errors[0] if report.errors else {"reason": "not_an_object", "message": "post one Observation"}
        raise BadObservation("sensorthings", error["reason"], error["message"])
    location = f"{str(request.base_url).rstrip('/')}/v1.1/Datastreams('{sensor_id}')/Observations"
    return JSONResponse(report.to_dict(), status_code=201, headers={"Location": location})


@router.get("/sensors/latest", summary="The latest reading of every sensor", dependencies=[Depends(require_read)])
def latest(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Each sensor's latest reading, with its property, unit, pipe and status."""
    store = svc.view.city.store
    statuses = {uid: status for (_, uid), status in store.statuses().items()}  # as stored: no polling lag
    return json_response(request, {"sensors": latest_readings(store, svc.sensors.registry(), statuses)})


@router.get("/sensors/stats", summary="Ingest counters", dependencies=[Depends(require_read)])
def stats(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """How many observations were stored, duplicated, late or rejected (by reason), over the city's life."""
    return json_response(request, {"counts": svc.view.city.store.ingest_counts()})


@router.get("/sensors/{sensor_id}/observations", summary="A sensor's history", dependencies=[Depends(require_read)])
def observations(
    sensor_id: SensorId,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    start: Annotated[str | None, Query(description="From this time (ISO 8601, inclusive).")] = None,
    end: Annotated[str | None, Query(description="Until this time (ISO 8601, exclusive).")] = None,
    bucket: Annotated[str | None, Query(description="Downsample to min/mean/max per bucket: 30s, 5m, 1h, PT15M.")] = None,
    limit: Annotated[int, Query(ge=1, le=100_000, description="At most this many observations or buckets.")] = 10_000,
) -> Response:
    """Observations of one sensor in [start, end), oldest first, optionally per time bucket."""
    info = svc.sensors.registry().info(sensor_id)
    try:
        lo = parse_time(start) if start else None
        hi = parse_time(end) if end else None
        width = parse_bucket(bucket) if bucket else None
    except (BadObservation, ValueError) as exc:
        raise BadQuery(getattr(exc, "message", str(exc))) from None
    rows = svc.view.city.store.history(sensor_id, lo, hi, width, limit)
    if width:
        items = [{"time": format_time(r.time_ms), "min": r.min, "mean": r.mean, "max": r.max, "count": r.count}
                 for r in rows]
    else:
        items = [{"time": format_time(r.time_ms), "value": r.mean} for r in rows]
    return json_response(request, {"sensor_id": sensor_id, "property": info.property, "unit": info.unit,
                                   "bucket": bucket, "observations": items})
