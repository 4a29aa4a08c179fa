"""Fixtures that run every test of a module on both stores: the session's demo city and its
server, once on GeoPackage and once on PostGIS, with the same answers expected.

A module opts in by importing them, which overrides conftest's GeoPackage-only ones::

    from both_stores import backend, demo_city, server  # noqa: F401
"""

from __future__ import annotations

import pytest

from conftest import BACKENDS, demo_on, server_on


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def demo_city(backend, request):
    return demo_on(backend, request)


@pytest.fixture(scope="module")
def server(backend, request):
    return server_on(backend, request)
