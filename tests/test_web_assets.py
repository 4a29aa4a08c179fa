"""Nothing the web view loads names an address outside our server (intranets have no internet)."""

from __future__ import annotations

import httpx

from api.offline import external_urls, rewrite
from api.view import WEB_ROOT, WORKERS, export_html


def test_no_asset_of_the_page_names_a_cdn():
    assets = [p for p in WEB_ROOT.rglob("*") if p.suffix in (".js", ".html", ".css")]
    assert any("deck.gl" in p.name for p in assets) and len(assets) >= 6
    for path in assets:
        assert external_urls(path.read_text(encoding="utf-8")) == [], path


def test_loaders_gl_looks_for_its_workers_on_our_server_and_finds_them():
    bundle = next(WEB_ROOT.glob("vendor/deck.gl-*.min.js")).read_text(encoding="utf-8")
    assert 'CDN:"static/vendor/loaders.gl"' in bundle
    assert "unpkg.com" not in bundle.replace("https://unpkg.com/h3-js@", "")
    for path in WORKERS.values():
        assert (WEB_ROOT / path).is_file(), path
        assert path.startswith("vendor/loaders.gl/")


def test_the_rewrite_moves_known_cdns_home_and_the_check_flags_any_other():
    bundle = ('fetch(`https://unpkg.com/@loaders.gl/${m}/dist/w.js`);'
              'load("https://www.gstatic.com/draco/versioned/decoders/1.5.6/draco.js")')
    assert external_urls(bundle) != []
    assert external_urls(rewrite(bundle)) == []
    assert "static/vendor/loaders.gl/" in rewrite(bundle)
    assert external_urls('import("https://cdn.example.com/lib.js")') == ["https://cdn.example.com/lib.js"]
    assert external_urls('ns = "http://www.w3.org/2000/svg"') == []


def test_the_served_page_and_the_exported_file_name_no_cdn(server, demo_city):
    page = httpx.get(f"{server.url}/", headers={"Accept": "text/html"}).text
    assert external_urls(page) == []
    for path in WORKERS.values():
        assert httpx.get(f"{server.url}/static/{path}").status_code == 200
    assert external_urls(export_html(demo_city, "utility")) == []
