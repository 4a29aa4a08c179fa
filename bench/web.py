"""Benchmark: how soon the web view shows the demo district, in Debian's headless Chromium.

Run by hand from the repository root (Chromium installed; see scripts/install-system.sh)::

    .venv/bin/python bench/web.py              # 1 cold and 5 warm page loads
    .venv/bin/python bench/web.py --loads 10

It builds the demo city once under bench/out/web/, starts `twin serve` on 127.0.0.1 and
opens `/` in a fresh browser context per load (no HTTP cache), with the same flags as the
browser tests (SwiftShader: no GPU here). For each load it prints the page's own figure,
`window.twin.ready.ms` (first frame with buildings and pipes, from navigation start), and
the bytes downloaded before it, with and without the deck.gl bundles. The first load meets
a server that has just started; the others a warm one.

Target (issue 5): first frame within 3 s on loopback; payload before it under 5 MB besides
deck.gl. Exit status 1 when the median of the warm loads misses either.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "bench")]

from conftest import Server  # noqa: E402
from report import cpu_model  # noqa: E402
from test_web import CHROMIUM, FLAGS, VIEWPORT  # noqa: E402

OUT = REPO / "bench" / "out" / "web"

PAYLOAD = """() => {
    const ready = window.twin.ready.ms;
    const entries = performance.getEntriesByType('resource').concat(performance.getEntriesByType('navigation'))
      .filter(e => e.responseEnd <= ready).map(e => [e.name, e.encodedBodySize || e.transferSize || 0]);
    const all = entries.reduce((n, [, size]) => n + size, 0);
    const deck = entries.filter(([name]) => name.includes('/vendor/deck.gl')).reduce((n, [, size]) => n + size, 0);
    return [ready, all, all - deck];
}"""
# Where the time before the first frame goes (ms from navigation start): the deck.gl bundle
# received, DOMContentLoaded (deck.gl parsed and run, the page's script started), the pipes'
# GeoJSON and the last building tile received, the first frame issued by deck.gl and drawn.
TIMELINE = """() => {
    const ready = window.twin.ready;
    const nav = performance.getEntriesByType('navigation')[0];
    const resources = performance.getEntriesByType('resource').filter(e => e.responseEnd <= ready.ms);
    const end = test => Math.max(0, ...resources.filter(e => test(e.name)).map(e => e.responseEnd));
    return {'deck.gl': end(n => n.includes('/vendor/deck.gl-9')), 'DOMContentLoaded': nav.domContentLoadedEventEnd,
            'pipes': end(n => n.includes('/collections/pipe/items')),
            'building tiles': end(n => n.includes('/tiles/WebMercatorQuad/')),
            'frame issued': ready.issuedMs, 'frame drawn': ready.ms};
}"""


def demo_city() -> Path:
    """The demo's Yantai district, built once."""
    city = OUT / "demo" / "yantai"
    if not (city / "city.json").exists():
        from twin.demo import build_demo

        build_demo(OUT / "demo")
    return city


def load_page(browser, server: Server, label: str) -> tuple[float, int]:
    """Open the page in a fresh context; print its first frame, payload and timeline."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    started = time.perf_counter()
    page.goto(f"{server.url}/")
    page.wait_for_function("window.twin && window.twin.ready", timeout=120_000)
    ready_ms, total, own = page.evaluate(PAYLOAD)
    timeline = page.evaluate(TIMELINE)
    print(f"{label:>7}: first frame with buildings and pipes at {ready_ms:,.0f} ms "
          f"(wall {time.perf_counter() - started:.1f} s); before it {total / 1e6:.2f} MB, "
          f"{own / 1e6:.2f} MB besides deck.gl")
    print(" " * 9 + ", ".join(f"{name} {ms:,.0f}" for name, ms in timeline.items()), flush=True)
    context.close()
    return ready_ms, own


def main() -> int:
    """Load the page cold (`--cold` times, each from a server just started) and warm (`--loads`
    times); print each first frame and payload, and the medians."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=5, help="warm page loads after the cold ones")
    parser.add_argument("--cold", type=int, default=1, help="page loads each from a server just started")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; Chromium {CHROMIUM} with SwiftShader")
    city = demo_city()
    cold, warm = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        for load in range(max(args.cold, 1)):
            server = Server(city)
            try:
                cold.append(load_page(browser, server, f"cold {load + 1}" if args.cold > 1 else "cold"))
                if load == max(args.cold, 1) - 1:
                    warm = [load_page(browser, server, f"warm {n + 1}") for n in range(args.loads)]
            finally:
                server.close()
        browser.close()
    for name, loads in (("cold", cold), ("warm", warm)):
        if loads:
            print(f"median of {len(loads)} {name} loads: first frame {statistics.median(r for r, _ in loads):,.0f} ms, "
                  f"payload besides deck.gl {statistics.median(o for _, o in loads) / 1e6:.2f} MB")
    ready = statistics.median(r for r, _ in warm or cold)
    own = statistics.median(o for _, o in warm or cold)
    print(f"target: first frame <= 3,000 ms ({'met' if ready <= 3000 else 'NOT met'} by the warm median); "
          f"payload besides deck.gl < 5 MB ({'met' if own < 5e6 else 'NOT met'})")
    return 0 if ready <= 3000 and own < 5e6 else 1


if __name__ == "__main__":
    sys.exit(main())
