"""Layer specs: how a source's own columns map onto a kind's canonical fields.

A spec is a small TOML (or JSON) file::

    kind = "pipe"
    id = "管线编号"              # column giving stable feature ids (default: file order)
    crs = "EPSG:4549"            # for sources that carry no CRS

    [fields]
    diameter_mm = "管径"                          # a column, taken as it is
    depth_m = { column = "埋深" }
    material = "材质"
    utility = { value = "water" }               # a constant for every feature

    [values.utility]                            # source codes -> canonical values
    JS = "water"

A field given as ``{ column = "diameter", scale = 1000 }`` is multiplied (metres to
millimetres here). Columns that no field maps are kept as attributes.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from layers.errors import SpecError, SourceNotFound
from layers.kinds import LayerKind

__all__ = ["FieldSource", "LayerSpec", "load_spec"]


@dataclass(frozen=True)
class FieldSource:
    """Where one canonical field comes from: a column (optionally scaled) or a constant."""

    column: str | None = None
    value: Any = None
    scale: float | None = None


@dataclass(frozen=True)
class LayerSpec:
    """A parsed layer spec; the empty spec maps same-named columns only."""

    kind: str | None = None
    id_column: str | None = None
    crs: str | None = None
    source_layer: str | None = None
    fields: dict[str, FieldSource] = field(default_factory=dict)
    values: dict[str, dict[str, Any]] = field(default_factory=dict)
    elevation_scale: float = 1.0
    path: str | None = None

    def check_against(self, kind: LayerKind, columns: list[str], source: str) -> None:
        """Raise SpecError if the spec names a field the kind lacks or a column the source lacks."""
        unknown = [name for name in self.fields if name not in kind.fields]
        if unknown:
            raise SpecError(self.path, f"fields {unknown} are not fields of kind {kind.name!r}; "
                                       f"its fields are {list(kind.fields)}")
        missing = [(name, src.column) for name, src in self.fields.items()
                   if src.column is not None and src.column not in columns]
        if self.id_column is not None and self.id_column not in columns:
            missing.append(("id", self.id_column))
        if missing:
            detail = ", ".join(f"{name} <- {col!r}" for name, col in missing)
            raise SpecError(self.path, f"names columns that {source} does not have: {detail}; "
                                       f"its columns are {columns}")


def _field_source(spec_path: str, name: str, raw: Any) -> FieldSource:
    if isinstance(raw, str):
        return FieldSource(column=raw)
    if isinstance(raw, dict):
        extra = set(raw) - {"column", "value", "scale"}
        if extra or ("column" in raw) == ("value" in raw):
            raise SpecError(spec_path, f"field {name!r} needs exactly one of 'column' or 'value' "
                                       f"(and optionally 'scale'), got {raw}")
        scale = raw.get("scale")
        if scale is not None and not isinstance(scale, (int, float)):
            raise SpecError(spec_path, f"field {name!r}: scale must be a number, got {scale!r}")
        return FieldSource(column=raw.get("column"), value=raw.get("value"),
                           scale=float(scale) if scale is not None else None)
    raise SpecError(spec_path, f"field {name!r} must be a column name or a table, got {raw!r}")


def load_spec(path: str | Path) -> LayerSpec:
    """Read a layer spec from a TOML or JSON file."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFound(path, "spec file does not exist")
    text = path.read_bytes()
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text.decode("utf-8"))
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(path, f"is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {exc}") from exc
    known = {"kind", "id", "crs", "source_layer", "fields", "values", "elevation_scale"}
    extra = set(raw) - known
    if extra:
        raise SpecError(path, f"unknown keys {sorted(extra)}; a spec may have {sorted(known)}")
    fields = raw.get("fields", {})
    values = raw.get("values", {})
    if not isinstance(fields, dict) or not isinstance(values, dict):
        raise SpecError(path, "'fields' and 'values' must be tables")
    return LayerSpec(
        kind=raw.get("kind"),
        id_column=raw.get("id"),
        crs=raw.get("crs"),
        source_layer=raw.get("source_layer"),
        fields={name: _field_source(str(path), name, src) for name, src in fields.items()},
        values={name: dict(mapping) for name, mapping in values.items()},
        elevation_scale=float(raw.get("elevation_scale", 1.0)),
        path=str(path),
    )
