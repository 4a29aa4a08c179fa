"""BIM into the city: place an IFC model, cut its footprint, store its elements and meshes.

One IFC file may hold several facilities; each becomes a row of the `bim` layer (IfcBuilding)
or the `facility` layer (IfcRoad, IfcBridge, ...), with a GLB beside the store. Elements go
to `bim-elements`, pipe segments to the `pipe` layer. Rows carry the file name they came
from (`model`), so re-ingesting a file replaces exactly its own rows.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from layers.gltf import MeshNode, decode_glb_meshes, encode_glb
from layers.ifc import Anchor, BimModel, Element, Facility, georeference, properties_json, read_ifc
from twin import fusion
from twin.store import LayerRecord

__all__ = ["BIM_LAYER", "FACILITY_LAYER", "ELEMENT_LAYER", "PIPE_LAYER", "ingest_ifc", "refresh_fusion", "footprint",
           "element_at", "point_triangle_distance"]

BIM_LAYER = "bim"
FACILITY_LAYER = "facility"
ELEMENT_LAYER = "bim-elements"
PIPE_LAYER = "pipe"
CACHE_VERSION = 4
# Elements whose top is this far below the ground floor are basements: not in the footprint.
ABOVE_GROUND_TOLERANCE_M = 0.05


@dataclass
class ElementRow:
    """What the element table keeps of an element, in the facility's local coordinates."""

    global_id: str
    ifc_class: str
    name: str | None
    storey: str | None
    predefined_type: str | None
    properties: str
    centroid: np.ndarray | None
    axis: np.ndarray | None
    diameter_mm: float | None


@dataclass
class PreparedFacility:
    """A facility ready to place: everything that depends on the file alone, cached by its hash.

    Local coordinates are model metres relative to `origin` (a model point at the site's
    plan origin and the ground floor), so no map coordinate reaches the mesh.
    """

    facility: Facility
    layer: str
    origin: np.ndarray
    level: float
    top: float
    corners: np.ndarray  # (8, 3) local bounding box, for fitting the placement
    outline: shapely.Geometry  # local plan outline at and above ground
    glb: bytes
    element_count: int
    elements: list[ElementRow]


def _cache_path(city, sha: str) -> Path:
    return city.root / "cache" / "ifc" / f"{sha}-v{CACHE_VERSION}.pickle"


def prepare_model(city, path: Path, sha: str, progress=None) -> tuple[BimModel, list[PreparedFacility], bool]:
    """Read and prepare an IFC file, or take both from the city's cache (same file hash)."""
    cache = _cache_path(city, sha)
    if cache.is_file():
        try:
            with cache.open("rb") as fh:
                model, prepared = pickle.load(fh)
            model.path = str(path)
            return model, prepared, True
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            cache.unlink(missing_ok=True)
    reading = (lambda total: progress(f"geometry of {path.name}", total)) if progress else None
    model = read_ifc(path, progress=reading)
    prepared = _prepare_facilities(model)
    for element in model.elements:  # the meshes live on in the GLBs; keep the cache small
        element.vertices = element.triangles = element.triangle_materials = None
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    with tmp.open("wb") as fh:
        pickle.dump((model, prepared), fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(cache)
    return model, prepared, False


def _ground_level(facility: Facility, elements: list[Element]) -> float:
    """Model z of the ground floor: the lowest storey at or above zero, else the lowest element."""
    above = [z for _, z in facility.storeys if z >= -0.5]
    if above:
        return min(above)
    if facility.storeys:
        return facility.storeys[-1][1]
    return min(float(e.vertices[:, 2].min()) for e in elements)


def footprint(elements: list[Element], ground_level: float, origin: np.ndarray) -> shapely.Geometry:
    """The plan outline of the elements at and above ground: the union of their upward faces.

    The upward-facing triangles of a closed solid cover its plan exactly, so their union is
    the real outline (courtyards and L-shapes included), not a bounding box. Coordinates
    are relative to `origin`.
    """
    polygons = []
    for element in elements:
        if element.vertices[:, 2].max() < ground_level + ABOVE_GROUND_TOLERANCE_M:
            continue
        tri = element.vertices[element.triangles][:, :, :2] - origin[:2]
        a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
        cross = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
        faces = cross > 1e-8
        if not faces.any():  # inconsistently oriented mesh: take every face that is not edge-on
            faces = np.abs(cross) > 1e-8
        if faces.any():
            # union per element first: small local unions are cheaper than one union of all faces
            polygons.append(shapely.union_all(shapely.polygons(np.concatenate([tri[faces], tri[faces][:, :1]], axis=1))))
    if not polygons:
        return shapely.Polygon()
    outline = shapely.union_all(np.array(polygons, dtype=object))
    return _clean_outline(outline.simplify(0.01))


def _clean_outline(outline: shapely.Geometry, min_area: float = 0.01) -> shapely.Geometry:
    """Valid polygons only, without the sliver holes and parts that unions of faces leave behind."""
    outline = shapely.make_valid(outline)
    parts = [p for p in shapely.get_parts(outline) if p.geom_type == "Polygon" and p.area >= min_area]
    cleaned = [shapely.Polygon(p.exterior, [r for r in p.interiors if shapely.Polygon(r).area >= min_area])
               for p in parts]
    if not cleaned:
        return shapely.Polygon()
    return shapely.make_valid(shapely.union_all(cleaned))


def _diameter_mm(element: Element) -> float | None:
    for pset in element.properties.values():
        if isinstance(pset, dict):
            for key in ("NominalDiameter", "OuterDiameter", "Diameter"):
                value = pset.get(key)
                if isinstance(value, (int, float)) and value > 0:
                    return float(value) * (1000.0 if value < 5 else 1.0)
    if element.axis is not None and element.vertices is not None:
        d = element.axis[1] - element.axis[0]
        d = d / (np.linalg.norm(d) or 1.0)
        radial = element.vertices - element.vertices.mean(axis=0)
        radial = radial - np.outer(radial @ d, d)
        return round(float(np.linalg.norm(radial, axis=1).max() * 2000.0), 1)
    return None


def _prepare_facilities(model: BimModel) -> list[PreparedFacility]:
    by_facility: dict[str | None, list[Element]] = {}
    for element in model.elements:
        by_facility.setdefault(element.facility, []).append(element)
    facilities = list(model.facilities)
    orphans = by_facility.pop(None, [])
    if orphans:  # elements of the site itself, outside any building or facility
        site = Facility(f"{Path(model.path).stem}-site", "IfcSite", model.project, [])
        facilities.append(site)
        by_facility[site.global_id] = orphans
    prepared = []
    for facility in facilities:
        elements = by_facility.get(facility.global_id, [])
        meshed = [e for e in elements if e.vertices is not None]
        if not meshed:
            continue
        level = _ground_level(facility, meshed)
        origin = np.array([model.site_origin[0], model.site_origin[1], level])
        everything = np.concatenate([e.vertices for e in meshed]) - origin
        outline = footprint(meshed, level, origin)
        if outline.is_empty:
            outline = shapely.convex_hull(shapely.multipoints(everything[:, :2]))
        layer = BIM_LAYER if facility.ifc_class == "IfcBuilding" else FACILITY_LAYER
        nodes = [MeshNode(e.global_id, e.vertices - origin, e.triangles, e.triangle_materials,
                          {"global_id": e.global_id, "ifc_class": e.ifc_class, "name": e.name, "storey": e.storey})
                 for e in meshed]
        glb = encode_glb(nodes, model.materials, root_name=facility.global_id,
                         root_extras={"uid": f"{layer}.{facility.global_id}", "ifc_class": facility.ifc_class})
        lo, hi = everything.min(axis=0), everything.max(axis=0)
        corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
        rows = [ElementRow(e.global_id, e.ifc_class, e.name, e.storey, e.predefined_type, properties_json(e),
                           e.vertices.mean(axis=0) - origin if e.vertices is not None else None,
                           e.axis - origin if e.axis is not None else None,
                           _diameter_mm(e) if e.axis is not None else None) for e in elements]
        prepared.append(PreparedFacility(facility, layer, origin, level, float(everything[:, 2].max()), corners,
                                         outline, glb, len(meshed), rows))
    return prepared


def fit_placement(local: np.ndarray, placed: np.ndarray) -> tuple[np.ndarray, float]:
    """The 4x4 affine that best takes local points to placed ones, and its largest residual (m).

    Over a building the georeference (a plane tangent at the site, reprojected) is affine to
    well under a millimetre, so one matrix places the whole mesh.
    """
    design = np.column_stack([local, np.ones(len(local))])
    solution, *_ = np.linalg.lstsq(design, placed, rcond=None)
    matrix = np.eye(4)
    matrix[:3, :] = solution.T
    residual = float(np.abs(design @ solution - placed).max())
    return matrix, residual


def _place(city, model: BimModel, prepared: list[PreparedFacility], georef, model_name: str, sha: str,
           placement_key: str):
    """Rows of the facility, element and pipe layers for a model placed by `georef`."""
    ground = city.ground()
    facility_rows, element_rows, pipe_rows, notes = [], [], [], []
    for item in prepared:
        uid = f"{item.layer}.{item.facility.global_id}"
        placed_corners = georef.to_crs(item.corners + item.origin)
        matrix, residual = fit_placement(item.corners, placed_corners)
        if residual > 0.01:
            notes.append(f"{uid}: the placement is affine only to {residual:.3f} m")
        base = georef.to_crs(item.origin[None, :])[0]
        outline = _clean_outline(shapely.transform(item.outline, lambda xy: georef.to_crs(
            np.column_stack([xy + item.origin[:2], np.full(len(xy), item.level)]))[:, :2]))
        ground_z = float("nan")
        if ground is not None:
            rep = outline.representative_point()
            ground_z = float(ground.sample(np.array([rep.x]), np.array([rep.y]))[0])
        storeys = [{"name": name, "elevation_m": round(z, 3), "z": round(float(base[2] + z - item.level), 3)}
                   for name, z in item.facility.storeys]
        facility_rows.append((item.layer, {
            "uid": uid, "name": item.facility.name, "height_m": round(item.top, 3),
            "floors": float(sum(1 for _, z in item.facility.storeys if z >= item.level - 0.1)) or np.nan,
            "ifc_class": item.facility.ifc_class, "global_id": item.facility.global_id, "model": model_name,
            "model_sha256": sha, "schema": model.schema, "storeys": json.dumps(storeys, ensure_ascii=False),
            "ground_z": ground_z, "base_z": float(base[2]), "top_z": float(base[2] + item.top),
            "transform": json.dumps(matrix.round(9).tolist()), "glb": f"bim/{item.facility.global_id}-{sha[:12]}.glb",
            "georeference": georef.description, "placement_key": placement_key,
            "element_count": item.element_count, "geometry": outline}))
        centres = np.array([e.centroid if e.centroid is not None else np.zeros(3) for e in item.elements])
        placed = georef.to_crs(centres + item.origin) if len(centres) else np.zeros((0, 3))
        for element, centre in zip(item.elements, placed):
            element_rows.append({
                "uid": f"{ELEMENT_LAYER}.{element.global_id}", "global_id": element.global_id,
                "ifc_class": element.ifc_class, "name": element.name, "storey": element.storey,
                "predefined_type": element.predefined_type, "building": uid, "model": model_name,
                "has_geometry": element.centroid is not None, "properties": element.properties,
                "geometry": shapely.Point(*centre)})
            if element.axis is not None:
                pipe_rows.append({
                    "uid": f"{PIPE_LAYER}.{element.global_id}", "utility": None, "material": None,
                    "diameter_mm": element.diameter_mm, "depth_m": np.nan, "install_year": pd.NA,
                    "bim_model": model_name, "bim_building": uid, "global_id": element.global_id,
                    "name": element.name, "geometry": shapely.LineString(georef.to_crs(element.axis + item.origin))})
    return facility_rows, element_rows, pipe_rows, notes


def _merge(city, layer: str, rows: list[dict], model_name: str, model_column: str = "model"):
    """The layer's rows from other models plus this model's new rows."""
    new = gpd.GeoDataFrame(rows, geometry="geometry", crs=city.crs) if rows else None
    existing = None
    if any(r.name == layer for r in city.layers()):
        existing = city.features(layer)
        if model_column in existing.columns:
            existing = existing[existing[model_column].astype("string").fillna("") != model_name]
    parts = [f for f in (existing, new) if f is not None and len(f)]
    if not parts:
        return None
    merged = pd.concat(parts, ignore_index=True)
    return gpd.GeoDataFrame(merged, geometry="geometry", crs=city.crs)


def _unchanged(city, model_name: str, placement_key: str) -> LayerRecord | None:
    """The stored record if this file, placed the same way, is already in the city with its GLBs."""
    for layer in (BIM_LAYER, FACILITY_LAYER):
        if not any(r.name == layer for r in city.layers()):
            continue
        rows = city.features(layer)
        mine = rows[rows["model"] == model_name] if "model" in rows.columns else rows.iloc[:0]
        if len(mine) and (mine["placement_key"] == placement_key).all() and \
                all((city.root / glb).is_file() for glb in mine["glb"]):
            return city.layer(layer)
    return None


def ingest_ifc(city, path: Path, *, anchor: Anchor | None = None, progress=None) -> LayerRecord:
    """Place an IFC model in the city and write its facilities, elements, pipes and meshes."""
    from twin.workspace import file_sha256

    sha = file_sha256(path)
    model_name = Path(path).name
    dem = [r for r in city.layers() if r.kind == "dem"]
    placement_key = json.dumps([sha, anchor.__dict__ if anchor else None, city.crs.to_string(),
                                [(r.name, r.version) for r in dem]])
    unchanged = _unchanged(city, model_name, placement_key)
    if unchanged is not None:
        unchanged.notes = [f"{model_name} is unchanged and placed as before: nothing to do"]
        return unchanged

    model, prepared, cached = prepare_model(city, path, sha, progress)
    ground = city.ground()
    sample = (lambda x, y: float(ground.sample(np.array([x]), np.array([y]))[0])) if ground else None
    georef = georeference(model, city.crs, anchor, ground=sample)
    facility_rows, element_rows, pipe_rows, place_notes = _place(city, model, prepared, georef, model_name, sha,
                                                                 placement_key)
    notes = [f"placed by {georef.description}"] + list(model.notes) + place_notes
    if cached:
        notes.append("geometry from the cache (file unchanged)")

    (city.root / "bim").mkdir(exist_ok=True)
    for item in prepared:
        target = city.root / "bim" / f"{item.facility.global_id}-{sha[:12]}.glb"
        if not target.exists():
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(item.glb)
            tmp.replace(target)

    records = {}
    source = str(Path(path).resolve())
    for layer, kind in ((BIM_LAYER, "bim"), (FACILITY_LAYER, "facility")):
        rows = [row for lyr, row in facility_rows if lyr == layer]
        merged = _merge(city, layer, rows, model_name)
        if merged is None:
            continue
        if layer == BIM_LAYER:
            merged = _fuse_with_gis(city, merged, progress)
        record = LayerRecord(name=layer, kind=kind, crs=city.crs.to_string(), source=source, source_sha256=sha,
                             notes=notes)
        records[layer] = city._store_frame(record, merged, progress)
    merged = _merge(city, ELEMENT_LAYER, element_rows, model_name)
    if merged is not None:
        record = LayerRecord(name=ELEMENT_LAYER, kind="bim_element", crs=city.crs.to_string(), source=source,
                             source_sha256=sha, notes=[f"{len(element_rows)} elements from {model_name}"])
        records[ELEMENT_LAYER] = city._store_frame(record, merged, progress)
    has_pipe_layer = any(r.name == PIPE_LAYER for r in city.layers())
    if pipe_rows or has_pipe_layer:
        merged = _merge(city, PIPE_LAYER, pipe_rows, model_name, model_column="bim_model")
        changed = pipe_rows or (has_pipe_layer and len(merged if merged is not None else []) !=
                                city.layer(PIPE_LAYER).feature_count)
        if merged is not None and changed:
            record = city.layer(PIPE_LAYER) if has_pipe_layer else LayerRecord(
                name=PIPE_LAYER, kind="pipe", crs=city.crs.to_string(), source=source, source_sha256=sha)
            record.notes = [n for n in record.notes if "from BIM model" not in n] + (
                [f"{len(pipe_rows)} pipe segments from BIM model {model_name}"] if pipe_rows else [])
            records[PIPE_LAYER] = city._store_frame(record, merged, progress)
    if BIM_LAYER in records and "building" in {r.name for r in city.layers()}:
        matched = int(city.features(BIM_LAYER)["unified_id"].str.startswith("building.").sum())
        notes.append(f"{matched} GIS building footprints are represented by BIM models")
    _drop_unused_glbs(city)
    main = records.get(BIM_LAYER) or records.get(FACILITY_LAYER)
    main.notes = notes
    return main


def _fuse_with_gis(city, bim: gpd.GeoDataFrame, progress=None) -> gpd.GeoDataFrame:
    """The BIM rows with their unified ids; the GIS footprints' BIM flags rewritten if they changed."""
    if "building" not in {r.name for r in city.layers()}:
        return bim.assign(unified_id=bim["uid"].astype("string"))
    gis = city.features("building")
    fused_gis, fused_bim = fusion.fuse(gis, bim)
    before = gis["bim_uid"].astype("string").fillna("").tolist() if "bim_uid" in gis.columns else None
    if before != fused_gis["bim_uid"].fillna("").tolist():
        city._store_frame(city.layer("building"), fused_gis, progress)
    return fused_bim


def refresh_fusion(city, progress=None) -> int:
    """Match BIM footprints with GIS buildings; rewrite either layer only where a link changed.

    Returns the number of BIM buildings that stand for a GIS footprint.
    """
    if BIM_LAYER not in {r.name for r in city.layers()}:
        return 0
    bim = city.features(BIM_LAYER)
    fused_bim = _fuse_with_gis(city, bim, progress)
    before_ids = bim["unified_id"].astype("string").fillna("").tolist() if "unified_id" in bim.columns else None
    if before_ids != fused_bim["unified_id"].fillna("").tolist():
        city._store_frame(city.layer(BIM_LAYER), fused_bim, progress)
    return int((fused_bim["unified_id"] != fused_bim["uid"]).sum())


def _drop_unused_glbs(city) -> None:
    used = set()
    for layer in (BIM_LAYER, FACILITY_LAYER):
        if any(r.name == layer for r in city.layers()):
            used.update(city.features(layer)["glb"].dropna().tolist())
    folder = city.root / "bim"
    for glb in folder.glob("*.glb"):
        if f"bim/{glb.name}" not in used:
            glb.unlink(missing_ok=True)


def point_triangle_distance(point: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Distance from one 3D point to each triangle (a[i], b[i], c[i]).

    Examples
    --------
    >>> tri = np.array([[0.0, 0, 0]]), np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]])
    >>> point_triangle_distance(np.array([0.2, 0.2, 3.0]), *tri)
    array([3.])
    >>> point_triangle_distance(np.array([2.0, 0.0, 0.0]), *tri)
    array([1.])
    """
    ab, ac, ap = b - a, c - a, point - a
    normal = np.cross(ab, ac)
    area2 = np.einsum("ij,ij->i", normal, normal)
    with np.errstate(invalid="ignore", divide="ignore"):
        # barycentric coordinates of the point's projection onto each triangle's plane
        v = np.einsum("ij,ij->i", np.cross(ap, ac), normal) / area2
        w = np.einsum("ij,ij->i", np.cross(ab, ap), normal) / area2
        plane = np.abs(np.einsum("ij,ij->i", ap, normal)) / np.sqrt(area2)
    inside = (v >= 0) & (w >= 0) & (v + w <= 1) & (area2 > 1e-18)

    def to_segment(p0: np.ndarray, p1: np.ndarray) -> np.ndarray:
        d = p1 - p0
        length2 = np.einsum("ij,ij->i", d, d)
        t = np.clip(np.einsum("ij,ij->i", point - p0, d) / np.where(length2 > 0, length2, 1), 0, 1)
        return np.linalg.norm(point - (p0 + t[:, None] * d), axis=1)

    edges = np.minimum(np.minimum(to_segment(a, b), to_segment(b, c)), to_segment(c, a))
    return np.where(inside, plane, edges)


@lru_cache(maxsize=32)
def _meshes(path: Path, mtime: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return decode_glb_meshes(path.read_bytes())


def element_at(root: Path, models: gpd.GeoDataFrame, x: float, y: float, z: float,
               tolerance: float = 0.5) -> str | None:
    """The GlobalId of the BIM element whose surface is nearest to a point of the city CRS
    (within `tolerance` metres), among the placed models in `models` (rows of the bim and
    facility layers); None when no element is that close.

    This is how a click in the 3D view becomes an element: the browser reads the clicked
    point from its depth buffer, and the element meshes (the GLBs the 3D tiles serve) say
    which surface is there.
    """
    near = models[models.geometry.intersects(shapely.Point(x, y).buffer(tolerance))]
    best: tuple[float, str | None] = (tolerance, None)
    for _, row in near.iterrows():
        if not isinstance(row.get("transform"), str) or not isinstance(row.get("glb"), str):
            continue
        path = root / row["glb"]
        if not path.is_file():
            continue
        local = np.linalg.inv(np.array(json.loads(row["transform"]))) @ np.array([x, y, z, 1.0])
        point = local[:3]
        for global_id, (vertices, triangles) in _meshes(path, path.stat().st_mtime).items():
            lo, hi = vertices.min(axis=0) - best[0], vertices.max(axis=0) + best[0]
            if (point < lo).any() or (point > hi).any():
                continue
            distance = float(point_triangle_distance(point, *(vertices[triangles[:, k]] for k in range(3))).min())
            if distance < best[0]:
                best = (distance, global_id)
    return best[1]
