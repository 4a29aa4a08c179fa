"""OGC API - Features (Part 1 core, GeoJSON; Part 2 CRS): landing page, conformance, collections, items."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pyproj import CRS

from api.deps import Services, json_response, services
from api.routes.web import page_response, wants_html
from twin.crs import CGCS2000, WGS84
from twin.errors import UnknownLayer
from twin.query import (
    CRS84,
    CRS84_URI,
    BadQuery,
    FeatureQuery,
    crs_uri,
    feature,
    feature_collection,
    parse_bbox,
    parse_crs_uri,
    parse_datetime,
    select,
    time_column,
)

router = APIRouter(tags=["OGC API - Features"])

GEOJSON = "application/geo+json"
CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/dataset-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/png",
]
RESERVED = {"bbox", "bbox-crs", "crs", "limit", "offset", "datetime", "f", "access_token", "simplify"}


def offered_crs(svc: Services) -> list[CRS]:
    """The CRSs items can be asked in: CRS84, EPSG:4326, EPSG:4490 and the city's own."""
    return [CRS84, WGS84, CGCS2000, svc.view.city.crs]


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/", summary="Landing page", response_class=Response)
def landing(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Links to everything this server offers about the city; the web view for a browser."""
    if wants_html(request):
        return page_response(request, svc)
    base = _base(request)
    city = svc.view.city
    return json_response(request, {
        "title": f"twin: {city.name}",
        "description": f"City information model of {city.name} ({city.crs.to_string()}): GIS layers, BIM models, "
                       f"terrain, as OGC API Features and Tiles, 3D Tiles and terrain tiles.",
        "links": [
            {"href": f"{base}/", "rel": "self", "type": "application/json", "title": "this document"},
            {"href": f"{base}/?f=html", "rel": "alternate", "type": "text/html", "title": "the 3D web view"},
            {"href": f"{base}/openapi.json", "rel": "service-desc",
             "type": "application/vnd.oai.openapi+json;version=3.1", "title": "the API definition"},
            {"href": f"{base}/docs", "rel": "service-doc", "type": "text/html", "title": "the API documentation"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json", "title": "the layers"},
            {"href": f"{base}/tiles", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
             "type": "application/json", "title": "vector tiles of all 2D layers"},
            {"href": f"{base}/tileMatrixSets", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes",
             "type": "application/json"},
            {"href": f"{base}/3dtiles/tileset.json", "rel": "item", "type": "application/json",
             "title": "3D Tiles 1.1 of the BIM models"},
            {"href": f"{base}/indicators", "rel": "related", "type": "application/json",
             "title": "smart-city coverage indicators against their targets"},
            {"href": f"{base}/indicators?f=html", "rel": "related", "type": "text/html",
             "title": "the coverage report, with maps"},
        ],
    })


@router.get("/conformance", summary="Conformance classes")
def conformance(request: Request) -> Response:
    """The standards' conformance classes this server implements."""
    return json_response(request, {"conformsTo": CONFORMANCE})


def _collection(request: Request, svc: Services, name: str) -> dict:
    record = svc.view.record(name)
    base = _base(request)
    minzoom, maxzoom = svc.tiles.layer_zooms(name)
    links = [
        {"href": f"{base}/collections/{name}", "rel": "self", "type": "application/json"},
        {"href": f"{base}/collections/{name}/items", "rel": "items", "type": GEOJSON, "title": "the features"},
        {"href": f"{base}/collections/{name}/tiles", "rel": "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
         "type": "application/json", "title": "vector tiles"},
    ]
    body = {
        "id": name,
        "title": name,
        "description": f"{record.kind} layer: {record.feature_count} features"
                       + (f", from {record.source.rsplit('/', 1)[-1]}" if record.source else ""),
        "itemType": "feature",
        "kind": record.kind,
        "itemCount": record.feature_count,
        "version": record.version,
        "updated": record.updated,
        "extent": {"spatial": {"bbox": [list(record.bounds_wgs84)] if record.bounds_wgs84 else [], "crs": CRS84_URI}},
        "crs": [crs_uri(c) for c in offered_crs(svc)],
        "storageCrs": crs_uri(svc.view.city.crs),
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "links": links,
    }
    return body


@router.get("/collections", summary="The city's layers")
def collections(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Every vector layer of the city as a collection, with its extent and item count."""
    base = _base(request)
    items = [_collection(request, svc, r.name) for r in sorted(svc.view.vector_layers(), key=lambda r: r.name)]
    return json_response(request, {
        "collections": items,
        "crs": [crs_uri(c) for c in offered_crs(svc)],
        "links": [{"href": f"{base}/collections", "rel": "self", "type": "application/json"}],
    })


CollectionId = Annotated[str, Path(description="A layer of the city, e.g. pipe, building, bim-elements.")]


@router.get("/collections/{collection_id}", summary="One layer")
def collection(collection_id: CollectionId, request: Request,
               svc: Annotated[Services, Depends(services)]) -> Response:
    """A layer's description: extent, item count, CRSs, zoom range, links."""
    if collection_id not in {r.name for r in svc.view.vector_layers()}:
        raise UnknownLayer(f"no collection {collection_id!r}")
    return json_response(request, _collection(request, svc, collection_id))


@router.get("/collections/{collection_id}/items", summary="Features of a layer", response_class=Response)
def items(
    collection_id: CollectionId,
    request: Request,
    svc: Annotated[Services, Depends(services)],
    bbox: Annotated[str | None, Query(description="minx,miny,maxx,maxy in bbox-crs (default CRS84: lon,lat)")] = None,
    bbox_crs: Annotated[str | None, Query(alias="bbox-crs", description="CRS of bbox (a URI)")] = None,
    crs: Annotated[str | None, Query(description="CRS of the response geometries (a URI); default CRS84")] = None,
    limit: Annotated[str | None, Query(description="features per page, 1..max (default 100)")] = None,
    offset: Annotated[str | None, Query(description="features to skip (for paging; follow the next link)")] = None,
    datetime_: Annotated[str | None, Query(alias="datetime", description="instant or interval (a/b, ../b, a/..)")] = None,
    simplify: Annotated[float | None, Query(ge=0, le=1000, description="metres: leave out vertices closer than "
                                            "this to the line (in 3D for lines with heights), for maps")] = None,
) -> Response:
    """Features with bbox, property filters (e.g. ?utility=gas), datetime, paging, CRS and simplification."""
    settings = svc.settings
    snapshot = svc.view.snapshot(collection_id)
    offered = offered_crs(svc)
    target = parse_crs_uri(crs, offered) if crs else CRS84
    query = FeatureQuery(limit=_int_param("limit", limit, settings.default_limit, 1, settings.max_limit),
                         offset=_int_param("offset", offset, 0, 0, 10**12), simplify=simplify)
    if bbox is not None:
        query.bbox = parse_bbox(bbox, parse_crs_uri(bbox_crs, offered) if bbox_crs else CRS84, svc.view.city.crs)
    elif bbox_crs is not None:
        raise BadQuery("bbox-crs was given without a bbox")
    if datetime_ is not None:
        query.datetime = parse_datetime(datetime_)
    query.filters = {k: v for k, v in request.query_params.items() if k not in RESERVED}
    positions = select(snapshot, query)
    features, matched = feature_collection(snapshot, positions, query, target)
    base = _base(request)
    here = f"{base}/collections/{collection_id}/items"
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "offset"]
    links = [{"href": f"{here}?{urlencode(request.query_params.multi_items())}" if request.query_params else here,
              "rel": "self", "type": GEOJSON},
             {"href": f"{base}/collections/{collection_id}", "rel": "collection", "type": "application/json"}]
    if query.offset + len(features) < matched:
        links.append({"href": f"{here}?{urlencode(params + [('offset', query.offset + query.limit)])}",
                      "rel": "next", "type": GEOJSON})
    if query.offset > 0:
        links.append({"href": f"{here}?{urlencode(params + [('offset', max(0, query.offset - query.limit))])}",
                      "rel": "prev", "type": GEOJSON})
    body = {"type": "FeatureCollection", "features": features, "numberMatched": matched,
            "numberReturned": len(features), "timeStamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "links": links}
    return json_response(request, body, media_type=GEOJSON, headers={"Content-Crs": f"<{crs_uri(target)}>"})


@router.get("/collections/{collection_id}/items/{feature_id}", summary="One feature", response_class=Response)
def item(
    collection_id: CollectionId,
    feature_id: Annotated[str, Path(description="The feature's uid, e.g. pipe.JS-0001")],
    request: Request,
    svc: Annotated[Services, Depends(services)],
    crs: Annotated[str | None, Query(description="CRS of the geometry (a URI); default CRS84")] = None,
) -> Response:
    """One feature with all its properties (a BIM element's property sets included)."""
    snapshot = svc.view.snapshot(collection_id)
    target = parse_crs_uri(crs, offered_crs(svc)) if crs else CRS84
    found = feature(snapshot, feature_id, target)
    if found is None:
        raise UnknownLayer(f"no feature {feature_id!r} in collection {collection_id!r}")
    base = _base(request)
    found["links"] = [
        {"href": f"{base}/collections/{collection_id}/items/{feature_id}", "rel": "self", "type": GEOJSON},
        {"href": f"{base}/collections/{collection_id}", "rel": "collection", "type": "application/json"},
    ]
    if isinstance(found["properties"].get("glb"), str):
        found["links"].append({"href": f"{base}/3dtiles/content/{feature_id}.glb", "rel": "enclosure",
                               "type": "model/gltf-binary", "title": "the BIM model"})
    return json_response(request, found, media_type=GEOJSON, headers={"Content-Crs": f"<{crs_uri(target)}>"})


def _int_param(name: str, value: str | None, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadQuery(f"{name} {value!r} is not a whole number") from None
    if not lo <= number <= hi:
        raise BadQuery(f"{name} {number} is outside {lo}..{hi}")
    return number


__all__ = ["router", "CONFORMANCE", "offered_crs", "time_column"]
