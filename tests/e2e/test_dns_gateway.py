"""DNS name -> VIP -> Envoy -> backend: a delegated gateway's Envoy listens on the VIPs the zone's DNS hands out."""

from __future__ import annotations

import json
import os
from typing import Any

import dns.asyncquery
import dns.message
import dns.rdatatype
import httpx
import pytest

from tests.support.dp import zone_dp
from tests.support.envoy import http_backend
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="Envoy binds VIP:80, a privileged port, which needs root here"),
]


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


async def resolve(z: CPProcess, name: str) -> str | None:
    answer = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=z.ports["dns"], timeout=2)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return str(next(iter(rrset)))
    return None


def echo_dataplane(port: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": "echo-1",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": port, "tags": {"kuma.io/service": "echo", "kuma.io/protocol": "http"}}],
        },
    }


def kong(outbound: list[dict[str, Any]] | None = None) -> str:
    networking: dict[str, Any] = {
        "address": "127.0.0.1",
        "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": "kong"}},
    }
    if outbound:
        networking["outbound"] = outbound
    return json.dumps({"type": "Dataplane", "mesh": "default", "name": "kong-1", "networking": networking})


async def answers(vip: str, body_prefix: str) -> bool:
    """Whether http://echo.mesh/hello sent to `vip` (through the delegated gateway's Envoy) reaches the backend."""
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            r = await c.get(f"http://{vip}/hello", headers={"Host": "echo.mesh"})
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.text.startswith(body_prefix)


async def test_a_mesh_name_resolves_to_a_vip_that_the_delegated_gateway_routes(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    # VIPs inside 127.0.0.0/8 so Envoy can bind them on loopback.
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--vip-cidr", "127.100.0.0/16")
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})

    async def mesh_in_zone() -> bool:
        async with httpx.AsyncClient(base_url=z.url()) as c:
            return (await c.get("/meshes/default")).status_code == 200

    await eventually(mesh_in_zone, what="mesh in zone-1")
    async with http_backend("echo") as echo:
        await put(z, "/meshes/default/dataplanes/echo-1", echo_dataplane(echo.port))
        await eventually(lambda: resolve(z, "echo.mesh"), what="echo.mesh resolves")
        vip = await resolve(z, "echo.mesh")
        assert vip is not None
        assert vip.startswith("127.100.")

        # An explicit outbound too: the VIP listener must coexist with it.
        outbound = [{"port": 10001, "tags": {"kuma.io/service": "echo"}}]
        dp = await zone_dp(procs, z, kong(outbound))
        try:
            await eventually(
                lambda: answers(vip, "echo"), what=f"http://echo.mesh (VIP {vip}) through the delegated gateway's Envoy"
            )
        finally:
            dp.stop()


async def test_a_service_of_another_zone_is_reached_by_its_name_through_the_delegated_gateway(
    procs: ProcessGroup,
) -> None:
    """echo runs only in zone-2; zone-1 learns it through the global, resolves its name, and its Envoy routes
    the VIP to zone-2's endpoint (directly: there is no zone ingress, and loopback is one flat network)."""
    g = await procs.global_cp()
    z1 = await procs.zone_cp("zone-1", g.ports["kds"], "--vip-cidr", "127.101.0.0/16")
    z2 = await procs.zone_cp("zone-2", g.ports["kds"], "--vip-cidr", "127.102.0.0/16")
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})

    async def mesh_in(z: CPProcess) -> bool:
        async with httpx.AsyncClient(base_url=z.url()) as c:
            return (await c.get("/meshes/default")).status_code == 200

    for z in (z1, z2):
        await eventually(lambda z=z: mesh_in(z), what=f"mesh in {z.name}")
    async with http_backend("remote-echo") as echo:
        await put(z2, "/meshes/default/dataplanes/echo-1", echo_dataplane(echo.port))
        await eventually(lambda: resolve(z1, "echo.mesh"), what="echo.mesh resolves in zone-1")
        vip = await resolve(z1, "echo.mesh")
        assert vip is not None
        assert vip.startswith("127.101.")
        dp = await zone_dp(procs, z1, kong())
        try:
            await eventually(
                lambda: answers(vip, "remote-echo"),
                what=f"http://echo.mesh (VIP {vip} in zone-1) reaching zone-2's echo",
            )
        finally:
            dp.stop()
