"""Keep the web view's vendored scripts from ever reaching the internet.

deck.gl's bundle knows addresses on public CDNs: loaders.gl fetches its workers and
libraries from unpkg, the Draco decoder from gstatic, the debug tools (webgl-debug,
Spector.js) from unpkg and jsDelivr, and the geocoder widget asks Google, Mapbox and
OpenCage. Our users' intranets reach none of them, and the page must not try. The vendor
step (`scripts/vendor-web.sh`, which runs ``python -m api.offline FILE...``) rewrites each
such address to a path on our own server: loaders.gl's to `static/vendor/loaders.gl` (the
workers the page uses are vendored there), the rest to `static/vendor/unavailable/`, which
answers 404. Then it refuses a bundle that still holds any other external address, unless
it is one of NOT_FETCHED: namespaces, licence and documentation links in messages.

`tests/test_web_assets.py` runs the same check over everything the page can load.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

__all__ = ["REWRITES", "NOT_FETCHED", "external_urls", "rewrite"]

UNAVAILABLE = "static/vendor/unavailable"
REWRITES: dict[str, str] = {
    "https://unpkg.com/@loaders.gl": "static/vendor/loaders.gl",
    "https://www.gstatic.com/draco/versioned/decoders/": f"{UNAVAILABLE}/draco/",
    "https://raw.githubusercontent.com/google/draco/": f"{UNAVAILABLE}/draco-encoder/",
    "https://unpkg.com/webgl-debug@2.0.1/index.js": f"{UNAVAILABLE}/webgl-debug.js",
    "https://cdn.jsdelivr.net/npm/spectorjs@0.9.30/dist/spector.bundle.js": f"{UNAVAILABLE}/spector.js",
    "https://maps.googleapis.com/maps/api/geocode/json": f"{UNAVAILABLE}/geocode",
    "https://api.opencagedata.com/geocode/v1/json": f"{UNAVAILABLE}/geocode",
    "https://api.mapbox.com/geocoding/v5/mapbox.places": f"{UNAVAILABLE}/geocode",
}
# Addresses that appear in the bundles but are never requested.
NOT_FETCHED = (
    "http://www.w3.org/",  # XML namespaces
    "https://deck.gl/docs/",  # links in error messages
    "https://unpkg.com/h3-js@",  # an error message telling a user which script tag to add
    "https://github.com/dcodeIO/long.js",  # licence comments
    "https://feross.org/opensource",
    "http://www.apache.org/licenses/",
    "https://archive.org/details/",
    "https://www.iana.org/assignments/media-types/",  # a media type's registration, in a comment
)
_URL = re.compile(r"https?://[A-Za-z0-9.-]+\.[A-Za-z]{2,}[^\s\"'`<>)\\]*")


def external_urls(text: str) -> list[str]:
    """The external addresses in a script or page that are not known to be never fetched."""
    return [url for url in _URL.findall(text) if not url.startswith(NOT_FETCHED)]


def rewrite(text: str) -> str:
    """The text with every known CDN address moved onto our own server."""
    for external, local in REWRITES.items():
        text = text.replace(external, local)
    return text


def main(paths: list[str]) -> int:
    """Rewrite the files in place; exit 1 naming any external address left."""
    left = 0
    for path in map(Path, paths):
        text = rewrite(path.read_text(encoding="utf-8"))
        path.write_text(text, encoding="utf-8")
        for url in sorted(set(external_urls(text))):
            print(f"{path}: still asks {url}", file=sys.stderr)
            left += 1
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
