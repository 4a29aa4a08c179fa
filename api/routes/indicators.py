"""Smart-city coverage indicators: values against targets, per district, with maps and a report.

The same computation as `twin coverage`, over the layers the server already holds in memory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path as FilePath
from typing import Annotated

import geopandas as gpd
import pandas as pd
import shapely
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from api.deps import Services, json_response, services
from twin.indicators import (INDICATORS, IndicatorResult, ModelData, Options, compute, compute_all, load_targets,
                             parse_at, parse_scales, parse_window)
from twin.query import BadQuery

router = APIRouter(tags=["Indicators"])

IndicatorId = Annotated[str, Path(description=f"One of: {', '.join(INDICATORS)}.")]
By = Annotated[str | None, Query(description="`district`: also one result per district.")]
At = Annotated[str | None, Query(description="Judge monitoring at this ISO 8601 time (default: now).")]
Window = Annotated[str | None, Query(description="Monitoring window before `at` (24h, 30min, 7d) or `none` "
                                                 "to count installed sensors; default from indicators.toml.")]
Scales = Annotated[str | None, Query(description="Map sheet scales that count, e.g. 500,1000,2000.")]


def model_data(svc: Services) -> ModelData:
    """The model's layers by kind, from the server's in-memory snapshots."""
    by_kind: dict[str, list[str]] = {}
    for record in svc.view.records().values():
        if record.kind != "dem":
            by_kind.setdefault(record.kind, []).append(record.name)
    city = svc.view.city

    def loader(names: list[str]):
        def load() -> gpd.GeoDataFrame:
            frames = [svc.view.base_snapshot(n).frame for n in names]
            return frames[0] if len(frames) == 1 else gpd.GeoDataFrame(pd.concat(frames, ignore_index=True),
                                                                         crs=city.crs)
        return load

    # the server's sensor registry already links sensors to pipes (rebuilt when their layers change)
    return ModelData(city.crs, {k: loader(v) for k, v in by_kind.items()}, city.store.reporting_sensors,
                     snap_m=svc.settings.sensor_snap_m, registry=getattr(svc.view, "registry", None))


def _options(by: str | None, at: str | None, window: str | None, scales: str | None,
             explain: bool = True) -> Options:
    if by not in (None, "district"):
        raise BadQuery(f"cannot group by {by!r}: use by=district")
    try:
        return Options(at_ms=parse_at(at), window_ms=-1 if window is None else parse_window(window),
                       scales=parse_scales(scales), explain=explain)
    except ValueError as exc:
        raise BadQuery(str(exc)) from None


def _unknown(indicator: str) -> None:
    if indicator not in INDICATORS:
        from twin.errors import UnknownLayer

        raise UnknownLayer(f"no indicator {indicator!r}; known: {', '.join(INDICATORS)}")


def _districts(data: ModelData):
    return shapely.GeometryCollection(list(data.geoms("district", "maps"))) if data.has("district") else None


@router.get("/indicators", summary="All indicators")
async def indicators(request: Request, svc: Annotated[Services, Depends(services)], by: By = None, at: At = None,
                     window: Window = None, scales: Scales = None,
                     f: Annotated[str | None, Query(description="`json` (default) or `html` (the report page).")] = None
                     ) -> Response:
    """Every indicator the model has data for: value, target, met, stars (and per district with by=district)."""
    html = f == "html" or (f is None and "text/html" in request.headers.get("accept", "").split(",")[0])
    options = _options(by, at, window, scales, explain=html)
    data = model_data(svc)
    targets = load_targets(svc.view.city.root)
    skipped: list[str] = []
    results = await run_in_threadpool(compute_all, data, None, by_district=by == "district", options=options,
                                      targets=targets, skipped=skipped)
    if html:
        return HTMLResponse(await run_in_threadpool(_report, results, svc.view.city.name, _districts(data), skipped))
    body = [r.to_dict(geometry=False) for r in results]
    return json_response(request, body, headers={"X-Not-Computed": str(len(skipped))})


def _report(results: list[IndicatorResult], city: str, districts, skipped: list[str]) -> str:
    from twin.indicator_maps import write_report

    with tempfile.TemporaryDirectory() as tmp:
        path = write_report(results, FilePath(tmp) / "report.html", city=city, districts=districts, skipped=skipped)
        return path.read_text(encoding="utf-8")


@router.get("/indicators/{indicator}", summary="One indicator")
async def indicator(request: Request, svc: Annotated[Services, Depends(services)], indicator: IndicatorId,
                    by: By = None, at: At = None, window: Window = None, scales: Scales = None,
                    geometry: Annotated[bool, Query(description="Include the uncovered parts as GeoJSON.")] = True
                    ) -> Response:
    """One indicator with its explanation: the gap's items and, for area indicators, the uncovered parts."""
    _unknown(indicator)
    options = _options(by, at, window, scales)
    data = model_data(svc)
    result = await run_in_threadpool(compute, indicator, data, by_district=by == "district", options=options,
                                     targets=load_targets(svc.view.city.root))
    return json_response(request, result.to_dict(data.crs, geometry=geometry))


@router.get("/indicators/{indicator}/map.png", summary="One indicator's map", response_class=Response,
            responses={200: {"content": {"image/png": {}}}})
async def indicator_map(svc: Annotated[Services, Depends(services)], indicator: IndicatorId, at: At = None,
                        window: Window = None, scales: Scales = None) -> Response:
    """The measured area, its covered and uncovered parts, a legend and a scale bar."""
    from twin.indicator_maps import map_png

    _unknown(indicator)
    options = _options(None, at, window, scales)
    data = model_data(svc)

    def draw() -> bytes:
        result = compute(indicator, data, options=options, targets=load_targets(svc.view.city.root))
        return map_png(result, _districts(data))

    return Response(await run_in_threadpool(draw), media_type="image/png", headers={"Cache-Control": "no-cache"})
