"""The web view in a real browser: Debian's headless Chromium driven by Playwright.

Every test loads the demo city's page from a server on 127.0.0.1 (or the exported file
with the network off) and looks at what was drawn: pixels of the screenshot, the tooltip
and the details panel. Screenshots are kept under tests/artifacts/ (TWIN_TEST_ARTIFACTS).
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile

from api.view import UTILITY_COLOURS, export_html
from twin.events import status_event

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
ARTIFACTS = Path(os.environ.get("TWIN_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))
BACKGROUND = np.array([16, 21, 28])  # the page's own colour where nothing is drawn
VIEWPORT = {"width": 1280, "height": 800}
# the panel on the left is page, not map: pixels are counted right of it
MAP_LEFT = 230
PIPE_COLOURS = list(UTILITY_COLOURS.values())


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


class CityPage:
    """A page of the web view, with what it logged and which hosts it asked."""

    def __init__(self, browser, url: str, offline: bool = False, keep_first_frame: bool = False) -> None:
        self.context = browser.new_context(viewport=VIEWPORT, offline=offline)
        if offline:
            self.context.route("http*://**", lambda route: route.abort())
        self.page = self.context.new_page()
        if keep_first_frame:  # the page then keeps the pixels of its first frame for first_frame()
            self.page.add_init_script("window.twinKeepFirstFrame = true;")
        self.errors: list[str] = []
        self.hosts: set[str] = set()
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc or urlsplit(r.url).scheme))
        started = time.perf_counter()
        self.page.goto(url)
        self.page.wait_for_function("window.twin && window.twin.ready", timeout=60_000)
        self.opened_s = time.perf_counter() - started

    def settle(self, timeout_ms: int = 60_000) -> None:
        """Wait until every layer has its data and tiles, and a few frames more."""
        self.page.wait_for_function("window.twin.deck.props.layers.length > 0 && "
                                    "window.twin.deck.props.layers.every(l => !l.props.visible || l.isLoaded)",
                                    timeout=timeout_ms)
        self.page.wait_for_timeout(800)

    def pixels(self, name: str) -> np.ndarray:
        """A screenshot as an (h, w, 3) array, kept as an artifact."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        png = self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        with MemoryFile(png) as memory, memory.open() as image:
            return np.moveaxis(image.read()[:3], 0, -1).astype("int16")

    def click_until(self, at, selector: str, attempts: int = 3):
        """Click the map at `at` until `selector` shows up (a page's first press on the map
        can go to the gesture recogniser's set-up rather than to a click)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        self.page.mouse.move(*at)
        for attempt in range(attempts):
            self.page.mouse.click(*at, delay=80)
            try:
                return self.page.wait_for_selector(selector, timeout=8_000)
            except PlaywrightTimeout:
                if attempt == attempts - 1:
                    raise

    def first_frame(self, name: str) -> np.ndarray:
        """The first frame with buildings and pipes as the page drew it, as an (h, w, 3) array
        (kept as an artifact): the page read it back from WebGL at that frame."""
        frame = self.page.evaluate("window.twin.firstFrame")
        rgba = np.frombuffer(base64.b64decode(frame["rgba"]), dtype=np.uint8)
        # WebGL's rows go up from the bottom; the page's background shows where nothing is drawn
        pixels = rgba.reshape(frame["height"], frame["width"], 4)[::-1]
        alpha = pixels[..., 3:].astype("int16")
        rgb = (pixels[..., :3].astype("int16") * alpha + BACKGROUND * (255 - alpha)) // 255
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        with rasterio.open(ARTIFACTS / f"{name}.png", "w", driver="PNG", width=rgb.shape[1], height=rgb.shape[0],
                           count=3, dtype="uint8") as out:
            out.write(np.moveaxis(rgb.astype("uint8"), -1, 0))
        return rgb

    def payload_before_ready(self) -> tuple[int, int]:
        """Bytes the page downloaded before its first frame with buildings and pipes:
        (all, all but the deck.gl bundles)."""
        entries = self.page.evaluate("""() => {
            const ready = window.twin.ready.ms;
            return performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
              .filter(e => e.responseEnd <= ready).map(e => [e.name, e.encodedBodySize || e.transferSize || 0]);
        }""")
        total = sum(size for _, size in entries)
        return total, total - sum(size for name, size in entries if "/vendor/deck.gl" in name)

    def close(self) -> None:
        self.context.close()


def near(pixels: np.ndarray, colour, tolerance: int = 40) -> int:
    """How many pixels of the map are within `tolerance` of `colour`."""
    region = pixels[:, MAP_LEFT:]
    return int((np.abs(region - np.array(colour)).max(axis=-1) <= tolerance).sum())


def drawn(pixels: np.ndarray) -> float:
    """The share of the map's pixels that are not the page background."""
    region = pixels[:, MAP_LEFT:]
    return float((np.abs(region - BACKGROUND).max(axis=-1) > 12).mean())


def differs(before: np.ndarray, after: np.ndarray) -> float:
    """The share of the map's pixels that differ between two frames."""
    return float((np.abs(before - after).max(axis=-1) > 12)[:, MAP_LEFT:].mean())


def beige(pixels: np.ndarray) -> int:
    """Pixels the colour of the lit or shaded walls and roofs of GIS buildings."""
    r, g, b = (pixels[:, MAP_LEFT:, k] for k in range(3))
    return int(((r > 120) & (r - b >= 12) & (r - b <= 70) & (g >= b) & (g <= r)).sum())


def test_the_planning_view_draws_terrain_and_buildings_with_no_error_and_no_request_off_loopback(
        browser, live_server):
    page = CityPage(browser, f"{live_server.url}/", keep_first_frame=True)
    try:
        first = page.first_frame("planning-first-frame")
        ready_ms = page.page.evaluate("window.twin.ready.ms")
        total, own = page.payload_before_ready()
        print(f"\nplanning view: first frame with buildings and pipes at {ready_ms:.0f} ms; "
              f"{total / 1e6:.2f} MB downloaded before it, {own / 1e6:.2f} MB besides deck.gl")
        # the first frame drew the buildings and the pipes (the terrain comes after it)
        assert beige(first) > 5_000
        assert sum(near(first, colour) for colour in PIPE_COLOURS) > 1_000
        page.settle()
        pixels = page.pixels("planning")
        assert page.errors == []
        assert page.hosts == {f"127.0.0.1:{live_server.port}"}
        assert drawn(pixels) > 0.3
        assert beige(pixels) > 5_000
        assert own < 5_000_000
    finally:
        page.close()


def test_with_the_ground_off_pipes_show_in_their_utility_colours(browser, live_server):
    page = CityPage(browser, f"{live_server.url}/?hide=terrain")
    try:
        page.settle()
        pixels = page.pixels("planning-underground")
        assert page.errors == []
        assert near(pixels, [30, 136, 229]) > 300  # water mains
        assert near(pixels, [255, 193, 7]) > 300  # gas
    finally:
        page.close()


def test_the_utility_preset_changes_what_is_drawn(browser, live_server):
    page = CityPage(browser, f"{live_server.url}/")
    try:
        page.settle()
        planning = page.pixels("planning-before-switch")
        page.page.click("#presets button[data-preset=utility]")
        page.page.wait_for_function("document.body.dataset.preset === 'utility'")
        page.settle()
        utility = page.pixels("utility")
        changed = (np.abs(planning - utility).max(axis=-1) > 30)[:, MAP_LEFT:].mean()
        assert page.errors == []
        assert changed > 0.05
        # the buildings are muted: far fewer pixels in their planning colour
        assert beige(utility) < beige(planning) / 3
    finally:
        page.close()


def buildings_drawn(page: CityPage, name: str) -> tuple[np.ndarray, int]:
    """The page's pixels, and how many of the map's the GIS buildings make: the page as it is,
    against the page with the Buildings box unticked (then ticked again)."""
    box = "#toggles input[data-layer=buildings]"
    shown = page.pixels(name)
    page.page.uncheck(box)
    page.settle()
    hidden = page.pixels(f"{name}-no-buildings")
    page.page.check(box)
    page.settle()
    return shown, int((np.abs(shown - hidden).max(axis=-1) > 12)[:, MAP_LEFT:].sum())


@pytest.mark.parametrize("presets", [["planning", "utility", "planning"], ["utility", "planning", "utility"]])
def test_switching_presets_keeps_the_gis_buildings_drawn(browser, live_server, presets):
    page = CityPage(browser, f"{live_server.url}/?preset={presets[0]}")
    try:
        page.settle()
        frames, counts = [], []
        for step, name in enumerate(presets):
            if step:
                page.page.click(f"#presets button[data-preset={name}]")
                page.page.wait_for_function(f"document.body.dataset.preset === '{name}'")
                page.settle()
            frame, count = buildings_drawn(page, f"buildings-{'-'.join(presets[:step + 1])}")
            frames.append(frame)
            counts.append(count)
        # back where it started, the page draws what it drew on loading that preset
        changed = differs(frames[0], frames[-1])
        print(f"\npixels of GIS buildings, {' -> '.join(presets)}: {counts}; {changed:.2%} changed on the way back")
        assert page.errors == []
        # muted in the utility preset, they still cover a good part of the district
        assert all(count > 20_000 for count in counts), counts
        assert changed < 0.002
    finally:
        page.close()


def test_see_through_ground_keeps_the_planning_buildings_drawn(browser, live_server):
    page = CityPage(browser, f"{live_server.url}/")
    try:
        page.settle()
        opaque = page.pixels("planning-opaque-ground")
        page.page.fill("#ground-opacity", "50")
        page.settle()
        _, count = buildings_drawn(page, "buildings-planning-see-through-ground")
        page.page.fill("#ground-opacity", "100")
        page.settle()
        # opaque again, the buildings are prisms from sea level again, not lifted by the ground's height
        changed = differs(opaque, page.pixels("planning-opaque-ground-again"))
        assert page.errors == []
        assert count > 20_000
        assert changed < 0.002
    finally:
        page.close()


def _tallest_gis_building(url: str) -> dict:
    buildings = httpx.get(f"{url}/collections/building/items", params={"limit": 10_000}).json()["features"]
    candidates = [f for f in buildings if not f["properties"]["represented_by_bim"]]
    return max(candidates, key=lambda f: f["properties"]["height_m"] or 0)


def test_hovering_a_building_shows_its_name_and_height(browser, live_server):
    building = _tallest_gis_building(live_server.url)
    ring = np.array(building["geometry"]["coordinates"][0])[:, :2]
    lon, lat = ring.mean(axis=0)
    top = building["properties"]["ground_z"] + building["properties"]["height_m"]
    page = CityPage(browser, f"{live_server.url}/")
    try:
        page.page.evaluate("([lon, lat]) => window.twin.deck.setProps({initialViewState: "
                           "{longitude: lon, latitude: lat, zoom: 17, pitch: 0, bearing: 0}})", [lon, lat])
        page.settle()
        x, y = page.page.evaluate("(p) => window.twin.deck.getViewports()[0].project(p)", [lon, lat, top])[:2]
        page.page.mouse.move(x, y)
        tooltip = page.page.wait_for_selector(".deck-tooltip >> text=height", timeout=10_000)
        text = tooltip.inner_text()
        page.pixels("hover-building")
        assert building["properties"]["uid"] in text
        height = building["properties"]["height_m"]
        assert f"height {int(height) if float(height).is_integer() else f'{height:.2f}'} m" in text
    finally:
        page.close()


def test_clicking_a_bim_element_shows_its_global_id_class_and_property_sets(browser, live_server):
    model = httpx.get(f"{live_server.url}/collections/bim/items", params={"limit": 1}).json()["features"][0]
    ring = np.array(model["geometry"]["coordinates"][0] if model["geometry"]["type"] == "Polygon"
                    else model["geometry"]["coordinates"][0][0])[:, :2]
    lon, lat = ring.mean(axis=0)
    page = CityPage(browser, f"{live_server.url}/")
    try:
        page.page.evaluate("([lon, lat]) => window.twin.deck.setProps({initialViewState: "
                           "{longitude: lon, latitude: lat, zoom: 19.5, pitch: 30, bearing: 0}})", [lon, lat])
        page.settle()
        middle = (model["properties"]["base_z"] + model["properties"]["top_z"]) / 2
        centre = page.page.evaluate("(p) => window.twin.deck.getViewports()[0].project(p)", [lon, lat, middle])[:2]
        page.page.wait_for_function(
            "([x, y]) => { const p = window.twin.deck.pickObject({x, y, radius: 2}); return p && p.layer.id === 'bim'; }",
            arg=list(centre), timeout=30_000)
        element = page.click_until(centre, "#details [data-global-id]")
        global_id = element.get_attribute("data-global-id")
        page.pixels("bim-element-details")
        details = page.page.inner_text("#details")
        assert page.errors == []
        assert len(global_id) == 22
        found = httpx.get(f"{live_server.url}/collections/bim-elements/items/bim-elements.{global_id}")
        assert found.status_code == 200
        properties = found.json()["properties"]
        assert properties["building"] == model["id"]
        assert properties["ifc_class"] in details
        for pset in properties["properties"]:
            assert pset.upper() in details.upper()
    finally:
        page.close()


def test_a_status_event_recolours_pipes_live_without_a_reload(browser, live_server):
    page = CityPage(browser, f"{live_server.url}/?preset=utility&hide=terrain,buildings,bim")
    try:
        page.settle()
        page.page.wait_for_function("document.getElementById('live').className === 'on'", timeout=10_000)
        before = page.pixels("utility-before-alarm")
        pipes = httpx.get(f"{live_server.url}/collections/pipe/items", params={"limit": 10_000}).json()["features"]
        hub = live_server.app.state.services.events
        for pipe in pipes:
            hub.publish(status_event("pipe", pipe["id"], "alarm", previous="no_data"))
        page.page.wait_for_function(f"window.twin.live.version >= {len(pipes)}", timeout=15_000)
        page.page.wait_for_timeout(800)
        after = page.pixels("utility-alarm")
        alarm = [231, 29, 54]
        assert near(before, alarm, 30) < 100
        assert near(after, alarm, 30) > 2_000
        assert page.page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert page.errors == []
    finally:
        page.close()


def test_the_exported_page_renders_with_the_network_off(browser, demo_city, tmp_path):
    out = tmp_path / "district.html"
    out.write_text(export_html(demo_city, "planning"), encoding="utf-8")
    page = CityPage(browser, out.as_uri(), offline=True)
    try:
        page.settle()
        pixels = page.pixels("exported-offline")
        assert page.errors == []
        assert page.hosts <= {"file", "data", "blob"}
        assert drawn(pixels) > 0.3
        assert beige(pixels) > 5_000
        assert out.stat().st_size < 20_000_000
    finally:
        page.close()
