"""The web view of a city: a pydeck `Deck` per preset, rendered into our own page.

Two presets look at the same model: *planning* (the 3D district: terrain, extruded GIS
buildings, BIM models; pipes faint) and *utility* (pipes coloured by monitoring status and
sensors first; the ground translucent, buildings muted). Each preset is a pydeck `Deck`
whose JSON the page turns into deck.gl layers with deck.gl's JSON converter; the few
accessors that JSON cannot say (colour by utility or status, points on the ground) are
named functions of the page's script (`api/web/app.js`), called with `@@function`.

The page is served by the API (`page_html(city)`, data from tiles and feature URLs) or
exported as one file (`export_html`, data inlined) that opens with no server and no
network. Either way every script and style comes from `api/web/`: deck.gl is vendored
there by `scripts/vendor-web.sh`, so no CDN is ever asked.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np
import pydeck as pdk
import shapely
from pyproj import CRS

from layers.kinds import UTILITIES
from tiles.terrain import terrain_mosaic
from tiles.tiles3d import tileset
from twin.errors import TwinError
from twin.events import STATUSES
from twin.snapshots import LayerSnapshot
from twin.crs import WGS84, transformer
from twin.workspace import City

__all__ = ["PRESETS", "WEB_ROOT", "VENDOR_SCRIPTS", "PAGE_ASSETS", "ExportTooLarge", "city_decks", "page_html", "export_html"]

WEB_ROOT = Path(__file__).parent / "web"
VENDOR_SCRIPTS = ("vendor/deck.gl-9.2.11.min.js", "vendor/deck.gl-json-9.2.11.min.js")
PAGE_SCRIPTS = ("app.js",)
# loaders.gl parses vector tiles and terrain in web workers, by default fetched from unpkg
WORKERS = {"mvt": "vendor/loaders.gl/mvt@4.3.4/dist/mvt-worker.js",
           "terrain": "vendor/loaders.gl/terrain@4.3.4/dist/terrain-worker.js"}
PAGE_STYLES = ("style.css",)
PAGE_ASSETS = [*VENDOR_SCRIPTS, *PAGE_SCRIPTS, *PAGE_STYLES, *WORKERS.values()]
PRESETS = ("planning", "utility")
# deck.gl's JSON bundle replaces the `deck` global with its own exports: keep the core's
_KEEP_CORE = "<script>window.deckCore = window.deck;</script>"

UTILITY_COLOURS: dict[str, list[int]] = {
    "water": [30, 136, 229], "storm": [0, 172, 193], "sewage": [121, 85, 72], "combined": [233, 30, 99],
    "gas": [255, 193, 7], "heat": [244, 81, 30], "power": [142, 36, 170], "telecom": [67, 160, 71],
}
STATUS_COLOURS: dict[str, list[int]] = {
    "normal": [46, 204, 113], "warning": [255, 159, 28], "alarm": [231, 29, 54], "no_data": [140, 150, 160],
}
FACILITY_COLOURS: dict[str, list[int]] = {
    "manhole": [120, 110, 100], "lamp": [255, 235, 120], "camera": [80, 200, 255],
    "weather_station": [0, 230, 160], "base_station": [255, 120, 200],
}
BUILDING_COLOUR = [226, 214, 190]
BIM_COLOUR = [255, 140, 60]  # the legend's colour for BIM models (their own materials draw them)
TERRARIUM = {"rScaler": 256, "gScaler": 1, "bScaler": 1 / 256, "offset": -32768}
# Facility layers drawn as points, and the kinds they may be; sensors are drawn on their own.
FACILITY_KINDS = ("manhole", "lamp", "camera", "weather_station", "base_station")
EXPORT_LIMIT_BYTES = 40_000_000
# Pipes are draped on the DEM vertex by vertex; a quarter metre off in 3D is invisible on a
# map and leaves a fraction of the vertices for the browser to draw every frame.
PIPE_SIMPLIFY_M = 0.25
# pydeck makes every other string argument of a layer an expression (`"@@=pixels"`, which deck.gl
# reads as a function): a unit named so would not be a unit. Pipes 4 m wide in the wrong units
# cost a software GPU seconds a frame.
PIXELS = pdk.types.String("pixels")


class ExportTooLarge(TwinError):
    """The city is too big to inline in one HTML file."""


def _layer_of_kind(city: City, kind: str) -> str | None:
    records = city.layers_of_kind(kind)
    return records[0].name if records else None


def _extent(city: City) -> tuple[float, float, float, float]:
    boxes = [r.bounds_wgs84 for r in city.layers() if r.bounds_wgs84 and r.kind not in ("planning_area", "map_sheet")]
    if not boxes:
        return (116.39, 39.9, 116.41, 39.92)
    b = np.array(boxes)
    return float(b[:, 0].min()), float(b[:, 1].min()), float(b[:, 2].max()), float(b[:, 3].max())


def _view_state(city: City, preset: str) -> pdk.ViewState:
    west, south, east, north = _extent(city)
    span = max(east - west, (north - south) / np.cos(np.radians((south + north) / 2)), 1e-4)
    zoom = float(np.clip(np.log2(360 / span) + 0.6, 10, 18))
    return pdk.ViewState(longitude=(west + east) / 2, latitude=(south + north) / 2, zoom=round(zoom, 2),
                         pitch=55 if preset == "planning" else 45, bearing=-20 if preset == "planning" else 0,
                         max_pitch=85)


def _url(template: str, inline: dict | None, key: str):
    # inlined data is kept once in the page's config, and each preset names it
    return {"@@function": "inline", "key": key} if inline is not None else template


def city_decks(city: City, inline: dict | None = None, workers: dict[str, str] | None = None) -> dict[str, pdk.Deck]:
    """One pydeck Deck per preset. `inline` holds data to embed (export) instead of URLs;
    `workers` the URL of each loaders.gl worker (default: under static/)."""
    workers = workers or {loader: f"static/{path}" for loader, path in WORKERS.items()}
    return {preset: pdk.Deck(layers=_layers(city, preset, inline, workers), initial_view_state=_view_state(city, preset),
                             map_provider=None, map_style=None,
                             views=[pdk.View("MapView", controller=True)])
            for preset in PRESETS}


def _dem_bounds(city: City, dem: str) -> list[float]:
    """The largest lon/lat box inside the DEM: tiles the page asks for all hold elevations."""
    record = city.layer(dem)
    west, south, east, north = record.bounds
    xs = np.array([west, west, east, east])
    ys = np.array([south, north, south, north])
    lon, lat = transformer(CRS.from_user_input(record.crs), WGS84).transform(xs, ys)
    margin = 0.01 * (max(lon) - min(lon))
    return [max(lon[0], lon[1]) + margin, max(lat[0], lat[2]) + margin,
            min(lon[2], lon[3]) - margin, min(lat[1], lat[3]) - margin]


def _layers(city: City, preset: str, inline: dict | None, workers: dict[str, str]) -> list[pdk.Layer]:
    utility = preset == "utility"
    # in the utility view the network is the subject: drawn over the ground and the buildings
    on_top = {"parameters": {"depthCompare": "always"}} if utility else {}
    layers: list[pdk.Layer] = []
    dem = _layer_of_kind(city, "dem")
    has_terrain = dem is not None
    # Over opaque ground a building is a prism from sea level to its roof (ground z + height):
    # the terrain hides what is below ground and the roof is where the survey says. Through
    # translucent ground that would show stilts, so there it stands on the drawn terrain
    # (deck.gl's terrain extension, which costs a software GPU a second of first frame).
    on_ground = [{"@@type": "TerrainExtension"}] if has_terrain and utility else []
    roof = ("(properties.ground_z || 0) + " if has_terrain and not utility else "") + \
        "(properties.height_m || (properties.floors || 1) * 3)"
    if has_terrain:
        terrain = dict(
            id="terrain", operation=pdk.types.String("terrain+draw"), elevation_decoder=TERRARIUM, mesh_max_error=2.5,  # metres: a quarter of the triangles of 1 m
            opacity=0.4 if utility else 1.0, color=[255, 255, 255], pickable=False,
            load_options={"terrain": {"workerUrl": workers["terrain"]}})
        if inline is None:
            images = ("terrain/{z}/{x}/{y}.png", "terrain/hillshade/{z}/{x}/{y}.png")
            inside = _dem_bounds(city, dem)
            # a zoom coarser than the view's: a quarter of the tiles, still finer than most DEMs' cells
            terrain.update(bounds=inside, extent=inside, min_zoom=8, max_zoom=17, zoom_offset=-1, tile_size=256)
        else:
            images = (_url("", inline, "terrain"), _url("", inline, "hillshade"))
            terrain.update(bounds=inline["terrain_bounds"])
        layer = pdk.Layer("TerrainLayer", **terrain)
        # set after construction: pydeck would read a keyword argument ending in .png as a local file
        layer.elevation_data, layer.texture = images
        layers.append(layer)

    pipes = _layer_of_kind(city, "pipe")
    if pipes:
        # PipeLayer (the page's): deck.gl's LineLayer, a line per segment picked by its pipe. A
        # software GPU takes seconds to compile the PathLayer's joints and a fifth of a second to
        # draw them every frame; at a few pixels wide a pipe's joints do not show.
        layers.append(pdk.Layer(
            "PipeLayer", id="pipes", data=_url(f"collections/{pipes}/items?limit=10000&simplify={PIPE_SIMPLIFY_M}", inline, "pipes"),
            data_transform={"@@function": "pipeSegments"},
            get_source_position="from", get_target_position="to",
            pickable=True, auto_highlight=True, highlight_color=[255, 255, 255, 200],
            get_color={"@@function": "pipeColour", "by": "status" if utility else "utility",
                       "palette": STATUS_COLOURS if utility else UTILITY_COLOURS},
            get_width={"@@function": "pipeWidth", "scale": 1.6 if utility else 1.0},
            width_units=PIXELS, width_min_pixels=1.5,
            load_options={"worker": False}, **on_top))

    sensors = _layer_of_kind(city, "sensor")
    if sensors:
        layers.append(pdk.Layer(
            "ScatterplotLayer", id="sensors", data=_url(f"collections/{sensors}/items?limit=10000", inline, "sensors"),
            data_transform={"@@function": "features"}, get_position={"@@function": "onGround", "lift": 1.5},
            get_fill_color={"@@function": "sensorColour", "utility": utility, "palette": STATUS_COLOURS},
            get_line_color=[20, 20, 20], stroked=True, line_width_min_pixels=1,
            radius_units=PIXELS, get_radius=6 if utility else 3, pickable=True, auto_highlight=True,
            visible=True, load_options={"worker": False}, **on_top))

    for kind in FACILITY_KINDS:
        name = _layer_of_kind(city, kind)
        if name:
            layers.append(pdk.Layer(
                "ScatterplotLayer", id=f"facility-{kind}",
                data=_url(f"collections/{name}/items?limit=10000", inline, f"facility-{kind}"),
                data_transform={"@@function": "features"}, get_position={"@@function": "onGround", "lift": 1.0},
                get_fill_color=FACILITY_COLOURS[kind] + [140 if utility else 230],
                radius_units=PIXELS, get_radius=2.5 if kind != "weather_station" else 6, pickable=True,
                auto_highlight=True, load_options={"worker": False}))

    buildings = _layer_of_kind(city, "building")
    if buildings:
        fill = [200, 200, 205, 70] if utility else BUILDING_COLOUR + [255]
        common = dict(
            id="buildings", extruded=True, wireframe=False, filled=True, stroked=False, pickable=True,
            auto_highlight=True, highlight_color=[255, 220, 0, 180],
            get_elevation=roof,
            get_fill_color=fill, material={"ambient": 0.45, "diffuse": 0.6, "shininess": 20},
            # a footprint that a BIM model represents is drawn by the model instead
            get_filter_value="properties.represented_by_bim ? 0 : 1", filter_range=[1, 1],
            extensions=[{"@@type": "DataFilterExtension", "filterSize": 1}, *on_ground],
            load_options={"mvt": {"workerUrl": workers["mvt"]}})
        if inline is None:
            # tiles only where there are buildings: a view wider than the district asks for no empty ones
            layers.append(pdk.Layer("MVTLayer", data=f"collections/{buildings}/tiles/WebMercatorQuad/{{z}}/{{y}}/{{x}}",
                                    min_zoom=13, max_zoom=16, binary=True, unique_id_property=pdk.types.String("uid"),
                                    extent=list(city.layer(buildings).bounds_wgs84), **common))
        else:
            layers.append(pdk.Layer("GeoJsonLayer", data=_url("", inline, "buildings"), **common))

    if _layer_of_kind(city, "bim") or _layer_of_kind(city, "facility"):
        bim = dict(id="bim", pickable=True, opacity=0.35 if utility else 1.0, load_options={"worker": False})
        if inline is None:
            layers.append(pdk.Layer("Tile3DLayer", data="3dtiles/tileset.json", **bim))
        elif inline.get("tileset"):
            # loaders.gl tells a tileset from a tile by ".json" in its URL, which a data URL lacks
            bim["load_options"] = {"3d-tiles": {"isTileset": True}}
            layers.append(pdk.Layer("Tile3DLayer", data=_url("", inline, "tileset"), **bim))
    return layers


def legend(city: City) -> dict:
    """What each colour on the page means, for the page's legend."""
    utilities = sorted(set(city.features(_layer_of_kind(city, "pipe"))["utility"].dropna())) \
        if _layer_of_kind(city, "pipe") else []
    return {
        "utility": {u: UTILITY_COLOURS.get(u, [160, 160, 160]) for u in utilities or UTILITIES},
        "status": {s.replace("_", " "): c for s, c in STATUS_COLOURS.items()},
        "facility": {k.replace("_", " "): FACILITY_COLOURS[k] for k in FACILITY_KINDS if _layer_of_kind(city, k)},
        "building": {name: colour for name, colour, kinds in (("GIS building", BUILDING_COLOUR, ("building",)),
                                                             ("BIM model", BIM_COLOUR, ("bim", "facility")))
                     if any(_layer_of_kind(city, k) for k in kinds)},
    }


_TOGGLES = [  # (label, layer ids or id prefix)
    ("Terrain", ["terrain"]), ("Buildings", ["buildings"]), ("BIM models", ["bim"]), ("Pipes", ["pipes"]),
    ("Sensors", ["sensors"]), ("Facilities", ["facility-"]),
]


def _config(city: City, preset: str, decks: dict[str, pdk.Deck], live: bool, data: dict | None = None) -> dict:
    return {"data": data or {},
        "city": city.name, "preset": preset, "live": live,
        "presets": {name: json.loads(deck.to_json()) for name, deck in decks.items()},
        "legend": legend(city), "toggles": _TOGGLES, "statuses": list(STATUSES),
    }


def _page(title: str, config: dict, scripts: list[str], styles: list[str], early: str = "") -> str:
    payload = json.dumps(config, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    template = (WEB_ROOT / "index.html").read_text(encoding="utf-8")
    return (template.replace("{{title}}", html.escape(title))
            .replace("{{styles}}", "\n".join(styles))
            .replace("{{early}}", early)
            .replace("{{config}}", payload)
            .replace("{{scripts}}", "\n".join(scripts)))


def page_html(city: City, preset: str = "planning", static_prefix: str = "static/") -> str:
    """The page the API serves at `/`: data from the API's tiles and features, assets from `static_prefix`."""
    _check_preset(preset)
    config = _config(city, preset, city_decks(city), live=True)
    scripts = [f'<script src="{static_prefix}{s}"></script>' for s in (*VENDOR_SCRIPTS, *PAGE_SCRIPTS)]
    scripts.insert(1, _KEEP_CORE)
    styles = [f'<link rel="stylesheet" href="{static_prefix}{s}">' for s in PAGE_STYLES]
    return _page(f"{city.name} · twin", config, scripts, styles, _early_fetches(config))


# What the first frame draws from a plain URL (the buildings come in tiles, which deck.gl picks
# for the view): asked for as the page starts, while the browser still loads deck.gl.
FIRST_FRAME_DATA = ("pipes",)


def _early_fetches(config: dict) -> str:
    """A script that starts the first frame's data requests; the page hands each layer its promise."""
    urls = {layer["id"]: layer["data"] for deck in config["presets"].values() for layer in deck["layers"]
            if layer["id"] in FIRST_FRAME_DATA and isinstance(layer.get("data"), str)}
    if not urls:
        return ""
    fetches = ",".join(f"{json.dumps(layer)}:get({json.dumps(url)})" for layer, url in sorted(urls.items()))
    return ("<script>(function(){function get(u){return fetch(u).then(function(r){"
            "if(!r.ok)throw new Error(u+': '+r.status);return r.json();});}"
            f"window.twinEarly={{{fetches}}};}})();</script>")


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}: use one of {', '.join(PRESETS)}")


def _data_url(media_type: str, data: bytes) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def _round_coordinates(c: np.ndarray) -> np.ndarray:
    rounded = np.round(c, 7)
    if c.shape[1] > 2:
        rounded[:, 2] = np.round(c[:, 2], 2)
    return rounded


def _features_json(city: City, name: str | None) -> dict:
    if name is None:
        return {"type": "FeatureCollection", "features": []}
    frame = city.features(name).to_crs("OGC:CRS84")
    # a centimetre is enough for the eye and halves the file: 7 decimals of a degree, 2 of a metre
    frame.geometry = shapely.transform(frame.geometry.values, _round_coordinates,
                                       include_z=frame.has_z.any())
    return json.loads(frame.to_json(drop_id=True, na="null", to_wgs84=False))


def _inline_data(city: City) -> dict:
    """Everything the exported page draws, embedded: GeoJSON, a terrain image, the BIM tileset."""
    inline = {"pipes": _features_json(city, _layer_of_kind(city, "pipe")),
              "sensors": _features_json(city, _layer_of_kind(city, "sensor")),
              "buildings": _features_json(city, _layer_of_kind(city, "building"))}
    for kind in FACILITY_KINDS:
        inline[f"facility-{kind}"] = _features_json(city, _layer_of_kind(city, kind))
    for collection in [inline[k] for k in ("pipes", "sensors", *(f"facility-{k}" for k in FACILITY_KINDS))]:
        for feature in collection["features"]:
            feature["id"] = feature["properties"].get("uid")
    dem = _layer_of_kind(city, "dem")
    if dem:
        inline.update(_terrain_image(city, dem))
    inline["tileset"] = _inline_tileset(city)
    return inline


def _terrain_image(city: City, dem: str) -> dict:
    """The DEM over its extent as one Terrarium PNG and one hillshade PNG (data URLs)."""
    terrarium, hillshade, bounds = terrain_mosaic(city.store.raster_path(dem), city.layer(dem).bounds_wgs84)
    return {"terrain": _data_url("image/png", terrarium), "hillshade": _data_url("image/png", hillshade),
            "terrain_bounds": list(bounds)}


def _inline_tileset(city: City) -> str | None:
    records = [r for r in city.layers() if r.kind in ("bim", "facility")]
    if not records:
        return None
    snapshots = [LayerSnapshot.load(city, r) for r in records]
    document = tileset(snapshots)
    glbs = {uid: glb for s in snapshots if "glb" in s.frame for uid, glb in zip(s.frame["uid"], s.frame["glb"])}
    def embed(tile: dict) -> None:
        if "content" in tile:
            glb = glbs[tile["extras"]["uid"]]
            # loaders.gl tells a tile's kind by the URL's extension; a data URL's fragment
            # carries one and is dropped when the URL is read
            tile["content"]["uri"] = _data_url("model/gltf-binary", (city.root / glb).read_bytes()) + "#model.glb"
        for child in tile.get("children", []):
            embed(child)
    embed(document["root"])
    return _data_url("application/json", json.dumps(document).encode("utf-8"))


def export_html(city: City, preset: str = "planning", limit_bytes: int = EXPORT_LIMIT_BYTES) -> str:
    """One self-contained HTML file of the city: scripts, styles and data inlined; opens offline."""
    _check_preset(preset)
    workers = {loader: _data_url("text/javascript", (WEB_ROOT / path).read_bytes()) for loader, path in WORKERS.items()}
    data = _inline_data(city)
    config = _config(city, preset, city_decks(city, data, workers), live=False, data=data)
    scripts = [f"<script>{(WEB_ROOT / s).read_text(encoding='utf-8')}</script>" for s in (*VENDOR_SCRIPTS, *PAGE_SCRIPTS)]
    scripts.insert(1, _KEEP_CORE)
    styles = [f"<style>{(WEB_ROOT / s).read_text(encoding='utf-8')}</style>" for s in PAGE_STYLES]
    page = _page(f"{city.name} · twin", config, scripts, styles)
    size = len(page.encode("utf-8"))
    if size > limit_bytes:
        raise ExportTooLarge(f"{city.root}: the exported page would be {size / 1e6:.1f} MB, over the "
                             f"{limit_bytes / 1e6:.0f} MB limit; serve the city with `twin serve` instead")
    return page
