"""GET /health: what a load balancer and an operator ask a server."""

from __future__ import annotations

import httpx


def test_a_geopackage_server_is_up_and_says_it_polls_for_changes(server):
    response = httpx.get(f"{server.url}/health", timeout=10)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["status"] == "ok" and body["store"] == "geopackage"
    assert body["changes"] == "polling (no notices)"
    assert body["pid"] == server.process.pid  # one worker: the process `twin serve` started
