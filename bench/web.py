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


def demo_city() -> Path:
    """The demo's Yantai district, built once."""
    city = OUT / "demo" / "yantai"
    if not (city / "city.json").exists():
        from twin.demo import build_demo

        build_demo(OUT / "demo")
    return city


def main() -> int:
    """Load the page cold once and warm `--loads` times; print each first frame and payload."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loads", type=int, default=5, help="warm page loads after the cold one")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
          f"Python {platform.python_version()}; Chromium {CHROMIUM} with SwiftShader")
    city = demo_city()
    server = Server(city)
    warm = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            for load in range(args.loads + 1):
                context = browser.new_context(viewport=VIEWPORT)
                page = context.new_page()
                started = time.perf_counter()
                page.goto(f"{server.url}/")
                page.wait_for_function("window.twin && window.twin.ready", timeout=120_000)
                ready_ms, total, own = page.evaluate(PAYLOAD)
                label = "cold" if load == 0 else f"warm {load}"
                print(f"{label:>7}: first frame with buildings and pipes at {ready_ms:,.0f} ms "
                      f"(wall {time.perf_counter() - started:.1f} s); before it {total / 1e6:.2f} MB, "
                      f"{own / 1e6:.2f} MB besides deck.gl")
                if load:
                    warm.append((ready_ms, own))
                context.close()
            browser.close()
    finally:
        server.close()
    ready = statistics.median(r for r, _ in warm)
    own = statistics.median(o for _, o in warm)
    print(f"median of {len(warm)} warm loads: first frame {ready:,.0f} ms (target <= 3,000: "
          f"{'met' if ready <= 3000 else 'NOT met'}); payload besides deck.gl {own / 1e6:.2f} MB "
          f"(target < 5 MB: {'met' if own < 5e6 else 'NOT met'})")
    return 0 if ready <= 3000 and own < 5e6 else 1


if __name__ == "__main__":
    sys.exit(main())
