"""Helpers for the REST API and meshgatectl tests: Kuma-shaped documents (the shared factory's, with the
defaults these tests were written against) and a served API with a client."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx

from meshgate.rest.app import ExtraRoute, create_api_app
from meshgate.rest.handlers import Role
from meshgate.rest.testing import serving
from meshgate.store.protocol import ResourceStore
from meshgate.testing import factory

__all__ = ["api_client", "dataplane", "gateway", "invalid_gateway", "mesh", "route"]

# Deadlock guard for a single HTTP exchange on loopback; not a speed assertion.
HTTP_TIMEOUT = 10.0


def mesh(name: str = "default", **labels: str) -> dict[str, Any]:
    return factory.mesh(name, labels=labels)


def gateway(name: str = "edge", mesh: str = "default", port: int = 8080) -> dict[str, Any]:
    return factory.gateway(name, mesh, service=f"{name}-gw", listeners=[factory.listener(port, hostname="example.com")])


def invalid_gateway(name: str = "edge", mesh: str = "default") -> dict[str, Any]:
    """A MeshGateway breaking several rules at once: no selectors, a bad port, HTTPS without TLS."""
    doc = copy.deepcopy(gateway(name, mesh))
    doc["selectors"] = []
    doc["conf"]["listeners"] = [
        {"port": 0, "protocol": "HTTP"},
        {"port": 8443, "protocol": "HTTPS", "hostname": "UPPER.example.com"},
    ]
    return doc


def route(name: str = "web", mesh: str = "default") -> dict[str, Any]:
    return factory.http_route(name, mesh, service="edge-gw", backends=[factory.backend("backend", weight=1)])


def dataplane(name: str = "edge-1", mesh: str = "default", **labels: str) -> dict[str, Any]:
    return factory.gateway_dataplane(name, "edge-gw", mesh=mesh, labels=labels)


@asynccontextmanager
async def api_client(
    store: ResourceStore, role: Role = "global", extra_routes: Sequence[ExtraRoute] = ()
) -> AsyncIterator[httpx.AsyncClient]:
    """Serves the API for `role` on a loopback port and yields an httpx client pointed at it."""
    app = create_api_app(store, role=role, extra_routes=extra_routes)
    async with serving(app) as base_url, httpx.AsyncClient(base_url=base_url, timeout=HTTP_TIMEOUT) as http:
        yield http


def zone(name: str = "zone-1", enabled: bool = True) -> dict[str, Any]:
    return {"type": "Zone", "name": name, "enabled": enabled}
