"""Tile caches: in memory (LRU) and on disk, invalidated by layer and area, not by time.

A cached tile remembers the version of each layer it was drawn from. When a layer has a
newer version, the store's change log says where it changed; a tile that no change
touches is still right and is kept (its versions moved forward), one that a change
touches is drawn again. So an ingest that edits one street re-renders that street's
tiles only, in every process that shares the city.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CachedTile", "TileCache"]

Bounds = tuple[float, float, float, float]
# (layer, since_version) -> [(version, boxes or None)]
ChangeLog = Callable[[str, int], list[tuple[int, list[Bounds] | None]]]


@dataclass
class CachedTile:
    """A rendered tile with the layer versions it shows and its ETag (hashed once)."""

    data: bytes
    versions: dict[str, int]
    hit: bool = False  # served from a cache rather than rendered for this request
    etag: str = field(default="", compare=False)

    _gzipped: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.etag:
            self.etag = '"' + hashlib.blake2b(self.data, digest_size=12).hexdigest() + '"'

    @property
    def gzipped(self) -> bytes:
        """The tile gzip-compressed, made once rather than on every response."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.data, compresslevel=6, mtime=0)
        return self._gzipped


def _intersects(a: Bounds, b: Bounds) -> bool:
    return a[0] <= b[2] and b[0] <= a[2] and a[1] <= b[3] and b[1] <= a[3]


class TileCache:
    """Memory LRU in front of an optional disk cache under `root`."""

    def __init__(self, root: Path | None, changes: ChangeLog, memory_items: int = 4096) -> None:
        self.root = root
        self.changes = changes
        self.memory_items = memory_items
        self._memory: OrderedDict[str, CachedTile] = OrderedDict()
        self._lock = threading.Lock()

    def _still_valid(self, tile: CachedTile, current: dict[str, int], area: Callable[[], Bounds]) -> bool:
        if set(tile.versions) != set(current):
            return False
        box = None
        for layer, version in current.items():
            seen = tile.versions[layer]
            if seen == version:
                continue
            if seen > version:
                return False
            for _, boxes in self.changes(layer, seen):
                if boxes is None:
                    return False
                if boxes:
                    box = box or area()
                    if any(_intersects(box, b) for b in boxes):
                        return False
        return True

    def get(self, key: str, current: dict[str, int], area: Callable[[], Bounds]) -> CachedTile | None:
        """The cached tile for `key` if it still shows the current layers in the tile's area.

        `area()` gives the tile's box in the city CRS; it is only called when a layer
        changed since the tile was drawn. What the caches hold is marked `hit`.
        """
        with self._lock:
            tile = self._memory.get(key)
            if tile is not None:
                self._memory.move_to_end(key)
        if tile is None and self.root is not None:
            tile = self._read(key)
            if tile is not None:
                self._remember(key, tile)
        if tile is None or tile.versions == current:
            return tile
        if not self._still_valid(tile, current, area):
            return None
        tile = CachedTile(tile.data, dict(current), hit=True, etag=tile.etag, _gzipped=tile._gzipped)
        self._remember(key, tile)
        if self.root is not None:
            self._write(key, tile)
        return tile

    def put(self, key: str, data: bytes, versions: dict[str, int]) -> CachedTile:
        """Store a freshly rendered tile; returns it (not marked as a hit)."""
        tile = CachedTile(data, dict(versions))
        self._remember(key, CachedTile(data, tile.versions, hit=True, etag=tile.etag))  # compressed on first use
        if self.root is not None:
            self._write(key, tile)
        return tile

    def _remember(self, key: str, tile: CachedTile) -> None:
        with self._lock:
            self._memory[key] = tile
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.root / key
        return base.with_name(base.name + ".bin"), base.with_name(base.name + ".json")

    def _read(self, key: str) -> CachedTile | None:
        data_path, meta_path = self._paths(key)
        try:
            versions = json.loads(meta_path.read_text())
            return CachedTile(data_path.read_bytes(), {k: int(v) for k, v in versions.items()}, hit=True)
        except (OSError, ValueError):
            return None

    def _write(self, key: str, tile: CachedTile) -> None:
        data_path, meta_path = self._paths(key)
        try:
            data_path.parent.mkdir(parents=True, exist_ok=True)
            suffix = f".{os.getpid()}.{threading.get_ident()}.tmp"
            tmp_data = data_path.with_name(data_path.name + suffix)
            tmp_meta = meta_path.with_name(meta_path.name + suffix)
            tmp_data.write_bytes(tile.data)
            tmp_meta.write_text(json.dumps(tile.versions))
            # data first: a reader that sees the new versions also sees the new bytes
            os.replace(tmp_data, data_path)
            os.replace(tmp_meta, meta_path)
        except OSError:
            pass  # a full or read-only disk costs speed, never an answer
