"""Tiles of a city, cached: the one object the HTTP layer asks for vector, terrain and 3D tiles."""

from __future__ import annotations

from pathlib import Path

from tiles import terrain, tiles3d
from tiles.cache import CachedTile, TileCache
from tiles.grid import check_tile, tile_bounds_in
from tiles.vector import VectorLayers, zoom_range
from twin.errors import UnknownLayer
from twin.snapshots import CityView

__all__ = ["TileService", "COMBINED", "TILE_LAYER_KINDS"]

COMBINED = "city"
# What the combined tileset holds: the 2D layers of the city, not the BIM element table.
TILE_LAYER_KINDS = {"building", "bim", "facility", "pipe", "sensor", "manhole", "lamp", "camera", "base_station",
                    "weather_station", "community", "school", "map_sheet", "planning_area", "district",
                    "urban_area", "key_area", "green"}


class TileService:
    """Vector, terrain and 3D tiles of one city, with memory and disk caches."""

    def __init__(self, view: CityView, cache_dir: Path | None = None, memory_items: int = 4096) -> None:
        self.view = view
        self.cache = TileCache(cache_dir, self._changes, memory_items)
        self._stacked: dict[str, VectorLayers] = {}  # by tileset, the layer versions last rendered

    def _changes(self, layer: str, since: int) -> list:
        """The change log of a layer, or of its live statuses (`<layer>@status`)."""
        name, _, part = layer.partition("@")
        if part == "status":
            return self.view.status_changes(name, since)
        return self.view.city.store.changes(layer, since)

    def combined_layers(self) -> list[str]:
        """The layers of the combined tileset."""
        return sorted(r.name for r in self.view.vector_layers() if r.kind in TILE_LAYER_KINDS)

    def vector_tile(self, layers: list[str], z: int, x: int, y: int, tileset: str) -> CachedTile:
        """An MVT of `layers` (cached per tileset, re-rendered only where a layer changed)."""
        check_tile(z, x, y)
        versions = {k: v for name in layers for k, v in self.view.versions(name).items()}
        key = f"mvt/{tileset}/{z}/{x}/{y}"
        cached = self.cache.get(key, versions, lambda: tile_bounds_in(self.view.city.crs, z, x, y))
        if cached is not None:
            return cached
        stacked = self._vector_layers(tileset, layers, versions)
        return self.cache.put(key, stacked.tile(z, x, y), stacked.versions)

    def _vector_layers(self, tileset: str, layers: list[str], versions: dict[str, int]) -> VectorLayers:
        """The tileset's layers stacked for tiles, restacked when the catalogue has another version of one."""
        stacked = self._stacked.get(tileset)
        if stacked is None or stacked.versions != versions or stacked.stack.names != layers:
            stacked = VectorLayers([self.view.snapshot(name) for name in layers])
            self._stacked[tileset] = stacked
        return stacked

    def seed(self, zooms: range, layers: list[str] | None = None, terrain: bool = True,
             progress=None) -> dict[str, int]:
        """Render every tile over the city's extent at `zooms` into the caches.

        `layers` None seeds the combined tileset; otherwise one tileset per layer.
        `progress(total)` returns a callback given 1 per tile. Returns counts by outcome.
        """
        import morecantile

        tilesets = [(COMBINED, self.combined_layers())] if layers is None else [(f"layer/{n}", [n]) for n in layers]
        boxes = [self.view.record(n).bounds_wgs84 for _, names in tilesets for n in names]
        boxes = [b for b in boxes if b]
        if not boxes:
            return {"rendered": 0, "cached": 0, "empty": 0}
        west, south = min(b[0] for b in boxes), min(b[1] for b in boxes)
        east, north = max(b[2] for b in boxes), max(b[3] for b in boxes)
        tms = morecantile.tms.get("WebMercatorQuad")
        tiles = list(tms.tiles(west, south, east, north, list(zooms)))
        dem = self.view.dem_path() if terrain else None
        total = len(tiles) * len(tilesets) + (2 * len(tiles) if dem is not None else 0)
        tick = progress(total) if progress else None
        counts = {"rendered": 0, "cached": 0, "empty": 0}
        for t in tiles:
            for tileset, names in tilesets:
                tile = self.vector_tile(names, t.z, t.x, t.y, tileset)
                counts["cached" if tile.hit else ("rendered" if tile.data else "empty")] += 1
                if tick:
                    tick(1)
            if dem is not None:
                for style in ("terrarium", "hillshade"):
                    try:
                        tile = self.terrain_tile(style, t.z, t.x, t.y)
                        counts["cached" if tile.hit else "rendered"] += 1
                    except terrain.NoTerrain:
                        counts["empty"] += 1
                    if tick:
                        tick(1)
        return counts

    def layer_zooms(self, name: str) -> tuple[int, int]:
        """A layer's zoom range in the tiles."""
        return zoom_range(self.view.record(name).kind)

    def dem(self) -> tuple[str, int, Path]:
        """The DEM layer's name, version and COG; raises UnknownLayer without one."""
        path = self.view.dem_path()
        if path is None:
            raise UnknownLayer("the city has no DEM; ingest one with `twin ingest CITY dem.tif --kind dem`")
        record = next(r for r in self.view.records().values() if r.kind == "dem" and self.view.city.root / r.table == path)
        return record.name, record.version, path

    def terrain_tile(self, style: str, z: int, x: int, y: int) -> CachedTile:
        """A Terrarium (`style` "terrarium") or hillshade PNG; raises terrain.NoTerrain off the DEM."""
        check_tile(z, x, y)
        name, version, path = self.dem()
        key = f"terrain/{style}/{z}/{x}/{y}"
        cached = self.cache.get(key, {name: version}, lambda: tile_bounds_in(self.view.city.crs, z, x, y))
        if cached is not None:
            return cached
        render = terrain.terrarium_png if style == "terrarium" else terrain.hillshade_png
        return self.cache.put(key, render(path, z, x, y), {name: version})

    def bim_layers(self) -> list[str]:
        """The layers whose rows carry placed BIM models."""
        return [r.name for r in self.view.vector_layers() if r.kind in ("bim", "facility")]

    def tileset(self) -> dict:
        """The 3D Tiles tileset of every BIM building and facility."""
        boxes = [r.bounds_wgs84 for r in self.view.vector_layers() if r.bounds_wgs84]
        extent = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes),
                  max(b[3] for b in boxes)) if boxes else None
        return tiles3d.tileset([self.view.snapshot(name) for name in self.bim_layers()], extent=extent)

    def glb_path(self, uid: str) -> Path:
        """The GLB of a BIM building or facility, by its uid (never a path from a URL)."""
        for name in self.bim_layers():
            frame = self.view.snapshot(name).frame
            match = frame.loc[frame["uid"] == uid, "glb"]
            if len(match):
                root = self.view.city.root.resolve()
                path = (root / str(match.iloc[0])).resolve()
                if root in path.parents and path.is_file():
                    return path
        raise UnknownLayer(f"no BIM model {uid!r}")
