"""Cross-mesh end to end (gateway.md, "Cross-mesh"): global and zone as processes, two meshgate-dp Envoys.

Meshes `a` and `b` are created on the global with a builtin mTLS backend; the global makes their CA Secrets,
which reach the zone over KDS. Mesh `b`'s MeshGateway `edge` has a crossMesh listener; the zone's DNS answers
`internal.edge.b.mesh` with a VIP (the zone's VIP CIDR is inside 127.0.0.0/8, so Envoy binds it on loopback),
mesh `a`'s delegated gateway Envoy listens on that VIP and the listener's port, and sends the request over mTLS
to mesh `b`'s gateway Envoy, which routes it to `echo`. A plaintext client of the gateway is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.message
import dns.rdatatype
import httpx
import pytest

from tests.support.cross_mesh import (
    NAME,
    allow_all,
    echo_dataplane,
    edge_dataplane,
    edge_gateway,
    mtls_mesh,
    route_to_echo,
)
from tests.support.cross_mesh import kong as kong_doc
from tests.support.dp import zone_dp
from tests.support.envoy import http_backend
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e]

_VIP_CIDR = "127.103.0.0/16"


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


async def exists(cp: CPProcess, path: str) -> bool:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return (await c.get(path)).status_code == 200


async def has_secret(cp: CPProcess, mesh: str, name: str) -> bool:
    """Listed, since a private key's own GET is 403 for everyone (meshgate.rest.private_keys)."""
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get(f"/meshes/{mesh}/secrets")
    return r.status_code == 200 and name in {i["name"] for i in r.json()["items"]}


async def resolve(z: CPProcess, name: str) -> str | None:
    answer = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=z.ports["dns"], timeout=2)
    for rrset in answer.answer:
        if rrset.rdtype == dns.rdatatype.A:
            return str(next(iter(rrset)))
    return None


def dp_dir(root: Path, name: str) -> Path:
    out = root / name  # one meshgate-dp per directory: each writes its own dp.log
    out.mkdir(parents=True, exist_ok=True)
    return out


async def test_mesh_a_reaches_mesh_bs_cross_mesh_gateway_by_its_mesh_name(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--vip-cidr", _VIP_CIDR)
    port = free_port()
    for mesh in ("a", "b"):
        await put(g, f"/meshes/{mesh}", mtls_mesh(mesh))
    await put(g, "/meshes/b/meshgateways/edge", edge_gateway(port))
    await put(g, "/meshes/b/meshgatewayroutes/to-echo", route_to_echo())
    await put(g, "/meshes/b/traffic-permissions/allow-all", allow_all("b"))
    # The global made each mesh's CA, and KDS brought it to the zone.
    for mesh in ("a", "b"):
        for kind in ("cert", "key"):
            name = f"{mesh}.ca-builtin-{kind}-ca-1"
            await eventually(lambda m=mesh, n=name: has_secret(g, m, n), what=f"{name} on the global")
            await eventually(lambda m=mesh, n=name: has_secret(z, m, n), what=f"{name} in zone-1")
    await eventually(lambda: exists(z, f"/meshes/b/meshgateways/{in_zone('edge', 'b')}"), what="the gateway in zone-1")
    async with http_backend("echo") as echo:
        # Mesh b has mTLS: its gateway reaches echo over mTLS through echo's sidecar (issue 14), never its port.
        echo_doc = echo_dataplane("127.0.0.1", free_port(), service_port=echo.port)
        echo_dp = await zone_dp(procs, z, json.dumps(echo_doc), workdir=dp_dir(procs.workdir, "echo"))
        try:
            await eventually(lambda: resolve(z, NAME), what=f"{NAME} resolves")
            vip = await resolve(z, NAME)
            assert vip is not None
            assert vip.startswith("127.103.")
            edge = edge_dataplane("127.0.0.1")
            kong = kong_doc("127.0.0.1")
            gateway_dp = await zone_dp(procs, z, json.dumps(edge), workdir=dp_dir(procs.workdir, "edge"))
            try:
                client_dp = await zone_dp(procs, z, json.dumps(kong), workdir=dp_dir(procs.workdir, "kong"))
                try:

                    async def through_vip() -> bool:
                        try:
                            async with httpx.AsyncClient(timeout=2) as c:
                                r = await c.get(f"http://{vip}:{port}/hello", headers={"Host": NAME})
                        except httpx.HTTPError:
                            return False
                        return r.status_code == 200 and r.text == "echo /hello"

                    try:
                        await eventually(
                            through_vip, timeout=60, what=f"http://{NAME}:{port} (VIP {vip}) across meshes"
                        )
                    except AssertionError as exc:
                        logs = f"{client_dp.logs()[-3000:]}\n{gateway_dp.logs()[-3000:]}\n{z.logs()}"
                        raise AssertionError(f"{exc}\n{logs}") from None
                    # Plaintext straight to the gateway's crossMesh listener is refused.
                    hits = echo.hits
                    with pytest.raises(httpx.TransportError):
                        async with httpx.AsyncClient(timeout=5) as c:
                            await c.get(f"http://127.0.0.1:{port}/plain", headers={"Host": NAME})
                    assert echo.hits == hits
                finally:
                    client_dp.stop()
            finally:
                gateway_dp.stop()
        finally:
            echo_dp.stop()
