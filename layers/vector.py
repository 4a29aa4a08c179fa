"""Vector sources (GeoJSON, GeoPackage, Shapefile, zipped Shapefile, FlatGeobuf) into canonical layers.

Reading goes through pyogrio's Arrow stream, so a file of a million features is read in
batches with a progress bar; everything after that is vectorized over the whole layer.
"""

from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyogrio
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError

from layers.errors import (
    EmptySource,
    InvalidAttribute,
    InvalidGeometry,
    MissingCRS,
    SourceNotFound,
    SpecError,
    UnknownFormat,
    UnsupportedCRS,
    WrongGeometryType,
)
from layers.kinds import GEOMETRY_TYPE_NAMES, UTILITIES, UTILITY_SYNONYMS, LayerKind
from layers.spec import FieldSource, LayerSpec

__all__ = ["VECTOR_SUFFIXES", "PreparedLayer", "cached_transformer", "parse_crs", "read_vector", "prepare_layer"]

VECTOR_SUFFIXES = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG", ".shp": "ESRI Shapefile",
                   ".zip": "ESRI Shapefile (zipped)", ".fgb": "FlatGeobuf"}

# Columns the model owns; a source column with one of these names is kept as src_<name>.
RESERVED_COLUMNS = {"uid", "ground_z", "geometry", "fid"}

Progress = Callable[[int], None]


@dataclass
class PreparedLayer:
    """A canonical layer ready for the store, with what was done to the source on the way."""

    frame: gpd.GeoDataFrame
    source_crs: str
    notes: list[str] = field(default_factory=list)


@lru_cache(maxsize=64)
def cached_transformer(source: CRS, target: CRS) -> Transformer:
    """An always-xy Transformer, built once per pair of CRSs (building one costs tens of ms)."""
    return Transformer.from_crs(source, target, always_xy=True)


def parse_crs(text: str, *, source: str | Path | None = None) -> CRS:
    """Parse a user-given CRS such as 'EPSG:4549', raising UnsupportedCRS with the reason."""
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise UnsupportedCRS(source, f"{text!r} is not a CRS pyproj knows ({exc}); give it as EPSG:NNNN") from exc


def _gdal_path(path: Path) -> str:
    return f"/vsizip/{path}" if path.suffix.lower() == ".zip" else str(path)


def _geojson_declares_crs(path: Path) -> bool:
    """True if a GeoJSON file has a top-level "crs" member (looked for at its head and tail)."""
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
        fh.seek(max(0, path.stat().st_size - (1 << 16)))
        tail = fh.read()
    return re.search(rb'"crs"\s*:', head) is not None or re.search(rb'"crs"\s*:', tail) is not None


def _looks_geographic(bounds: tuple[float, float, float, float]) -> bool:
    minx, miny, maxx, maxy = bounds
    return -180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90


def _choose_source_layer(path: Path, gdal_path: str, wanted: str | None) -> str | None:
    try:
        layers = pyogrio.list_layers(gdal_path)
    except DataSourceError as exc:
        raise UnknownFormat(path, f"is not a vector format we read ({', '.join(sorted(set(VECTOR_SUFFIXES.values())))}): {exc}") from exc
    names = [str(row[0]) for row in layers]
    if wanted is not None:
        if wanted not in names:
            raise SpecError(path, f"has no layer {wanted!r}; its layers are {names}")
        return wanted
    if len(names) > 1:
        raise SpecError(path, f"holds {len(names)} layers {names}; name one with source_layer in a --spec file")
    return None


def read_vector(path: str | Path, *, crs: str | None = None, source_layer: str | None = None,
                progress: Callable[[int | None], Progress] | None = None) -> gpd.GeoDataFrame:
    """Read a vector file into a GeoDataFrame in its own CRS, refusing files whose CRS is unknown.

    `crs` overrides the file's CRS (for files without one, or with a wrong one).
    `progress(total)` is called once with the feature count and returns a callback that
    is given the number of features read in each batch.
    """
    path = Path(path)
    if not path.exists():
        raise SourceNotFound(path, "file does not exist")
    if path.is_dir():
        raise UnknownFormat(path, "is a folder, not a file")
    gdal_path = _gdal_path(path)
    layer = _choose_source_layer(path, gdal_path, source_layer)
    try:
        info = pyogrio.read_info(gdal_path, layer=layer)
    except (DataSourceError, DataLayerError) as exc:
        raise UnknownFormat(path, f"cannot be read: {exc}") from exc

    file_crs = info["crs"]
    notes: list[str] = []
    if info["driver"] == "GeoJSON" and not _geojson_declares_crs(path):
        # RFC 7946 GeoJSON is WGS 84 by definition; coordinates outside lon/lat ranges are
        # the common mistake of projected coordinates written without a "crs" member.
        bounds = info.get("total_bounds")
        if bounds is not None and not np.all(np.isfinite(bounds)):
            bounds = None
        if bounds is not None and not _looks_geographic(bounds):
            file_crs = None
        elif crs is None:
            notes.append('no "crs" member: read as WGS 84 longitude/latitude (RFC 7946)')
    if crs is not None:
        source_crs = parse_crs(crs, source=path)
    elif file_crs is None:
        hint = ""
        bounds = info.get("total_bounds")
        if bounds is not None and np.all(np.isfinite(bounds)):
            hint = f" (its coordinates span x {bounds[0]:.1f}..{bounds[2]:.1f}, y {bounds[1]:.1f}..{bounds[3]:.1f})"
        raise MissingCRS(path, f"has no CRS{hint}; give it with --crs EPSG:NNNN "
                               f"(e.g. --crs EPSG:4549 for CGCS2000 / 3-degree Gauss-Kruger CM 120E), "
                               f"or add a .prj file / a \"crs\" member")
    else:
        source_crs = CRS.from_user_input(file_crs)

    total = info.get("features")
    tick = progress(total if total is not None and total >= 0 else None) if progress else None
    batches = []
    try:
        with pyogrio.open_arrow(gdal_path, layer=layer, use_pyarrow=True, batch_size=131072) as (meta, reader):
            geom_name = meta["geometry_name"] or "wkb_geometry"
            for batch in reader:
                batches.append(batch)
                if tick:
                    tick(batch.num_rows)
            schema = reader.schema
    except (DataSourceError, DataLayerError) as exc:
        raise UnknownFormat(path, f"cannot be read: {exc}") from exc
    table = pa.Table.from_batches(batches, schema=schema)
    if table.num_rows == 0:
        raise EmptySource(path, "holds no features")
    if geom_name not in table.column_names:
        raise WrongGeometryType(path, "has no geometry column; the model needs points, lines or polygons")
    wkb = table.column(geom_name).to_numpy(zero_copy_only=False)
    frame = table.drop_columns([geom_name]).to_pandas()
    geometry = shapely.from_wkb(wkb, on_invalid="fix")  # closes unclosed rings, as GDAL does
    result = gpd.GeoDataFrame(frame, geometry=geometry, crs=source_crs)
    result.attrs["notes"] = notes
    return result


def _bad(path: Path | str, mask: np.ndarray, what: str, exc_type: type = InvalidGeometry) -> None:
    idx = np.flatnonzero(mask)
    if len(idx):
        more = f" ({len(idx)} features in all, the first {idx[:10].tolist()})" if len(idx) > 1 else ""
        raise exc_type(path, f"feature {idx[0]}: {what}{more}", int(idx[0]))


def _repair(path: Path | str, geoms: np.ndarray, kind: LayerKind, notes: list[str]) -> np.ndarray:
    invalid = ~shapely.is_valid(geoms)
    idx = np.flatnonzero(invalid)
    if not len(idx):
        return geoms
    geoms = geoms.copy()
    repaired = shapely.make_valid(geoms[idx])
    if "polygon" in kind.geometry:
        # make_valid may return a collection of polygons and slivers of lines; keep the area.
        parts = [shapely.union_all([p for p in shapely.get_parts(g) if shapely.get_type_id(p) in (3, 6)])
                 if shapely.get_type_id(g) == 7 else g for g in repaired]
        repaired = np.array(parts, dtype=object)
    family_ok = np.array([not g.is_empty and kind.accepts(g.geom_type) for g in repaired])
    if not family_ok.all():
        first = idx[np.flatnonzero(~family_ok)[0]]
        reason = shapely.is_valid_reason(geoms[first])
        raise InvalidGeometry(path, f"feature {first}: geometry is invalid ({reason}) and cannot be repaired "
                                    f"into a {kind.geometry}", int(first))
    geoms[idx] = repaired
    notes.append(f"repaired {len(idx)} invalid geometries with make_valid (features {idx[:10].tolist()}"
                 f"{' ...' if len(idx) > 10 else ''})")
    return geoms


def _map_distinct(values: pd.Series, fn: Callable[[object], object]) -> pd.Series:
    """Apply `fn` to each distinct non-null value once (a million pipes have a handful of utilities)."""
    codes, uniques = pd.factorize(values)
    mapped = np.array([fn(v) for v in uniques] + [None], dtype=object)
    return pd.Series(mapped[codes], index=values.index)


_TRUE = {"true", "t", "yes", "y", "1", "是", "有", "smart", "智慧", "智能"}
_FALSE = {"false", "f", "no", "n", "0", "否", "无", ""}


def _coerce(path: Path | str, name: str, ftype: str, raw: pd.Series, src: FieldSource | None,
            mapping: dict[str, object] | None) -> pd.Series:
    values = raw
    if mapping:
        as_text = values.astype("string")
        values = _map_distinct(as_text, lambda v: mapping.get(v, v)).astype("object")
    present = values.notna().to_numpy()
    if ftype == "str":
        out = values.astype("string")
        if name == "utility":
            lowered = out.str.strip().str.lower()
            out = _map_distinct(lowered, lambda v: UTILITY_SYNONYMS.get(v, v)).astype("string")
            bad = out.notna().to_numpy() & ~out.isin(UTILITIES).to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidAttribute(path, f"feature {i}: utility {raw.iloc[i]!r} is not one of {list(UTILITIES)} "
                                             f"(map it with [values.utility] in a spec)", i)
        return out
    if ftype in ("float", "int"):
        numbers = pd.to_numeric(values, errors="coerce")
        bad = present & numbers.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidAttribute(path, f"feature {i}: {name} {raw.iloc[i]!r} is not a number", i)
        numbers = numbers.astype("float64")
        if src is not None and src.scale is not None:
            numbers = numbers * src.scale
        if ftype == "float":
            return numbers
        frac = present & (np.abs(numbers.fillna(0) - numbers.fillna(0).round()) > 1e-9).to_numpy()
        if frac.any():
            i = int(np.flatnonzero(frac)[0])
            raise InvalidAttribute(path, f"feature {i}: {name} {raw.iloc[i]!r} is not a whole number", i)
        return numbers.round().astype("Int64")
    if ftype == "bool":
        if values.dtype == bool:
            return values.astype("boolean")
        text = values.astype("string").str.strip().str.lower()
        out = pd.Series(pd.NA, index=values.index, dtype="boolean")
        out[text.isin(_TRUE).fillna(False).to_numpy()] = True
        out[text.isin(_FALSE).fillna(False).to_numpy() & present] = False
        bad = present & out.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidAttribute(path, f"feature {i}: {name} {raw.iloc[i]!r} is not true or false", i)
        return out
    if ftype == "date":
        dates = pd.to_datetime(values.astype("string"), errors="coerce", format="mixed")
        bad = present & dates.isna().to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidAttribute(path, f"feature {i}: {name} {raw.iloc[i]!r} is not a date", i)
        return dates.dt.strftime("%Y-%m-%d").astype("string")
    raise ValueError(f"unknown field type {ftype!r}")


def prepare_layer(gdf: gpd.GeoDataFrame, kind: LayerKind, spec: LayerSpec, target_crs: CRS, *,
                  source: str | Path, layer: str) -> PreparedLayer:
    """Turn a source GeoDataFrame into a canonical layer of `kind` in `target_crs`.

    Checks geometries (missing, empty, wrong type: refused with the feature index;
    invalid: repaired with make_valid and noted), reprojects with pyproj, maps and types
    the canonical fields, and gives every feature a stable id ``<layer>.<key>``, the key
    being the spec's id column or the feature's position in the file (from 1).
    """
    notes: list[str] = list(gdf.attrs.get("notes", []))
    geoms = np.asarray(gdf.geometry.values, dtype=object)
    _bad(source, shapely.is_missing(geoms), "has no geometry")
    _bad(source, shapely.is_empty(geoms), "geometry is empty")
    if shapely.has_z(geoms).any():
        geoms = shapely.force_2d(geoms)
        notes.append("dropped source Z values; heights come from the DEM and the depth fields")
    type_names = np.asarray(shapely.get_type_id(geoms))
    names = GEOMETRY_TYPE_NAMES
    fits = np.array([kind.accepts(names[t]) for t in range(8)])
    wrong = ~fits[type_names]
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise WrongGeometryType(source, f"feature {i}: is a {names[int(type_names[i])]}, but a {kind.name} layer "
                                        f"holds {kind.geometry.replace('|', ' or ')}s", i)
    geoms = _repair(source, geoms, kind, notes)

    source_crs = gdf.crs
    series = gpd.GeoSeries(geoms, crs=source_crs)
    if not source_crs.equals(target_crs):
        series = series.to_crs(target_crs)
    bounds = shapely.bounds(np.asarray(series.values, dtype=object))
    _bad(source, ~np.isfinite(bounds).all(axis=1),
         f"cannot be placed in {target_crs.to_string()} (its coordinates fall outside that projection)")

    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    spec.check_against(kind, columns, str(source))
    out: dict[str, pd.Series] = {}
    consumed: set[str] = set()
    n = len(gdf)
    for name, ftype in kind.fields.items():
        src = spec.fields.get(name)
        if src is None and name in columns:
            src = FieldSource(column=name)
        if src is None:
            raw = pd.Series([None] * n, dtype="object")
        elif src.column is not None:
            raw = gdf[src.column].reset_index(drop=True)
            consumed.add(src.column)
        else:
            raw = pd.Series([src.value] * n, dtype="object")
        out[name] = _coerce(source, name, ftype, raw, src, spec.values.get(name))

    if spec.id_column is not None:
        keys = gdf[spec.id_column].reset_index(drop=True)
        if keys.isna().any():
            i = int(np.flatnonzero(keys.isna().to_numpy())[0])
            raise InvalidAttribute(source, f"feature {i}: id column {spec.id_column!r} is empty", i)
        keys = keys.astype(str)
        if not keys.is_unique:
            dup = keys.duplicated(keep=False)
            raise InvalidAttribute(source, f"id column {spec.id_column!r} repeats values "
                                           f"{sorted(set(keys[dup]))[:5]}; ids must be unique",
                                   int(np.flatnonzero(dup.to_numpy())[0]))
    else:
        keys = pd.Series(np.arange(1, n + 1), dtype="int64").astype(str)
    uid = (layer + ".") + keys

    frame = pd.DataFrame({"uid": uid.to_numpy(), **{k: v.reset_index(drop=True) for k, v in out.items()}})
    for col in columns:
        if col in consumed or col in out:
            continue
        target = f"src_{col}" if col in RESERVED_COLUMNS or col in out else col
        frame[target] = gdf[col].reset_index(drop=True)
    result = gpd.GeoDataFrame(frame, geometry=np.asarray(series.values, dtype=object), crs=target_crs)
    return PreparedLayer(frame=result, source_crs=source_crs.to_string(), notes=notes)
