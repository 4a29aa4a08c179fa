"""Small IFC models made with ifcopenshell.api for the edge cases the public samples lack."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ifcopenshell
import ifcopenshell.api.aggregate
import ifcopenshell.api.context
import ifcopenshell.api.geometry
import ifcopenshell.api.georeference
import ifcopenshell.api.project
import ifcopenshell.api.root
import ifcopenshell.api.spatial
import ifcopenshell.api.unit
import ifcopenshell.util.geolocation


def make_model(path: Path, *, schema: str = "IFC4", walls: int = 2, map_conversion: dict | None = None,
               crs_name: str = "EPSG:4549", site_lat_lon: tuple[float, float] | None = None,
               pipe: bool = False, csg_element: bool = False, millimetres: bool = False) -> Path:
    """A one-storey building with `walls` walls 10 m long along +X (one every 6 m in Y).

    Options add an IfcMapConversion, an IfcSite RefLatitude/RefLongitude, a horizontal
    IfcPipeSegment 8 m long along +X at 2 m height, or a CSG element whose geometry fails.
    """
    model = ifcopenshell.api.project.create_file(version=schema)
    project = ifcopenshell.api.root.create_entity(model, ifc_class="IfcProject", name="test project")
    length = ifcopenshell.api.unit.add_si_unit(model, unit_type="LENGTHUNIT", prefix="MILLI" if millimetres else None)
    ifcopenshell.api.unit.assign_unit(model, units=[length])
    scale = 1000.0 if millimetres else 1.0  # project units per metre, for entities made by hand
    context = ifcopenshell.api.context.add_context(model, context_type="Model")
    body = ifcopenshell.api.context.add_context(model, context_type="Model", context_identifier="Body",
                                                target_view="MODEL_VIEW", parent=context)
    site = ifcopenshell.api.root.create_entity(model, ifc_class="IfcSite", name="site")
    building = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuilding", name="test building")
    storey = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingStorey", name="ground floor")
    ifcopenshell.api.aggregate.assign_object(model, relating_object=project, products=[site])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=site, products=[building])
    ifcopenshell.api.aggregate.assign_object(model, relating_object=building, products=[storey])
    for entity in (site, building, storey):
        ifcopenshell.api.geometry.edit_object_placement(model, product=entity)
    for i in range(walls):
        wall = ifcopenshell.api.root.create_entity(model, ifc_class="IfcWall", name=f"wall {i}")
        matrix = np.eye(4)
        matrix[1, 3] = 6.0 * i
        ifcopenshell.api.geometry.edit_object_placement(model, product=wall, matrix=matrix, is_si=True)
        rep = ifcopenshell.api.geometry.add_wall_representation(model, context=body, length=10, height=3,
                                                                thickness=0.2)
        ifcopenshell.api.geometry.assign_representation(model, product=wall, representation=rep)
        ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=[wall])
    if pipe:
        segment = ifcopenshell.api.root.create_entity(model, ifc_class="IfcPipeSegment", name="DN200")
        profile = model.create_entity("IfcCircleProfileDef", ProfileType="AREA", Radius=0.1 * scale)
        # extrude along the placement's Z, which we turn to point along world +X
        matrix = np.array([[0, 0, 1, 1], [1, 0, 0, 3], [0, 1, 0, 2], [0, 0, 0, 1]], dtype=float)
        ifcopenshell.api.geometry.edit_object_placement(model, product=segment, matrix=matrix, is_si=True)
        rep = ifcopenshell.api.geometry.add_profile_representation(model, context=body, profile=profile, depth=8)
        ifcopenshell.api.geometry.assign_representation(model, product=segment, representation=rep)
        ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=[segment])
    if csg_element:
        proxy = ifcopenshell.api.root.create_entity(model, ifc_class="IfcBuildingElementProxy", name="cone marker")
        ifcopenshell.api.geometry.edit_object_placement(model, product=proxy)
        origin = model.create_entity("IfcAxis2Placement3D", Location=model.create_entity(
            "IfcCartesianPoint", Coordinates=(0.0, 0.0, 0.0)))
        cone = model.create_entity("IfcRightCircularCone", Position=origin, Height=2.0 * scale, BottomRadius=0.5 * scale)
        solid = model.create_entity("IfcCsgSolid", TreeRootExpression=cone)
        shape = model.create_entity("IfcShapeRepresentation", ContextOfItems=body, RepresentationIdentifier="Body",
                                    RepresentationType="CSG", Items=[solid])
        proxy.Representation = model.create_entity("IfcProductDefinitionShape", Representations=[shape])
        ifcopenshell.api.spatial.assign_container(model, relating_structure=storey, products=[proxy])
    if map_conversion is not None:
        ifcopenshell.api.georeference.add_georeferencing(model)
        ifcopenshell.api.georeference.edit_georeferencing(
            model, coordinate_operation=map_conversion, projected_crs={"Name": crs_name})
    if site_lat_lon is not None:
        site.RefLatitude = tuple(int(v) for v in ifcopenshell.util.geolocation.dd2dms(site_lat_lon[0]))
        site.RefLongitude = tuple(int(v) for v in ifcopenshell.util.geolocation.dd2dms(site_lat_lon[1]))
        site.RefElevation = 12.0
    model.write(str(path))
    return path
