"""IFC models (IFC2X3, IFC4, IFC4X3) into meshes, element tables and a georeference.

Reading is IfcOpenShell's: the file is checked (STEP header, schema, complete), the
geometry iterator runs on all cores in world coordinates (metres), and each element's
triangles, materials and property sets are collected into a `BimModel`. Placing that
model in a city is `Georeference`'s job: a map conversion, else the site's latitude and
longitude with true north, else a user's anchor, each turned into one vectorised
function from model coordinates to a target CRS.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pyproj import CRS
from pyproj.exceptions import CRSError

from layers.errors import SourceError, SourceNotFound
from layers.vector import cached_transformer

__all__ = [
    "InvalidIFC", "UnsupportedSchema", "NoGeometry", "NotGeoreferenced",
    "Anchor", "Element", "Facility", "BimModel", "Georeference",
    "read_ifc", "georeference", "parse_anchor", "FACILITY_CLASSES",
]

# Schemas IfcOpenShell reads, and the release candidates it can read as their final form.
SCHEMA_ALIASES = {
    "IFC2X3": "IFC2X3", "IFC4": "IFC4", "IFC4X3": "IFC4X3", "IFC4X3_ADD1": "IFC4X3_ADD1",
    "IFC4X3_ADD2": "IFC4X3_ADD2", "IFC4X3_TC1": "IFC4X3_ADD2", "IFC4X3_RC2": "IFC4X3_ADD2",
    "IFC4X3_RC3": "IFC4X3_ADD2", "IFC4X3_RC4": "IFC4X3_ADD2",
}
FACILITY_CLASSES = ("IfcBuilding", "IfcRoad", "IfcBridge", "IfcRailway", "IfcMarineFacility", "IfcFacility")
# Not physical parts of a building: voids, room volumes, the terrain of the site, annotations.
EXCLUDED_CLASSES = ("IfcOpeningElement", "IfcSpace", "IfcSite", "IfcAnnotation", "IfcGrid", "IfcVirtualElement",
                    "IfcAlignment")
PIPE_CLASSES = ("IfcPipeSegment", "IfcFlowSegment")


class InvalidIFC(SourceError):
    """The file is not a readable IFC model (not STEP, truncated, or malformed)."""


class UnsupportedSchema(InvalidIFC):
    """The IFC schema is not one we read."""


class NoGeometry(InvalidIFC):
    """The model has no element whose body geometry could be built."""


class NotGeoreferenced(SourceError):
    """The model says nowhere where it stands and no anchor was given."""


@dataclass(frozen=True)
class Anchor:
    """Where a model's site origin stands: WGS 84 lon/lat, elevation in metres, and the
    model's rotation in degrees clockwise from true north to its +Y axis."""

    lon: float
    lat: float
    elevation: float | None = None
    rotation_deg: float | None = None


def parse_anchor(text: str) -> Anchor:
    """Parse ``LON,LAT[,ELEV[,ROTATION_DEG]]``.

    Examples
    --------
    >>> parse_anchor("121.40,37.53,12.5,30")
    Anchor(lon=121.4, lat=37.53, elevation=12.5, rotation_deg=30.0)
    """
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"anchor {text!r} is not LON,LAT[,ELEV[,ROTATION_DEG]] in numbers") from None
    if not 2 <= len(values) <= 4:
        raise ValueError(f"anchor {text!r} needs 2 to 4 numbers: LON,LAT[,ELEV[,ROTATION_DEG]]")
    lon, lat = values[:2]
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ValueError(f"anchor {text!r}: longitude must be in -180..180 and latitude in -90..90 (lon first)")
    return Anchor(lon, lat, values[2] if len(values) > 2 else None, values[3] if len(values) > 3 else None)


@dataclass
class Element:
    """One IFC element: identity, place in the spatial structure, properties, and its mesh."""

    global_id: str
    ifc_class: str
    name: str | None
    predefined_type: str | None
    storey: str | None
    facility: str | None  # GlobalId of the IfcBuilding / IfcFacility it belongs to
    properties: dict
    vertices: np.ndarray | None = None  # (n, 3) float64, model coordinates in metres
    triangles: np.ndarray | None = None  # (m, 3) uint32 into vertices
    triangle_materials: np.ndarray | None = None  # (m,) int32 into BimModel.materials
    axis: np.ndarray | None = None  # (k, 3) for pipes: their centre line


@dataclass
class Facility:
    """An IfcBuilding or another IfcFacility (road, bridge, ...) with its storeys."""

    global_id: str
    ifc_class: str
    name: str | None
    storeys: list[tuple[str, float]] = field(default_factory=list)  # (name, elevation m), lowest first


@dataclass
class BimModel:
    """What an IFC file holds, in model coordinates (metres), before it is placed anywhere."""

    path: str
    schema: str
    project: str | None
    facilities: list[Facility]
    elements: list[Element]
    materials: list[tuple[str, tuple[float, float, float, float]]]  # (name, RGBA)
    failed: list[str]  # "IfcClass 'name' (GlobalId)" of elements whose geometry failed
    notes: list[str]
    site_origin: tuple[float, float, float]  # model coordinates of the site placement (metres)
    site_ref: tuple[float, float, float | None] | None  # lat, lon, elevation from IfcSite
    true_north: tuple[float, float] | None  # direction of true north in model XY
    map_conversion: dict | None  # eastings, northings, height, x_axis, scale, crs
    unit_scale: float  # metres per project length unit

    @property
    def with_geometry(self) -> list[Element]:
        """Elements with a body mesh."""
        return [e for e in self.elements if e.vertices is not None]


# -- reading -------------------------------------------------------------------------------

def _check_file(path: Path) -> tuple[str, str]:
    """Check a STEP file's head and tail; return (schema in the header, schema to read it as)."""
    if not path.is_file():
        raise SourceNotFound(path, "file does not exist")
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8192)
        fh.seek(max(0, size - 4096))
        tail = fh.read()
    if not head.lstrip().startswith(b"ISO-10303-21;"):
        raise InvalidIFC(path, "is not an IFC file: it does not start with ISO-10303-21; (a STEP physical file)")
    match = re.search(rb"FILE_SCHEMA\s*\(\s*\(\s*'([^']+)'", head)
    if not match:
        raise InvalidIFC(path, "has no FILE_SCHEMA in its header")
    schema = match.group(1).decode("ascii", "replace").upper()
    if schema not in SCHEMA_ALIASES:
        raise UnsupportedSchema(path, f"uses schema {schema}; twin reads IFC2X3, IFC4 and IFC4X3 "
                                      f"({', '.join(sorted(SCHEMA_ALIASES))})")
    if b"END-ISO-10303-21;" not in tail:
        raise InvalidIFC(path, "is truncated: it does not end with END-ISO-10303-21; (an incomplete download or export?)")
    return schema, SCHEMA_ALIASES[schema]


def _open(path: Path, schema: str, read_as: str, notes: list[str]):
    import ifcopenshell

    try:
        if schema != read_as:
            text = path.read_bytes().decode("latin-1")
            text = re.sub(r"FILE_SCHEMA\s*\(\s*\(\s*'[^']+'\s*\)\s*\)", f"FILE_SCHEMA(('{read_as}'))", text, count=1)
            notes.append(f"read {schema} as {read_as}")
            return ifcopenshell.file.from_string(text)
        return ifcopenshell.open(str(path))
    except Exception as exc:  # IfcOpenShell raises plain RuntimeErrors with the parser's message
        raise InvalidIFC(path, f"cannot be parsed as {schema}: {exc}") from exc


def _describe(product) -> str:
    return f"{product.is_a()} {product.Name or ''!r} ({product.GlobalId})".replace(" ''", "")


def _spatial_children(entity):
    """The spatial elements below a facility (storeys, spaces, parts), without its elements."""
    stack = [entity]
    while stack:
        node = stack.pop()
        for rel in getattr(node, "IsDecomposedBy", ()) or ():
            for child in rel.RelatedObjects:
                if child.is_a("IfcSpatialStructureElement") or child.is_a("IfcSpatialElement"):
                    yield child
                    stack.append(child)


def _spatial_parents(model) -> dict[int, object]:
    """Each entity's parent in the spatial structure: container, aggregate, nest or filled void.

    Built once from the relationships, so climbing to a storey or building is dictionary
    look-ups rather than inverse-attribute queries per element.
    """
    parents: dict[int, object] = {}
    for rel in model.by_type("IfcRelAggregates"):
        for child in rel.RelatedObjects:
            parents[child.id()] = rel.RelatingObject
    for rel in model.by_type("IfcRelNests"):
        for child in rel.RelatedObjects:
            parents.setdefault(child.id(), rel.RelatingObject)
    for rel in model.by_type("IfcRelContainedInSpatialStructure"):
        for child in rel.RelatedElements:
            parents[child.id()] = rel.RelatingStructure
    # a door or window that no storey contains belongs where the wall it fills stands
    voided_by = {rel.RelatedOpeningElement.id(): rel.RelatingBuildingElement for rel in model.by_type("IfcRelVoidsElement")}
    for rel in model.by_type("IfcRelFillsElement"):
        wall = voided_by.get(rel.RelatingOpeningElement.id())
        if wall is not None:
            parents.setdefault(rel.RelatedBuildingElement.id(), wall)
    return parents


def _ancestors(product, parents: dict[int, object]):
    node = product
    for _ in range(64):
        node = parents.get(node.id())
        if node is None:
            return
        yield node


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items() if k != "id"}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _map_conversion(model, unit_scale: float) -> dict | None:
    import ifcopenshell.util.geolocation as geo

    params = geo.get_helmert_transformation_parameters(model)
    if params is None:
        return None
    crs_info = geo.get_crs(model) or {}
    name = crs_info.get("Name")
    if params.e == 0 and params.n == 0:
        return {"placeholder": True, "crs": name}
    map_unit_m = 1.0
    unit = crs_info.get("MapUnit")
    if unit is not None and hasattr(unit, "is_a"):
        map_unit_m = _unit_metres(unit)
    explicit_scale = None
    if model.schema != "IFC2X3":
        op = model.by_type("IfcCoordinateOperation")
        explicit_scale = getattr(op[0], "Scale", None) if op else None
    # Scale takes project units to map units; when the file leaves it out, derive it from the
    # two length units rather than assume 1 (a millimetre model on a metre grid is common).
    scale = float(explicit_scale) if explicit_scale else unit_scale / map_unit_m
    return {"placeholder": False, "crs": name, "eastings": float(params.e), "northings": float(params.n),
            "height": float(params.h), "x_axis": (float(params.xaa), float(params.xao)), "scale": scale,
            "factors": (float(params.factor_x), float(params.factor_y), float(params.factor_z)),
            "map_unit_m": map_unit_m}


def _unit_metres(unit) -> float:
    prefixes = {"MILLI": 1e-3, "CENTI": 1e-2, "DECI": 1e-1, "KILO": 1e3, None: 1.0}
    if unit.is_a("IfcSIUnit"):
        return prefixes.get(unit.Prefix, 1.0)
    if unit.is_a("IfcConversionBasedUnit"):
        factor = unit.ConversionFactor
        return float(factor.ValueComponent.wrappedValue) * _unit_metres(factor.UnitComponent)
    return 1.0


def _site_reference(model) -> tuple[tuple[float, float, float | None] | None, tuple[float, float, float]]:
    import ifcopenshell.util.geolocation as geo
    import ifcopenshell.util.placement as up

    sites = model.by_type("IfcSite")
    if not sites:
        return None, (0.0, 0.0, 0.0)
    site = sites[0]
    origin = (0.0, 0.0, 0.0)
    if site.ObjectPlacement is not None:
        origin = tuple(float(v) for v in up.get_local_placement(site.ObjectPlacement)[:3, 3])
    if site.RefLatitude is None or site.RefLongitude is None:
        return None, origin
    lat = geo.dms2dd(*site.RefLatitude)
    lon = geo.dms2dd(*site.RefLongitude)
    if lat == 0 and lon == 0:
        return None, origin  # a placeholder, not a location
    return (lat, lon, float(site.RefElevation) if site.RefElevation is not None else None), origin


def _true_north(model) -> tuple[float, float] | None:
    for context in model.by_type("IfcGeometricRepresentationContext", include_subtypes=False):
        direction = getattr(context, "TrueNorth", None)
        if direction is not None:
            x, y = direction.DirectionRatios[:2]
            norm = math.hypot(x, y)
            if norm > 0:
                return (x / norm, y / norm)
    return None


def _rgba(material) -> tuple[float, float, float, float]:
    """A style's diffuse colour and opacity, with unset (NaN) parts at their defaults."""
    rgb = [float(c) for c in material.diffuse.components]
    rgb = [min(max(c, 0.0), 1.0) if math.isfinite(c) else 0.8 for c in rgb]
    transparency = float(material.transparency) if material.transparency is not None else 0.0
    alpha = 1.0 - transparency if math.isfinite(transparency) else 1.0
    return (*[round(c, 4) for c in rgb], round(min(max(alpha, 0.0), 1.0), 4))


def _pipe_axis(vertices: np.ndarray) -> np.ndarray:
    """A straight segment's centre line: the principal axis through the mesh, end to end."""
    centre = vertices.mean(axis=0)
    _, _, vt = np.linalg.svd(vertices - centre, full_matrices=False)
    direction = vt[0]
    t = (vertices - centre) @ direction
    return np.vstack([centre + t.min() * direction, centre + t.max() * direction])


def read_ifc(path: str | Path, *, threads: int | None = None,
             progress: Callable[[int | None], Callable[[int], None]] | None = None) -> BimModel:
    """Read an IFC file: facilities, storeys, elements with properties and body meshes.

    The geometry iterator runs on `threads` cores (default: all). An element whose
    geometry fails is skipped and named in `failed`; a model with no geometry at all is
    refused with NoGeometry naming the elements that failed.
    """
    import ifcopenshell
    import ifcopenshell.geom
    import ifcopenshell.util.element as ue
    import ifcopenshell.util.placement as up
    import ifcopenshell.util.shape as us
    import ifcopenshell.util.unit as uu

    path = Path(path)
    notes: list[str] = []
    schema, read_as = _check_file(path)
    model = _open(path, schema, read_as, notes)
    unit_scale = float(uu.calculate_unit_scale(model))

    facilities_by_id = {}
    facilities = []
    for cls in FACILITY_CLASSES:
        try:
            found = model.by_type(cls, include_subtypes=False)
        except RuntimeError:
            continue  # not in this schema (IfcRoad in IFC4)
        for entity in found:
            if entity.id() in facilities_by_id:
                continue
            storeys = []
            for storey in _spatial_children(entity):
                if storey.is_a("IfcBuildingStorey"):
                    elevation = up.get_local_placement(storey.ObjectPlacement)[2, 3] * unit_scale \
                        if storey.ObjectPlacement is not None else (storey.Elevation or 0.0) * unit_scale
                    storeys.append((storey.Name or storey.GlobalId, float(elevation)))
            facility = Facility(entity.GlobalId, entity.is_a(), entity.Name, sorted(storeys, key=lambda s: s[1]))
            facilities_by_id[entity.id()] = facility
            facilities.append(facility)

    products = [p for p in model.by_type("IfcProduct")
                if not any(p.is_a(c) for c in EXCLUDED_CLASSES + ("IfcSpatialElement", "IfcSpatialStructureElement"))
                and p.id() not in facilities_by_id]
    parents = _spatial_parents(model)
    elements: dict[str, Element] = {}
    for product in products:
        ancestors = list(_ancestors(product, parents))
        facility = next((facilities_by_id[a.id()] for a in ancestors if a.id() in facilities_by_id), None)
        if facility is None and len(facilities) == 1:
            facility = facilities[0]
        storey = next((a for a in ancestors if a.is_a("IfcBuildingStorey")), None)
        elements[product.GlobalId] = Element(
            global_id=product.GlobalId, ifc_class=product.is_a(), name=product.Name,
            predefined_type=ue.get_predefined_type(product),
            storey=(storey.Name or storey.GlobalId) if storey is not None else None,
            facility=facility.global_id if facility else None,
            properties=_json_safe(ue.get_psets(product)))

    settings = ifcopenshell.geom.settings()
    settings.set("use-world-coords", True)
    iterator = ifcopenshell.geom.iterator(settings, model, threads or multiprocessing.cpu_count(),
                                          exclude=EXCLUDED_CLASSES)
    materials: list[tuple[str, tuple[float, float, float, float]]] = []
    material_index: dict[tuple, int] = {}
    with_body = [p for p in products if p.Representation is not None]
    tick = progress(len(with_body)) if progress else None
    if iterator.initialize():
        while True:
            shape = iterator.get()
            element = elements.get(shape.guid)
            geometry = shape.geometry
            if element is not None and len(geometry.faces):
                vertices = us.get_vertices(geometry).astype("float64")
                triangles = us.get_faces(geometry).astype("uint32")
                ids = np.asarray(geometry.material_ids, dtype="int32")
                local_to_global = np.zeros(max(len(geometry.materials), 1), dtype="int32")
                for i, mat in enumerate(geometry.materials):
                    rgba = _rgba(mat)
                    key = (mat.name, rgba)
                    if key not in material_index:
                        material_index[key] = len(materials)
                        materials.append((mat.name, rgba))
                    local_to_global[i] = material_index[key]
                if not len(geometry.materials):
                    key = ("default", (0.8, 0.8, 0.8, 1.0))
                    if key not in material_index:
                        material_index[key] = len(materials)
                        materials.append(key)
                    local_to_global[0] = material_index[key]
                element.vertices = vertices * 1.0  # the iterator already gives metres
                element.triangles = triangles
                element.triangle_materials = local_to_global[np.clip(ids, 0, len(local_to_global) - 1)]
                if element.ifc_class in PIPE_CLASSES or (element.ifc_class == "IfcFlowSegment"
                                                         and _is_pipe(model, shape.guid)):
                    element.axis = _pipe_axis(vertices)
            if tick:
                tick(1)
            if not iterator.next():
                break

    failed = [_describe(p) for p in with_body
              if p.GlobalId in elements and elements[p.GlobalId].vertices is None]
    if not any(e.vertices is not None for e in elements.values()):
        named = "; ".join(failed[:10]) if failed else "it has no elements with a body representation"
        raise NoGeometry(path, f"has no element whose geometry could be built: {named}")
    if failed:
        notes.append(f"skipped {len(failed)} elements whose geometry failed: {'; '.join(failed[:10])}"
                     f"{' ...' if len(failed) > 10 else ''}")

    site_ref, site_origin = _site_reference(model)
    project = model.by_type("IfcProject")
    return BimModel(
        path=str(path), schema=schema, project=project[0].Name if project else None,
        facilities=facilities, elements=list(elements.values()), materials=materials, failed=failed,
        notes=notes, site_origin=tuple(v * unit_scale for v in site_origin), site_ref=site_ref,
        true_north=_true_north(model), map_conversion=_map_conversion(model, unit_scale), unit_scale=unit_scale)


def _is_pipe(model, guid: str) -> bool:
    """True for flow segments whose type says pipe (IFC2X3 IfcFlowSegment + IfcPipeSegmentType)."""
    import ifcopenshell.util.element as ue

    product = model.by_guid(guid)
    if not product.is_a("IfcFlowSegment"):
        return False
    element_type = ue.get_type(product)
    return element_type is None or element_type.is_a("IfcPipeSegmentType") or product.is_a("IfcPipeSegment")


# -- georeferencing ------------------------------------------------------------------------

@dataclass
class Georeference:
    """How model coordinates (metres) become coordinates of a target CRS."""

    method: str  # "map_conversion", "site" or "anchor"
    description: str
    _apply: Callable[[np.ndarray], np.ndarray]

    def to_crs(self, xyz: np.ndarray) -> np.ndarray:
        """Model coordinates (n, 3) to (easting, northing, height) in the target CRS."""
        xyz = np.asarray(xyz, dtype="float64").reshape(-1, 3)
        return self._apply(xyz)


def _tangent_plane(lat: float, lon: float, height: float, north: tuple[float, float], origin: np.ndarray,
                   target: CRS) -> Callable[[np.ndarray], np.ndarray]:
    """Model XY rotated so true north is north, on a transverse Mercator plane at (lat, lon)."""
    nx, ny = north
    local = CRS.from_proj4(f"+proj=tmerc +lat_0={lat} +lon_0={lon} +k=1 +x_0=0 +y_0=0 +ellps=GRS80 +units=m +no_defs")
    to_target = cached_transformer(local, target)

    def apply(xyz: np.ndarray) -> np.ndarray:
        d = xyz - origin
        east = d[:, 0] * ny - d[:, 1] * nx
        north_ = d[:, 0] * nx + d[:, 1] * ny
        x, y = to_target.transform(east, north_)
        return np.column_stack([x, y, height + d[:, 2]])

    return apply


def georeference(model: BimModel, target: CRS, anchor: Anchor | None = None,
                 ground: Callable[[float, float], float] | None = None) -> Georeference:
    """Choose how to place `model` in `target`: anchor if given, else map conversion, else site.

    `ground(x, y)` gives the ground elevation in `target` for anchors without an elevation.
    Raises NotGeoreferenced naming what the file lacks and how to give an anchor.
    """
    origin = np.asarray(model.site_origin, dtype="float64")
    if anchor is not None:
        if anchor.rotation_deg is not None:
            r = math.radians(anchor.rotation_deg)
            north = (-math.sin(r), math.cos(r))
        else:
            north = model.true_north or (0.0, 1.0)
        elevation = anchor.elevation
        if elevation is None:
            z = float("nan")
            if ground is not None:
                x, y = cached_transformer(CRS.from_epsg(4326), target).transform(anchor.lon, anchor.lat)
                z = ground(x, y)
            elevation = z if z == z else 0.0
        rotation = math.degrees(math.atan2(-north[0], north[1]))
        return Georeference("anchor", f"anchor {anchor.lon:.6f},{anchor.lat:.6f}, elevation {elevation:.2f} m, "
                                      f"rotated {rotation:.2f} deg from true north",
                            _tangent_plane(anchor.lat, anchor.lon, elevation, north, origin, target))
    conversion = model.map_conversion
    if conversion and not conversion["placeholder"]:
        try:
            source = CRS.from_user_input(conversion["crs"])
        except (CRSError, TypeError) as exc:
            raise NotGeoreferenced(model.path, f"its IfcProjectedCRS {conversion['crs']!r} is not a CRS pyproj knows "
                                               f"({exc}); give the model's place with --anchor LON,LAT[,ELEV[,ROTATION_DEG]]") from exc
        e0, n0, h0 = conversion["eastings"], conversion["northings"], conversion["height"]
        theta = math.atan2(conversion["x_axis"][1], conversion["x_axis"][0])
        fx, fy, fz = conversion["factors"]
        scale = conversion["scale"]
        # model metres -> project units -> map units; map units -> metres is pyproj's job
        per_metre = scale / model.unit_scale
        to_target = cached_transformer(source, target)
        unit_m = conversion["map_unit_m"]

        def apply(xyz: np.ndarray) -> np.ndarray:
            x, y, z = (xyz * per_metre).T
            east = e0 + fx * (x * math.cos(theta)) - fy * (y * math.sin(theta))
            north = n0 + fx * (x * math.sin(theta)) + fy * (y * math.cos(theta))
            tx, ty = to_target.transform(east, north)
            return np.column_stack([tx, ty, (h0 + fz * z) * unit_m])

        return Georeference("map_conversion", f"IfcMapConversion to {conversion['crs']} (E {e0:.2f}, N {n0:.2f}, "
                                              f"H {h0:.2f}, rotation {math.degrees(theta):.3f} deg)", apply)
    if model.site_ref is not None:
        lat, lon, elevation = model.site_ref
        north = model.true_north or (0.0, 1.0)
        return Georeference("site", f"IfcSite RefLatitude {lat:.7f}, RefLongitude {lon:.7f}, RefElevation "
                                    f"{elevation if elevation is not None else 0:.2f} m, true north {north}",
                            _tangent_plane(lat, lon, elevation or 0.0, north, origin, target))
    lacks = []
    if conversion is None:
        lacks.append("no IfcMapConversion")
    else:
        lacks.append("an IfcMapConversion at eastings and northings 0 (a placeholder)")
    lacks.append("no IfcSite RefLatitude/RefLongitude" if model.site_ref is None else "")
    raise NotGeoreferenced(model.path, f"is not georeferenced ({', '.join(x for x in lacks if x)}); give its place "
                                       f"with --anchor LON,LAT[,ELEV[,ROTATION_DEG]], e.g. --anchor 121.40,37.53")


def properties_json(element: Element) -> str:
    """An element's property sets and quantities as JSON text."""
    return json.dumps(element.properties, ensure_ascii=False, separators=(",", ":"))
