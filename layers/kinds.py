"""Layer kinds of the city model and their canonical fields.

A kind says which geometry a layer holds and which named, typed fields every feature
has; a layer spec maps a source's own column names onto these. Everything else a source
carries is kept as plain attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["GEOMETRY_TYPE_NAMES", "FieldType", "LayerKind", "KINDS", "UTILITIES", "UTILITY_SYNONYMS", "layer_kind"]

FieldType = str  # one of "str", "float", "int", "bool", "date"

# shapely.get_type_id -> geometry type name
GEOMETRY_TYPE_NAMES = {0: "Point", 1: "LineString", 2: "LinearRing", 3: "Polygon", 4: "MultiPoint",
                       5: "MultiLineString", 6: "MultiPolygon", 7: "GeometryCollection"}

UTILITIES = ("water", "storm", "sewage", "combined", "gas", "heat", "power", "telecom")

# Names a Chinese pipe survey (or an English one) uses for each utility.
UTILITY_SYNONYMS: dict[str, str] = {
    "给水": "water", "供水": "water", "上水": "water", "js": "water", "potable": "water",
    "雨水": "storm", "ys": "storm", "stormwater": "storm", "drainage": "storm",
    "污水": "sewage", "ws": "sewage", "sewer": "sewage", "wastewater": "sewage",
    "合流": "combined", "雨污合流": "combined", "hs": "combined",
    "燃气": "gas", "煤气": "gas", "天然气": "gas", "rq": "gas",
    "热力": "heat", "供热": "heat", "rl": "heat", "district heating": "heat",
    "电力": "power", "dl": "power", "electric": "power", "electricity": "power",
    "通信": "telecom", "电信": "telecom", "tx": "telecom", "communication": "telecom",
}


@dataclass(frozen=True)
class LayerKind:
    """A kind of model layer: its geometry family and canonical fields."""

    name: str
    geometry: str  # "point", "line", "polygon", "point|polygon" or "raster"
    fields: dict[str, FieldType] = field(default_factory=dict)
    description: str = ""

    @property
    def is_raster(self) -> bool:
        """True for kinds stored as rasters rather than feature tables."""
        return self.geometry == "raster"

    @property
    def from_ifc(self) -> bool:
        """True for kinds that only the IFC reader writes."""
        return self.name in ("bim", "facility", "bim_element")

    def accepts(self, geom_type: str) -> bool:
        """True when a shapely geometry type name fits this kind."""
        family = {
            "Point": "point", "MultiPoint": "point",
            "LineString": "line", "MultiLineString": "line",
            "Polygon": "polygon", "MultiPolygon": "polygon",
        }.get(geom_type)
        return family is not None and family in self.geometry.split("|")


_AREA = {"name": "str"}
_SMART = {"name": "str", "smart": "bool"}
_RANGE = {"name": "str", "range_m": "float"}

KINDS: dict[str, LayerKind] = {
    k.name: k
    for k in [
        LayerKind("building", "polygon", {"name": "str", "height_m": "float", "floors": "float"},
                  "building footprints, extruded by height (floors may be fractional: half storeys)"),
        LayerKind("pipe", "line", {"utility": "str", "material": "str", "diameter_mm": "float",
                                   "depth_m": "float", "install_year": "int"},
                  "underground pipe segments; depth_m is the cover depth"),
        LayerKind("sensor", "point", {"sensor_id": "str", "property": "str", "unit": "str", "pipe_id": "str"},
                  "monitoring sensors, optionally on a pipe segment"),
        LayerKind("map_sheet", "polygon", {"scale": "int", "sheet_id": "str", "survey_date": "date"},
                  "surveyed large-scale topographic map sheets"),
        LayerKind("planning_area", "polygon", _AREA, "the urban planning area"),
        LayerKind("district", "polygon", _AREA, "administrative districts"),
        LayerKind("urban_area", "polygon", _AREA, "the built-up urban area"),
        LayerKind("key_area", "polygon", _AREA, "key public areas"),
        LayerKind("green", "polygon", _AREA, "green space"),
        LayerKind("lamp", "point", _SMART, "street lamps"),
        LayerKind("camera", "point", _RANGE, "video surveillance cameras"),
        LayerKind("base_station", "point", _RANGE, "mobile network base stations"),
        LayerKind("weather_station", "point", _AREA, "automatic weather stations"),
        LayerKind("manhole", "point", {"name": "str", "utility": "str", "depth_m": "float"},
                  "manholes (inspection chambers)"),
        LayerKind("community", "point|polygon", _SMART, "residential communities"),
        LayerKind("school", "point|polygon", _SMART, "schools and campuses"),
        LayerKind("dem", "raster", {}, "ground elevation in metres"),
        # Written by the IFC reader, not ingested from GIS files:
        LayerKind("bim", "polygon", {"name": "str", "height_m": "float", "floors": "float"},
                  "BIM buildings (IfcBuilding): footprint, storeys, a GLB mesh per building"),
        LayerKind("facility", "polygon", {"name": "str"},
                  "other BIM facilities (IfcRoad, IfcBridge, IfcRailway, IfcMarineFacility)"),
        LayerKind("bim_element", "point", {"name": "str"},
                  "elements of BIM models: GlobalId, class, storey, property sets"),
    ]
}


def layer_kind(name: str) -> LayerKind:
    """Return the kind called `name`, or raise ValueError listing the known kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown layer kind {name!r}; known kinds: {', '.join(KINDS)}") from None
