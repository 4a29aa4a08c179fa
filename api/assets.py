"""The web view's scripts and styles under /static, gzip-compressed once per file version.

The GZip middleware compresses a response as it streams, at level 9, on every request:
for deck.gl's 1.5 MB bundle that is a few hundred milliseconds of the server's CPU before each
page can start, on a machine that also draws the page. Here each file is compressed the first
time it is asked for and kept in memory with its size and modification time, so a changed file
is compressed again; the middleware leaves a response that already has a Content-Encoding alone.
"""

from __future__ import annotations

import gzip
import os
import threading

from starlette.datastructures import Headers
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["StaticAssets"]

COMPRESSIBLE = (".js", ".css", ".html", ".json", ".svg")


class StaticAssets(StaticFiles):
    """StaticFiles whose text files are served gzipped from memory to clients that accept it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._gzipped: dict[str, tuple[tuple[int, int], bytes]] = {}
        self._lock = threading.Lock()

    def file_response(self, full_path: str | os.PathLike, stat_result: os.stat_result, scope: Scope,
                      status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        accepts = "gzip" in Headers(scope=scope).get("accept-encoding", "")
        if not accepts or status_code != 200 or not isinstance(response, FileResponse) \
                or not str(full_path).endswith(COMPRESSIBLE):
            return response
        body = self._compressed(str(full_path), stat_result)
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        headers.update({"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(body, status_code=status_code, headers=headers)

    def prepare(self, paths: list[str]) -> None:
        """Compress these files (relative to the directory) before anyone asks for them."""
        for path in paths:
            full_path, stat_result = self.lookup_path(path)
            if stat_result is not None and full_path.endswith(COMPRESSIBLE):
                self._compressed(full_path, stat_result)

    def _compressed(self, path: str, stat_result: os.stat_result) -> bytes:
        version = (stat_result.st_mtime_ns, stat_result.st_size)
        with self._lock:
            cached = self._gzipped.get(path)
        if cached is not None and cached[0] == version:
            return cached[1]
        with open(path, "rb") as source:
            body = gzip.compress(source.read(), compresslevel=6, mtime=0)
        with self._lock:
            self._gzipped[path] = (version, body)
        return body
