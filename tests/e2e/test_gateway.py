"""A builtin gateway end to end: resources applied on the global, backends registered in zone-1,
`meshgate-dp` starting a real Envoy against the zone's xDS server, and HTTP through the gateway."""

from __future__ import annotations

import json
import signal
from typing import Any

import httpx
import pytest

from tests.support.dp import zone_dp
from tests.support.envoy import http_backend
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


def gateway(port: int) -> dict[str, Any]:
    return {
        "type": "MeshGateway",
        "mesh": "default",
        "name": "edge",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {"listeners": [{"port": port, "protocol": "HTTP", "hostname": "*"}]},
    }


def route(a_to: str) -> dict[str, Any]:
    def rule(prefix: str, service: str) -> dict[str, Any]:
        return {
            "matches": [{"path": {"match": "PREFIX", "value": prefix}}],
            "backends": [{"weight": 1, "destination": {"kuma.io/service": service}}],
        }

    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": "edge-routes",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {"http": {"rules": [rule("/a", a_to), rule("/b", "echo-b")]}},
    }


def backend_dataplane(name: str, port: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": name,
        "networking": {"address": "127.0.0.1", "inbound": [{"port": port, "tags": {"kuma.io/service": name}}]},
    }


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


async def through(port: int, path: str) -> str:
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            r = await c.get(f"http://127.0.0.1:{port}{path}")
    except httpx.HTTPError:
        return ""
    return r.text if r.status_code == 200 else f"{r.status_code}"


async def test_gateway_routes_http_and_follows_a_route_change_on_the_global(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    listen = free_port()
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await put(g, "/meshes/default/meshgateways/edge", gateway(listen))
    await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route("echo-a"))
    async with http_backend("echo-a") as a, http_backend("echo-b") as b:
        for backend in (a, b):
            await eventually(lambda: _mesh_in(z), what="mesh in zone-1")
            await put(z, f"/meshes/default/dataplanes/{backend.name}", backend_dataplane(backend.name, backend.port))
        edge = json.dumps(
            {
                "type": "Dataplane",
                "mesh": "default",
                "name": "edge-1",
                "networking": {
                    "address": "127.0.0.1",
                    "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}},
                },
            }
        )
        dp = await zone_dp(procs, z, edge)
        try:
            await eventually(
                lambda: _starts(through(listen, "/a/x"), "echo-a"), what=f"/a via Envoy\n{dp.logs()[-2000:]}"
            )
            assert (await through(listen, "/b")).startswith("echo-b")
            assert await through(listen, "/nothing") == "404"  # no route matches

            # Change the route on the global: /a moves to echo-b, through KDS, the zone and xDS.
            await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route("echo-b"))
            await eventually(lambda: _starts(through(listen, "/a/x"), "echo-b"), what="/a moved to echo-b")

            async with httpx.AsyncClient(base_url=z.url()) as c:
                proxies = (await c.get("/xds/proxies")).json()["proxies"]
            (edge_proxy,) = [p for p in proxies if p["proxy"] == "default.edge-1"]
            assert edge_proxy["connected"]

            dp.proc.send_signal(signal.SIGTERM)
            assert await dp.exited() == 0
            # Deregistered when the zone sees the proxy's stream close (Kuma's lifecycle): a moment later, so poll.
            await eventually(lambda: _gone(z, "/meshes/default/dataplanes/edge-1"), what="edge-1 deregistered")
        finally:
            dp.stop()


async def _mesh_in(z: CPProcess) -> bool:
    async with httpx.AsyncClient(base_url=z.url()) as c:
        return (await c.get("/meshes/default")).status_code == 200


async def _starts(text: Any, prefix: str) -> bool:
    return str(await text).startswith(prefix)


async def test_envoy_keeps_serving_while_the_zone_is_killed_and_converges_when_it_returns(
    procs: ProcessGroup,
) -> None:
    g = await procs.global_cp()
    xds_port = free_port()  # the restarted zone must come back where Envoy looks for it
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--xds-port", str(xds_port))
    listen = free_port()
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await put(g, "/meshes/default/meshgateways/edge", gateway(listen))
    await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route("echo-a"))
    async with http_backend("echo-a") as a, http_backend("echo-b") as b:
        await eventually(lambda: _mesh_in(z), what="mesh in zone-1")
        for backend in (a, b):
            await put(z, f"/meshes/default/dataplanes/{backend.name}", backend_dataplane(backend.name, backend.port))
        edge = json.dumps(
            {
                "type": "Dataplane",
                "mesh": "default",
                "name": "edge-1",
                "networking": {
                    "address": "127.0.0.1",
                    "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}},
                },
            }
        )
        dp = await zone_dp(procs, z, edge)
        try:
            await eventually(lambda: _starts(through(listen, "/a/x"), "echo-a"), what="/a via Envoy")

            z.stop(signal.SIGKILL)
            # The zone is gone: Envoy keeps its last config and keeps routing.
            for _ in range(20):
                assert (await through(listen, "/a/x")).startswith("echo-a")
            # A change made on the global meanwhile cannot reach this zone yet.
            await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route("echo-b"))
            assert (await through(listen, "/a/x")).startswith("echo-a")

            # The zone comes back (same store, same xDS port): it resyncs from the global, Envoy reconnects,
            # and the traffic converges to the change.
            await procs.zone_cp("zone-1", g.ports["kds"], "--xds-port", str(xds_port))
            await eventually(
                lambda: _starts(through(listen, "/a/x"), "echo-b"), what="converged after the zone returned"
            )
            assert dp.proc.poll() is None  # meshgate-dp and its Envoy rode it out
        finally:
            dp.stop()


async def _gone(cp: CPProcess, path: str) -> bool:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return (await c.get(path)).status_code == 404
