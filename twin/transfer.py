"""Moving a city between stores (`twin export`): every layer, raster, observation, status and
event is copied, the counts are checked, and only then does city.json name the new store."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from twin.errors import StoreError
from twin.store import Store, open_store
from twin.workspace import CONFIG_FILE, City, ProgressFactory

__all__ = ["TransferReport", "copy_store", "export_city", "LIVE_TABLES"]

LIVE_TABLES = ("observations", "latest", "status", "events", "counts")


@dataclass
class TransferReport:
    """What was copied: per layer and per live table, (rows in the source, rows in the target)."""

    source: str
    target: str
    layers: dict[str, tuple[int, int]] = field(default_factory=dict)
    live: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def mismatches(self) -> list[str]:
        """Every layer or table whose counts differ, as `name: source -> target`."""
        both = {**{f"layer {k}": v for k, v in self.layers.items()}, **self.live}
        return [f"{name}: {a} -> {b}" for name, (a, b) in both.items() if a != b]


def _count(store: Store, name: str, kind: str) -> int:
    if kind == "dem":
        return store.layer(name).feature_count if store.raster_path(name).is_file() else -1
    return len(store.read_features(name, columns=[]))


def copy_store(source: Store, target: Store, progress: ProgressFactory | None = None) -> TransferReport:
    """Copy everything of `source` into the empty `target`; the report holds both sides' counts."""
    if target.layers() or any(target.live_counts().values()):
        raise StoreError(f"{target.url} is not empty; export into an empty store")
    report = TransferReport(source.url, target.url)
    for record in source.layers():
        copy = dataclasses.replace(record, notes=list(record.notes))
        if record.kind == "dem":
            with tempfile.NamedTemporaryFile(dir=target_root(target), prefix=f".{record.name}-", suffix=".tif",
                                             delete=False) as tmp:
                staged = Path(tmp.name)
            try:
                shutil.copyfile(source.raster_path(record.name), staged)
                target.replace_raster(copy, staged)
            finally:
                staged.unlink(missing_ok=True)
            if progress:
                progress(f"raster {record.name}", 1)(1)
        else:
            frame = source.read_features(record.name)
            advance = progress(f"layer {record.name}", len(frame)) if progress else None
            target.replace_features(copy, frame, progress=advance, changed=None)
        report.layers[record.name] = (_count(source, record.name, record.kind),
                                      _count(target, record.name, record.kind))
    totals = source.live_counts()
    for name in LIVE_TABLES:
        advance = progress(f"{name}", totals[name]) if progress else None
        for chunk in source.read_live(name):
            target.write_live(name, chunk)
            if advance:
                advance(len(chunk))
    copied = target.live_counts()
    report.live = {name: (totals[name], copied[name]) for name in LIVE_TABLES}
    return report


def target_root(store: Store) -> Path:
    """The city folder a store keeps its files in."""
    return Path(getattr(store, "root"))


def export_city(city: City, to: str, progress: ProgressFactory | None = None, *,
                overwrite: bool = False) -> TransferReport:
    """Copy `city` into the store `to` names (a postgresql:// URL or a GeoPackage file name in the
    city folder), check the counts, and point city.json at it; the old store is left as it was.

    A GeoPackage that exists is refused unless `overwrite`; a PostgreSQL schema must be empty.
    """
    if "://" in to:
        url = to
    else:
        name = to.removeprefix("geopackage:")
        if Path(name).name != name or not name.endswith(".gpkg"):
            raise StoreError(f"--to {to!r}: give a postgresql:// URL or a GeoPackage file name in the city "
                             f"folder (like city.gpkg)")
        url = f"geopackage:{name}"
        if city.config.store == url:
            raise StoreError(f"{city.root} is already kept in {name}")
        path = city.root / name
        if path.exists():
            if not overwrite:
                raise StoreError(f"{path} exists (a store this city left?); add --overwrite to replace it")
            for leftover in (path, path.with_name(path.stem + ".live.sqlite")):
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{leftover}{suffix}").unlink(missing_ok=True)
    target = open_store(city.root, url)
    if target.url == city.store.url:
        raise StoreError(f"{city.root} is already kept in {target.url}")
    report = copy_store(city.store, target, progress)
    if report.mismatches:
        raise StoreError(f"the copy in {target.url} does not match {city.store.url}: {'; '.join(report.mismatches)}; "
                         f"{CONFIG_FILE} still names {city.store.url}")
    config = dict(city.config.__dict__, store=target.url)
    (city.root / CONFIG_FILE).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    # cached tiles remember layer versions of the old store; the new one counts from 1
    shutil.rmtree(city.root / "cache" / "tiles", ignore_errors=True)
    city.config.store, city.store = target.url, target
    return report
