"""A city workspace: a folder with `city.json`, the store (`city.gpkg`) and the DEM COGs.

`City.ingest` is the one path by which sources enter the model: read (layers/), check
and canonicalise, enrich from the rest of the model (ground z, sheet names, heights),
then one atomic swap in the store.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

import shapely
from pyproj import CRS

from layers.ifc import Anchor, parse_anchor
from layers.kinds import GEOMETRY_TYPE_NAMES, KINDS, LayerKind
from layers.raster import GroundModel, write_dem_cog
from layers.spec import LayerSpec, load_spec
from layers.vector import VECTOR_SUFFIXES, prepare_layer, read_vector
from twin import sheets, topography
from twin.crs import WGS84, city_crs, transformer
from twin.errors import CityExists, NotACity, SourceNotFound, SpecError, UnknownKind, UnknownLayer
from twin.store import LayerRecord, Store, open_store

__all__ = ["CONFIG_FILE", "City", "ProgressFactory", "DEFAULT_STOREY_HEIGHT_M"]

CONFIG_FILE = "city.json"
# Above this many features a re-ingest is taken as changed everywhere rather than diffed.
CHANGE_DIFF_LIMIT = 200_000
CHANGE_BOXES_LIMIT = 256
DEFAULT_STOREY_HEIGHT_M = 3.0
POINT_KINDS_WITH_GROUND = {"sensor", "manhole", "lamp", "camera", "base_station", "weather_station"}

# progress(description, total) -> advance(n); total None when unknown
ProgressFactory = Callable[[str, int | None], Callable[[int], None]]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def file_sha256(path: Path) -> str:
    """SHA-256 of a source; a Shapefile is hashed with its sidecar files."""
    h = hashlib.sha256()
    files = [path]
    if path.suffix.lower() == ".shp":
        files = sorted(p for p in path.parent.glob(path.stem + ".*") if p.suffix.lower() in
                       {".shp", ".shx", ".dbf", ".prj", ".cpg"})
    for f in files:
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


@dataclass
class CityConfig:
    """The contents of city.json."""

    name: str
    crs: str
    store: str = "geopackage:city.gpkg"
    created: str = ""


class City:
    """A city information model on disk."""

    def __init__(self, root: Path, config: CityConfig, store: Store) -> None:
        from twin.notify import install_notifier

        self.root = root
        self.config = config
        self.crs: CRS = city_crs(config.crs)
        self.store = store
        # every process that writes a shared city tells its servers (a no-op for a GeoPackage)
        install_notifier(store)

    @property
    def name(self) -> str:
        """The city's display name."""
        return self.config.name

    @classmethod
    def init(cls, root: str | Path, crs: str, name: str | None = None, store: str | None = None) -> "City":
        """Create a city workspace in folder `root` (created if missing) with its metric CRS.

        `store` names where the layers live: ``geopackage:city.gpkg`` (the default) or a
        ``postgresql://`` URL; city.json records it without the password.
        """
        root = Path(root)
        if (root / CONFIG_FILE).exists():
            raise CityExists(f"{root} already holds a city ({CONFIG_FILE}); open it, or choose another folder")
        city_crs(crs)  # refuse before touching the disk
        root.mkdir(parents=True, exist_ok=True)
        config = CityConfig(name=name or root.resolve().name, crs=crs.upper() if crs.lower().startswith("epsg:") else crs,
                            store=store or "geopackage:city.gpkg", created=_now())
        store_obj = open_store(root, config.store)
        if store_obj.layers() or getattr(store_obj, "fresh", True) is False:
            raise CityExists(f"{store_obj.url} already holds a city; give this city a store of its own "
                             f"(for PostGIS: another ?schema=NAME)")
        config.store = store_obj.url
        (root / CONFIG_FILE).write_text(json.dumps(config.__dict__, indent=2, ensure_ascii=False) + "\n")
        return cls(root, config, store_obj)

    @classmethod
    def open(cls, root: str | Path) -> "City":
        """Open the city workspace in folder `root`."""
        root = Path(root)
        path = root / CONFIG_FILE
        if not path.is_file():
            raise NotACity(f"{root} is not a city workspace (no {CONFIG_FILE}); create one with "
                           f"`twin init {root} --crs EPSG:NNNN`")
        try:
            config = CityConfig(**json.loads(path.read_text()))
        except (json.JSONDecodeError, TypeError) as exc:
            raise NotACity(f"{path} is not a valid city config: {exc}") from exc
        return cls(root, config, open_store(root, config.store))

    # reading the model ---------------------------------------------------------------

    def layers(self) -> list[LayerRecord]:
        """The layer catalogue."""
        return self.store.layers()

    def layer(self, name: str) -> LayerRecord:
        """One layer's catalogue record."""
        return self.store.layer(name)

    def features(self, name: str, bbox: tuple[float, float, float, float] | None = None) -> gpd.GeoDataFrame:
        """A vector layer's features in the city CRS."""
        frame = self.store.read_features(name, bbox=bbox)
        return frame.set_crs(self.crs, allow_override=True)

    def layers_of_kind(self, kind: str) -> list[LayerRecord]:
        """The layers of one kind, by name."""
        return [r for r in self.layers() if r.kind == kind]

    def ground(self) -> GroundModel | None:
        """The ground model from the city's DEM (the layer named 'dem', else the newest dem layer)."""
        dems = self.layers_of_kind("dem")
        if not dems:
            return None
        chosen = next((r for r in dems if r.name == "dem"), max(dems, key=lambda r: r.updated or ""))
        return GroundModel(self.store.raster_path(chosen.name))

    def ground_z(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Ground elevation in metres at points of the city CRS (NaN where there is no DEM)."""
        ground = self.ground()
        if ground is None:
            return np.full(np.shape(x), np.nan)
        return ground.sample(x, y)

    # ingest -------------------------------------------------------------------------------

    def ingest(self, path: str | Path, kind: str | None = None, *, layer: str | None = None,
               crs: str | None = None, spec: str | Path | LayerSpec | None = None,
               anchor: str | Anchor | None = None, progress: ProgressFactory | None = None) -> LayerRecord:
        """Read a source file into layer `layer` (default: the kind's name), replacing it atomically.

        IFC files (kind "bim", inferred from .ifc) are placed by their own georeferencing or
        by `anchor` ("LON,LAT[,ELEV[,ROTATION_DEG]]"), which overrides what the file says.
        """
        path = Path(path)
        if not path.exists():
            raise SourceNotFound(path, "file does not exist")
        if kind == "bim" or (kind is None and path.suffix.lower() == ".ifc"):
            from twin.bim import ingest_ifc

            parsed = parse_anchor(anchor) if isinstance(anchor, str) else anchor
            return ingest_ifc(self, path, anchor=parsed, progress=progress)
        if anchor is not None:
            raise SpecError(None, "--anchor places IFC models; it does not apply to GIS files")
        layer_spec = spec if isinstance(spec, LayerSpec) else (load_spec(spec) if spec else LayerSpec())
        kind_name = kind or layer_spec.kind or _infer_kind(path)
        if kind_name not in KINDS:
            raise UnknownKind(f"unknown layer kind {kind_name!r}; known kinds: {', '.join(KINDS)}")
        if layer_spec.kind and kind and layer_spec.kind != kind:
            raise SpecError(layer_spec.path, f"is a spec for kind {layer_spec.kind!r}, not {kind!r}")
        layer_kind = KINDS[kind_name]
        if layer_kind.from_ifc:
            raise UnknownKind(f"kind {kind_name!r} is written from IFC files (twin ingest CITY MODEL.ifc), "
                              f"not ingested from {path.suffix or 'this'} files")
        name = layer or kind_name
        crs = crs or layer_spec.crs
        if layer_kind.is_raster:
            record = self._ingest_dem(path, name, crs, layer_spec)
            self.refresh_ground(progress=progress)
            return record
        return self._ingest_vector(path, layer_kind, name, crs, layer_spec, progress)

    def _ingest_vector(self, path: Path, kind: LayerKind, name: str, crs: str | None, spec: LayerSpec,
                       progress: ProgressFactory | None) -> LayerRecord:
        reading = (lambda total: progress(f"reading {path.name}", total)) if progress else None
        source = read_vector(path, crs=crs, source_layer=spec.source_layer, progress=reading)
        prepared = prepare_layer(source, kind, spec, self.crs, source=path, layer=name)
        frame = self._enrich(kind.name, prepared.frame, prepared.notes)
        frame = self._keep_bim_rows(kind.name, name, frame, prepared.notes)
        record = LayerRecord(name=name, kind=kind.name, crs=self.crs.to_string(), source=str(path.resolve()),
                             source_sha256=file_sha256(path), notes=prepared.notes)
        if prepared.source_crs != self.crs.to_string():
            record.notes.insert(0, f"reprojected from {prepared.source_crs}")
        return self._store_frame(record, frame, progress)

    def _keep_bim_rows(self, kind: str, name: str, frame: gpd.GeoDataFrame, notes: list[str]) -> gpd.GeoDataFrame:
        """Carry BIM pipes over a GIS re-ingest of the pipe layer, and flag footprints BIM replaces."""
        names = {r.name for r in self.layers()}
        if kind == "pipe" and name in names:
            existing = self.features(name)
            if "bim_model" in existing.columns:
                from_bim = existing[existing["bim_model"].notna()]
                if len(from_bim):
                    notes.append(f"kept {len(from_bim)} pipe segments from BIM models")
                    frame = gpd.GeoDataFrame(pd.concat([frame, from_bim], ignore_index=True), geometry="geometry",
                                             crs=self.crs)
        if kind == "building" and "bim" in names:
            from twin.fusion import fuse

            frame, _ = fuse(frame, self.features("bim"))
            notes.append(f"{int(frame['represented_by_bim'].sum())} footprints are represented by BIM models")
        return frame

    def _store_frame(self, record: LayerRecord, frame: gpd.GeoDataFrame,
                     progress: ProgressFactory | None) -> LayerRecord:
        record.feature_count = len(frame)
        bounds = tuple(float(v) for v in frame.total_bounds)
        record.bounds = bounds
        record.bounds_wgs84 = _bounds_to_wgs84(bounds, self.crs)
        ids = np.unique(shapely.get_type_id(np.asarray(frame.geometry.values, dtype=object)))
        z = " Z" if shapely.has_z(np.asarray(frame.geometry.values, dtype=object)).all() else ""
        record.geometry_type = "/".join(GEOMETRY_TYPE_NAMES[int(i)] + z for i in ids)
        record.updated = _now()
        changed = self._changed_bounds(record.name, frame)
        writing = progress(f"writing {record.name}", len(frame)) if progress else None
        return self.store.replace_features(record, frame, progress=writing, changed=changed)

    def _changed_bounds(self, name: str, frame: gpd.GeoDataFrame) -> list[tuple[float, float, float, float]] | None:
        """Boxes around the features that differ from the stored version (None: anywhere).

        Tile caches keep every tile that no box touches, so an ingest that changes one
        street re-renders that street's tiles only.
        """
        try:
            previous = self.store.layer(name)
        except UnknownLayer:
            return None
        if previous.kind == "dem" or previous.feature_count > CHANGE_DIFF_LIMIT or "uid" not in frame.columns:
            return None
        old = self.features(name)
        if "uid" not in old.columns:
            return None
        old_hash, new_hash = _row_hashes(old), _row_hashes(frame)
        if list(old.columns) != list(frame.columns):
            return None  # a new or dropped column changes every tile
        joined = old_hash.to_frame("old").join(new_hash.to_frame("new"), how="outer")
        differ = joined.index[joined["old"].ne(joined["new"]) | joined["old"].isna() | joined["new"].isna()]
        if not len(differ):
            return []
        boxes = np.vstack([old.set_index("uid").loc[old.set_index("uid").index.intersection(differ)].bounds.to_numpy(),
                           frame.set_index("uid").loc[frame.set_index("uid").index.intersection(differ)].bounds.to_numpy()])
        boxes = boxes[np.isfinite(boxes).all(axis=1)]
        if len(boxes) > CHANGE_BOXES_LIMIT:
            boxes = np.array([[boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()]])
        return [tuple(float(v) for v in b) for b in boxes]

    def _enrich(self, kind: str, frame: gpd.GeoDataFrame, notes: list[str]) -> gpd.GeoDataFrame:
        """Derive what the model knows beyond the source: heights, sheet names, ground z."""
        if kind == "building":
            missing = frame["height_m"].isna() & frame["floors"].notna() & (frame["floors"] > 0)
            if missing.any():
                frame.loc[missing, "height_m"] = frame.loc[missing, "floors"].astype("float64") * DEFAULT_STOREY_HEIGHT_M
                notes.append(f"height_m from floors x {DEFAULT_STOREY_HEIGHT_M} m for {int(missing.sum())} buildings")
        if kind == "map_sheet":
            no_scale = frame["scale"].isna()
            if no_scale.any():
                raise SpecError(None, f"map sheet feature {int(np.flatnonzero(no_scale.to_numpy())[0])} has no scale; "
                                      f"map one with [fields] scale = ... or scale = {{ value = 1000 }}")
            bad = ~frame["scale"].isin(list(sheets.SHEET_SIZE_M))
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise SpecError(None, f"map sheet feature {i} has scale {frame['scale'].iloc[i]}; "
                                      f"large-scale sheets are 1:{', 1:'.join(map(str, sheets.SHEET_SIZE_M))}")
            no_id = frame["sheet_id"].isna()
            if no_id.any():
                geoms = np.asarray(frame.geometry.values, dtype=object)
                for scale in frame.loc[no_id, "scale"].unique():
                    sel = (no_id & (frame["scale"] == scale)).to_numpy()
                    frame.loc[sel, "sheet_id"] = sheets.sheet_ids_for(geoms[sel], int(scale))
                notes.append(f"sheet_id from the south-west corner for {int(no_id.sum())} sheets")
        return self._apply_ground(kind, frame, notes)

    def _apply_ground(self, kind: str, frame: gpd.GeoDataFrame, notes: list[str]) -> gpd.GeoDataFrame:
        if kind not in POINT_KINDS_WITH_GROUND | {"building", "pipe"}:
            return frame
        ground = self.ground()
        if ground is None:
            return frame
        geoms = np.asarray(frame.geometry.values, dtype=object)
        if kind == "pipe":
            step = max(min(ground.resolution), 5.0)
            draped, assumed, off = topography.drape_pipes(
                geoms, frame["depth_m"].to_numpy(dtype="float64", na_value=np.nan),
                frame["diameter_mm"].to_numpy(dtype="float64", na_value=np.nan), ground.sample, step)
            frame = frame.set_geometry(gpd.GeoSeries(draped, index=frame.index, crs=frame.crs))
            if assumed:
                notes.append(f"cover depth {topography.DEFAULT_COVER_DEPTH_M} m assumed for {assumed} pipes without depth_m")
            if off:
                notes.append(f"{off} pipes lie wholly off the DEM; their z assumes ground 0")
        elif kind == "building":
            frame["ground_z"] = topography.footprint_ground_z(shapely.force_2d(geoms), ground.sample)
        else:
            frame["ground_z"] = topography.point_ground_z(shapely.force_2d(geoms), ground.sample)
        return frame

    def refresh_ground(self, progress: ProgressFactory | None = None) -> list[LayerRecord]:
        """Recompute ground z of every layer that takes it (after a new DEM)."""
        refreshed = []
        for record in self.layers():
            if record.kind not in POINT_KINDS_WITH_GROUND | {"building", "pipe"}:
                continue
            frame = self.features(record.name)
            if "ground_z" in frame.columns:
                frame = frame.drop(columns=["ground_z"])
            notes = [n for n in record.notes if "DEM" not in n and "cover depth" not in n]
            frame = self._apply_ground(record.kind, frame, notes)
            record.notes = notes
            refreshed.append(self._store_frame(record, frame, progress))
        return refreshed

    def _ingest_dem(self, path: Path, name: str, crs: str | None, spec: LayerSpec) -> LayerRecord:
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=f".{name}-", suffix=".tif", delete=False) as tmp:
            staged = Path(tmp.name)
        try:
            facts = write_dem_cog(path, staged, self.crs, crs=crs, elevation_scale=spec.elevation_scale)
            record = LayerRecord(
                name=name, kind="dem", crs=self.crs.to_string(), source=str(path.resolve()),
                source_sha256=file_sha256(path), feature_count=facts["width"] * facts["height"],
                bounds=facts["bounds"], bounds_wgs84=_bounds_to_wgs84(facts["bounds"], self.crs),
                geometry_type="raster", updated=_now(),
                notes=[f"{facts['width']}x{facts['height']} cells of {facts['resolution'][0]:.2f} m, "
                       f"elevations {facts['min']:.1f}..{facts['max']:.1f} m"])
            return self.store.replace_raster(record, staged)
        finally:
            staged.unlink(missing_ok=True)

    def delete(self, name: str) -> None:
        """Remove a layer."""
        self.store.delete_layer(name)


def _row_hashes(frame: gpd.GeoDataFrame) -> pd.Series:
    """A hash of each feature's attributes and geometry, indexed by uid."""
    attributes = frame.drop(columns=[frame.geometry.name]).astype("string").fillna("<NA>")
    wkb = pd.Series(shapely.to_wkb(np.asarray(frame.geometry.values, dtype=object)), index=frame.index)
    hashed = pd.util.hash_pandas_object(attributes, index=False) ^ pd.util.hash_pandas_object(wkb, index=False)
    return pd.Series(hashed.to_numpy(), index=frame["uid"].astype("string").to_numpy())


def _infer_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return "dem"
    if suffix == ".ifc":
        return "bim"
    raise UnknownKind(f"{path}: give the layer kind with --kind ({', '.join(KINDS)})"
                      + ("" if suffix in VECTOR_SUFFIXES else f"; and {suffix or 'no suffix'} is not a format we read"))


def _bounds_to_wgs84(bounds: tuple[float, float, float, float], crs: CRS) -> tuple[float, float, float, float]:
    t = transformer(crs, WGS84)
    west, south, east, north = t.transform_bounds(*bounds, densify_pts=21)
    return (west, south, east, north)


