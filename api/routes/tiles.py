"""OGC API - Tiles (vector, WebMercatorQuad), TileJSON 3.0, terrain tiles and 3D Tiles."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import FileResponse

from api.deps import Services, json_response, not_modified, services
from tiles.cache import CachedTile
from tiles.grid import TMS
from tiles.service import COMBINED
from tiles.terrain import TERRARIUM_DECODER
from twin.errors import UnknownLayer

router = APIRouter()

MVT = "application/vnd.mapbox-vector-tile"
Z = Annotated[int, Path(description="zoom level, 0..24")]
X = Annotated[int, Path(description="tile column")]
Y = Annotated[int, Path(description="tile row (from the north)")]


def _tile_response(request: Request, svc: Services, tile: CachedTile, media_type: str) -> Response:
    headers = {"ETag": tile.etag, "Cache-Control": f"public, max-age={svc.settings.tile_max_age}",
               "X-Tile-Cache": "hit" if tile.hit else "miss"}
    if not_modified(request, tile.etag):
        return Response(status_code=304, headers=headers)
    if not tile.data:
        return Response(status_code=204, headers=headers)
    headers["Vary"] = "Accept-Encoding"
    if media_type == MVT and len(tile.data) > 512 and "gzip" in request.headers.get("accept-encoding", ""):
        # compressed once per cached tile; the GZip middleware leaves encoded responses alone
        return Response(tile.gzipped, media_type=media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(tile.data, media_type=media_type, headers=headers)


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _vector_layers(svc: Services, names: list[str]) -> list[dict]:
    out = []
    for name in names:
        minzoom, maxzoom = svc.tiles.layer_zooms(name)
        record = svc.view.record(name)
        out.append({"id": name, "description": f"{record.kind} layer", "minzoom": minzoom, "maxzoom": maxzoom,
                    "fields": {}})
    return out


def _tilejson(request: Request, svc: Services, names: list[str], template: str, name: str) -> dict:
    records = [svc.view.record(n) for n in names]
    boxes = [r.bounds_wgs84 for r in records if r.bounds_wgs84]
    bounds = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
              max(b[3] for b in boxes)] if boxes else [-180, -85.05, 180, 85.05]
    layers = _vector_layers(svc, names)
    minzoom = min((layer["minzoom"] for layer in layers), default=0)
    return {
        "tilejson": "3.0.0", "name": name, "scheme": "xyz", "format": "pbf",
        "tiles": [template], "vector_layers": layers, "minzoom": minzoom, "maxzoom": 22,
        "bounds": bounds, "center": [(bounds[0] + bounds[2]) / 2, (bounds[1] + bounds[3]) / 2, max(minzoom, 15)],
    }


@router.get("/tileMatrixSets", tags=["OGC API - Tiles"], summary="Tiling schemes")
def tile_matrix_sets(request: Request) -> Response:
    """The one tiling scheme served: WebMercatorQuad."""
    base = _base(request)
    return json_response(request, {"tileMatrixSets": [{"id": "WebMercatorQuad", "title": "Google Maps compatible",
                                                       "links": [{"href": f"{base}/tileMatrixSets/WebMercatorQuad",
                                                                  "rel": "self", "type": "application/json"}]}]})


@router.get("/tileMatrixSets/WebMercatorQuad", tags=["OGC API - Tiles"], summary="WebMercatorQuad")
def web_mercator_quad(request: Request) -> Response:
    """The WebMercatorQuad tile matrix set (from morecantile)."""
    return json_response(request, TMS.model_dump(mode="json", exclude_none=True), max_age=86400)


def _tileset_list(request: Request, svc: Services, path: str, names: list[str], title: str) -> dict:
    base = _base(request)
    return {"tilesets": [{
        "title": title, "dataType": "vector", "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
        "links": [
            {"href": f"{base}{path}/WebMercatorQuad", "rel": "self", "type": "application/json"},
            {"href": f"{base}{path}/WebMercatorQuad/{{tileMatrix}}/{{tileRow}}/{{tileCol}}", "rel": "item",
             "type": MVT, "templated": True},
            {"href": f"{base}{path}/WebMercatorQuad/tilejson.json", "rel": "describedby", "type": "application/json",
             "title": "TileJSON 3.0"},
        ]}]}


def _tileset(request: Request, svc: Services, path: str, names: list[str], title: str) -> dict:
    base = _base(request)
    layers = _vector_layers(svc, names)
    return {
        "title": title, "dataType": "vector", "crs": "http://www.opengis.net/def/crs/EPSG/0/3857",
        "tileMatrixSetURI": "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad",
        "layers": [{"id": layer["id"], "dataType": "vector", "minTileMatrix": str(layer["minzoom"]),
                    "maxTileMatrix": str(layer["maxzoom"])} for layer in layers],
        "links": [
            {"href": f"{base}{path}/WebMercatorQuad/{{tileMatrix}}/{{tileRow}}/{{tileCol}}", "rel": "item",
             "type": MVT, "templated": True},
            {"href": f"{base}/tileMatrixSets/WebMercatorQuad",
             "rel": "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme", "type": "application/json"},
        ],
    }


# -- the combined tileset ----------------------------------------------------------------------

@router.get("/tiles", tags=["OGC API - Tiles"], summary="Vector tilesets of the whole city")
def city_tilesets(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """The tileset of all 2D layers together."""
    return json_response(request, _tileset_list(request, svc, "/tiles", svc.tiles.combined_layers(), "the city"))


@router.get("/tiles/WebMercatorQuad", tags=["OGC API - Tiles"], summary="The city tileset")
def city_tileset(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """The combined tileset's description."""
    return json_response(request, _tileset(request, svc, "/tiles", svc.tiles.combined_layers(), "the city"))


@router.get("/tiles/WebMercatorQuad/tilejson.json", tags=["OGC API - Tiles"], summary="TileJSON of the city")
def city_tilejson(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """TileJSON 3.0 of the combined tileset."""
    template = f"{_base(request)}/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}"
    return json_response(request, _tilejson(request, svc, svc.tiles.combined_layers(), template, COMBINED))


@router.get("/tiles/WebMercatorQuad/{z}/{y}/{x}", tags=["OGC API - Tiles"], summary="A tile of all 2D layers",
            response_class=Response, responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile"}})
def city_tile(z: Z, y: Y, x: X, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Mapbox Vector Tile 2.1 with a layer per city layer."""
    tile = svc.tiles.vector_tile(svc.tiles.combined_layers(), z, x, y, COMBINED)
    return _tile_response(request, svc, tile, MVT)


# -- one layer ---------------------------------------------------------------------------------

def _layer_name(svc: Services, collection_id: str) -> str:
    if collection_id not in {r.name for r in svc.view.vector_layers()}:
        raise UnknownLayer(f"no collection {collection_id!r}")
    return collection_id


@router.get("/collections/{collection_id}/tiles", tags=["OGC API - Tiles"], summary="A layer's tilesets")
def layer_tilesets(collection_id: str, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """The vector tileset of one layer."""
    name = _layer_name(svc, collection_id)
    return json_response(request, _tileset_list(request, svc, f"/collections/{name}/tiles", [name], name))


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad", tags=["OGC API - Tiles"], summary="A layer's tileset")
def layer_tileset(collection_id: str, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """One layer's tileset description."""
    name = _layer_name(svc, collection_id)
    return json_response(request, _tileset(request, svc, f"/collections/{name}/tiles", [name], name))


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad/tilejson.json", tags=["OGC API - Tiles"],
            summary="TileJSON of a layer")
def layer_tilejson(collection_id: str, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """TileJSON 3.0 of one layer."""
    name = _layer_name(svc, collection_id)
    template = f"{_base(request)}/collections/{quote(name)}/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}"
    return json_response(request, _tilejson(request, svc, [name], template, name))


@router.get("/collections/{collection_id}/tiles/WebMercatorQuad/{z}/{y}/{x}", tags=["OGC API - Tiles"],
            summary="A tile of one layer", response_class=Response,
            responses={200: {"content": {MVT: {}}}, 204: {"description": "empty tile"}})
def layer_tile(collection_id: str, z: Z, y: Y, x: X, request: Request,
               svc: Annotated[Services, Depends(services)]) -> Response:
    """Mapbox Vector Tile 2.1 of one layer."""
    name = _layer_name(svc, collection_id)
    tile = svc.tiles.vector_tile([name], z, x, y, f"layer/{name}")
    return _tile_response(request, svc, tile, MVT)


# -- terrain -------------------------------------------------------------------------------------

@router.get("/terrain/{z}/{x}/{y}.png", tags=["Terrain"], summary="Terrarium elevation tile", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, 404: {"description": "outside the DEM"}})
def terrain_tile(z: Z, x: X, y: Y, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Elevation as Terrarium RGB, for deck.gl's TerrainLayer (elevationDecoder in /terrain/tilejson.json)."""
    return _tile_response(request, svc, svc.tiles.terrain_tile("terrarium", z, x, y), "image/png")


@router.get("/terrain/hillshade/{z}/{x}/{y}.png", tags=["Terrain"], summary="Hillshade texture tile",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def hillshade_tile(z: Z, x: X, y: Y, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """A grey hillshade to drape over the terrain."""
    return _tile_response(request, svc, svc.tiles.terrain_tile("hillshade", z, x, y), "image/png")


@router.get("/terrain/tilejson.json", tags=["Terrain"], summary="TileJSON of the terrain")
def terrain_tilejson(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """Where the terrain tiles are and how to decode them."""
    name, _, _ = svc.tiles.dem()
    record = svc.view.record(name)
    base = _base(request)
    return json_response(request, {
        "tilejson": "3.0.0", "name": name, "scheme": "xyz", "format": "png", "encoding": "terrarium",
        "tiles": [f"{base}/terrain/{{z}}/{{x}}/{{y}}.png"], "hillshade": [f"{base}/terrain/hillshade/{{z}}/{{x}}/{{y}}.png"],
        "elevationDecoder": TERRARIUM_DECODER, "bounds": list(record.bounds_wgs84), "minzoom": 8, "maxzoom": 18,
    })


# -- 3D Tiles ------------------------------------------------------------------------------------

@router.get("/3dtiles/tileset.json", tags=["3D Tiles"], summary="3D Tiles 1.1 tileset of the BIM models")
def tileset(request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """One tile per BIM building or facility, its GLB placed by its transform."""
    return json_response(request, svc.tiles.tileset())


@router.get("/3dtiles/content/{uid}.glb", tags=["3D Tiles"], summary="A BIM model as GLB", response_class=FileResponse,
            responses={200: {"content": {"model/gltf-binary": {}}}})
def glb(uid: str, request: Request, svc: Annotated[Services, Depends(services)]) -> Response:
    """The GLB of one BIM building: a node per element, named by its GlobalId."""
    path = svc.tiles.glb_path(uid)
    etag = '"' + path.stem.rsplit("-", 1)[-1] + '"'
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={svc.settings.tile_max_age}"}
    if not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    return FileResponse(path, media_type="model/gltf-binary", headers=headers)
