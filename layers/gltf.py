"""A small binary glTF 2.0 (GLB) writer: one node per element, picked by name in a browser.

Meshes come in the city's axes (x east, y north, z up, metres, relative to a local
origin) and are written Y-up as glTF requires: (x, y, z) -> (x, z, -y).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field

import numpy as np

__all__ = ["MeshNode", "encode_glb", "decode_glb_json", "decode_glb_meshes"]

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_FLOAT = 5126
_UNSIGNED_INT = 5125


@dataclass
class MeshNode:
    """One pickable node: a name (the GlobalId), extras, triangles with a material each."""

    name: str
    vertices: np.ndarray  # (n, 3) x east, y north, z up, metres from the origin
    triangles: np.ndarray  # (m, 3) indices into vertices
    triangle_materials: np.ndarray  # (m,) indices into the materials list
    extras: dict = field(default_factory=dict)


def _pad(data: bytes, fill: bytes = b"\x00") -> bytes:
    return data + fill * (-len(data) % 4)


def encode_glb(nodes: list[MeshNode], materials: list[tuple[str, tuple[float, float, float, float]]],
               *, root_name: str = "model", root_extras: dict | None = None) -> bytes:
    """Encode element meshes as one GLB: a root node whose children are the element nodes."""
    chunks: list[bytes] = []
    offset = 0
    buffer_views: list[dict] = []
    accessors: list[dict] = []
    meshes: list[dict] = []
    gltf_nodes: list[dict] = [{"name": root_name, "children": [], **({"extras": root_extras} if root_extras else {})}]
    used_materials: dict[int, int] = {}

    def add_view(data: bytes, target: int) -> int:
        nonlocal offset
        buffer_views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(data), "target": target})
        padded = _pad(data)
        chunks.append(padded)
        offset += len(padded)
        return len(buffer_views) - 1

    for node in nodes:
        if node.triangles is None or not len(node.triangles):
            continue
        primitives = []
        yup = np.column_stack([node.vertices[:, 0], node.vertices[:, 2], -node.vertices[:, 1]]).astype("float32")
        for material in np.unique(node.triangle_materials):
            tris = node.triangles[node.triangle_materials == material]
            used = np.unique(tris)
            remap = np.full(len(yup), -1, dtype="int64")
            remap[used] = np.arange(len(used))
            positions = yup[used]
            indices = remap[tris].astype("uint32").ravel()
            pos_view = add_view(positions.tobytes(), _ARRAY_BUFFER)
            accessors.append({"bufferView": pos_view, "componentType": _FLOAT, "count": len(positions), "type": "VEC3",
                              "min": positions.min(axis=0).tolist(), "max": positions.max(axis=0).tolist()})
            pos_accessor = len(accessors) - 1
            idx_view = add_view(indices.tobytes(), _ELEMENT_ARRAY_BUFFER)
            accessors.append({"bufferView": idx_view, "componentType": _UNSIGNED_INT, "count": len(indices),
                              "type": "SCALAR"})
            if int(material) not in used_materials:
                used_materials[int(material)] = len(used_materials)
            primitives.append({"attributes": {"POSITION": pos_accessor}, "indices": len(accessors) - 1,
                               "material": used_materials[int(material)]})
        meshes.append({"name": node.name, "primitives": primitives})
        gltf_nodes.append({"name": node.name, "mesh": len(meshes) - 1, "extras": node.extras})
        gltf_nodes[0]["children"].append(len(gltf_nodes) - 1)

    gltf_materials = []
    for material, _ in sorted(used_materials.items(), key=lambda kv: kv[1]):
        name, (r, g, b, a) = materials[material]
        entry = {"name": name, "pbrMetallicRoughness": {"baseColorFactor": [r, g, b, a], "metallicFactor": 0.0,
                                                         "roughnessFactor": 0.9}, "doubleSided": True}
        if a < 1.0:
            entry["alphaMode"] = "BLEND"
        gltf_materials.append(entry)

    binary = b"".join(chunks)
    document = {
        "asset": {"version": "2.0", "generator": "twin"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": gltf_nodes,
    }
    if meshes:
        document.update({"meshes": meshes, "materials": gltf_materials, "accessors": accessors,
                         "bufferViews": buffer_views, "buffers": [{"byteLength": len(binary)}]})
    json_chunk = _pad(json.dumps(document, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8"), b" ")
    parts = [struct.pack("<II", len(json_chunk), 0x4E4F534A), json_chunk]
    if meshes:
        parts += [struct.pack("<II", len(binary), 0x004E4942), binary]
    body = b"".join(parts)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def decode_glb_json(data: bytes) -> dict:
    """The JSON chunk of a GLB (for tests and inspection)."""
    magic, version, _ = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise ValueError("not a glTF 2.0 binary")
    length, kind = struct.unpack_from("<II", data, 12)
    if kind != 0x4E4F534A:
        raise ValueError("first GLB chunk is not JSON")
    return json.loads(data[20:20 + length])


def decode_glb_meshes(data: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The meshes of a GLB that `encode_glb` wrote, by node name: vertices back in the
    city's axes (x east, y north, z up) and triangles, the primitives of a node merged."""
    document = decode_glb_json(data)
    json_length = struct.unpack_from("<I", data, 12)[0]
    binary = data[20 + json_length + 8:]
    views, accessors = document.get("bufferViews", []), document.get("accessors", [])

    def read(index: int, dtype: str, width: int) -> np.ndarray:
        accessor = accessors[index]
        view = views[accessor["bufferView"]]
        start = view.get("byteOffset", 0) + accessor.get("byteOffset", 0)
        count = accessor["count"] * {"SCALAR": 1, "VEC3": 3}[accessor["type"]]
        return np.frombuffer(binary, dtype=dtype, count=count, offset=start).reshape(-1, width)

    meshes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for node in document.get("nodes", []):
        if "mesh" not in node:
            continue
        vertices, triangles, base = [], [], 0
        for primitive in document["meshes"][node["mesh"]]["primitives"]:
            yup = read(primitive["attributes"]["POSITION"], "<f4", 3).astype("float64")
            vertices.append(np.column_stack([yup[:, 0], -yup[:, 2], yup[:, 1]]))
            triangles.append(read(primitive["indices"], "<u4", 3).astype("int64") + base)
            base += len(yup)
        meshes[node["name"]] = (np.concatenate(vertices), np.concatenate(triangles))
    return meshes
