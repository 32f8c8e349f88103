"""ZoneEgress with real processes: a global and a zone, `meshgate-dp run --proxy-type egress` with its Envoy, a
sidecar's meshgate-dp with an outbound to an ExternalService, and that ExternalService as a local HTTP server.

With the Mesh's `routing.zoneEgress` on (and mTLS), the sidecar's request reaches the ExternalService through the
egress: the sidecar's Envoy speaks mTLS to the egress (a TLS handshake counted on its cluster), the egress's Envoy
counts the request on `default:ext`. With it off, the same request goes direct and the egress counts nothing
more. The ZoneEgress is registered by its proxy, synced to the global only (with `spec.zone`), listed by
`meshgatectl get zoneegresses`, and gone when the proxy stops. tests/e2e/test_zone_egress_netns.py runs the same
where only the egress can reach the ExternalService.
"""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import httpx
import pytest

from meshgate.resources import registry
from meshgate.testing import factory
from meshgate.testing.dp import DpProcess, dataplane_token, zone_ca, zone_dp
from meshgate.testing.processes import free_port
from meshgate.xds.clusters import cluster_name
from tests.e2e.test_dns import MESHGATECTL
from tests.e2e.test_global_to_zone import get
from tests.support.gateway_harness import recording_backend
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

EXT = "ext"


def egress_mesh(*, on: bool) -> dict[str, Any]:
    doc = factory.mtls_mesh()
    if on:
        doc["routing"] = {"zoneEgress": True}
    return doc


async def put(cp: CPProcess, doc: dict[str, Any]) -> httpx.Response:
    kind = registry.get(doc["type"])
    path = f"/meshes/{doc['mesh']}/{kind.plural}/{doc['name']}" if kind.mesh_scoped else f"/{kind.plural}/{doc['name']}"
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return await c.put(path, json=doc)


async def stat_sum(admin_port: int, pattern: str) -> int:
    """The sum of an Envoy's counters whose names match `pattern`, from its admin `/stats`."""
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://127.0.0.1:{admin_port}/stats", params={"filter": pattern})
    r.raise_for_status()
    return sum(int(line.rsplit(": ", 1)[1]) for line in r.text.splitlines() if ": " in line)


async def egresses(cp: CPProcess) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get("/zoneegresses")
    r.raise_for_status()
    return list(r.json()["items"])


async def egress_dp(procs: ProcessGroup, zone: CPProcess, name: str, port: int) -> DpProcess:
    token_file = procs.workdir / f"{name}.token"
    token_file.write_text(await dataplane_token(zone, {"mesh": "default", "name": name, "type": "egress"}))
    doc = factory.zone_egress(name, address="127.0.0.1", port=port)
    return DpProcess(
        procs.workdir,
        zone.ports["xds"],
        "--proxy-type",
        "egress",
        "--dataplane",
        json.dumps(doc),
        ca_cert_file=zone_ca(procs, zone),
        token_file=token_file,
        log_name=f"{name}.log",
    )


def sidecar(outbound_port: int) -> dict[str, Any]:
    doc = factory.dataplane("app-1", "app", address="127.0.0.1", port=free_port())
    doc["networking"]["outbound"] = [{"port": outbound_port, "tags": {"kuma.io/service": EXT}}]
    return doc


async def ask(port: int, path: str) -> int:
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            return (await c.get(f"http://127.0.0.1:{port}{path}")).status_code
    except httpx.HTTPError:
        return 0


# The egress's cluster to the ExternalService, `<mesh>:<service>` (Envoy may write `:` as `_` in stat names).
EGRESS_REQUESTS = rf"^cluster\.default[:_]{EXT}\.upstream_rq_total$"
SIDECAR_TLS = rf"^cluster\.{re.escape(cluster_name({'kuma.io/service': EXT}))}\.ssl\.handshake$"


async def test_a_sidecar_reaches_an_external_service_through_the_zone_egress_only_with_routing_zone_egress(
    procs: ProcessGroup,
) -> None:
    g = await procs.global_cp()
    for doc in (egress_mesh(on=True), factory.traffic_permission()):
        r = await put(g, doc)
        assert r.status_code in (200, 201), r.text
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: get(z, "/meshes/default"), what="the Mesh on zone-1")

    async with recording_backend(EXT) as backend:
        es = factory.external_service(EXT, address=f"127.0.0.1:{backend.port}", tags={"kuma.io/protocol": "http"})
        r = await put(g, es)
        assert r.status_code in (200, 201), r.text
        egress = await egress_dp(procs, z, "egress-1", free_port())
        outbound = free_port()
        app = await zone_dp(procs, z, json.dumps(sidecar(outbound)))
        try:
            # Registered by its proxy in zone-1, up to the global with spec.zone, listed by meshgatectl.
            await eventually(lambda: egresses(z), timeout=30, what=f"the egress registered\n{egress.logs()[-2000:]}")
            [own] = await egresses(z)
            assert (own["name"], own.get("zone", ""), own["labels"]) == ("egress-1", "", {"kuma.io/origin": "zone"})
            await eventually(lambda: egresses(g), what="the egress on the global")
            [on_global] = await egresses(g)
            assert on_global["zone"] == "zone-1"
            assert on_global["labels"]["kuma.io/zone"] == "zone-1"
            done = await anyio.run_process([MESHGATECTL, "--api", g.url(), "get", "zoneegresses"], check=False)
            assert done.returncode == 0, done.stderr.decode()
            assert on_global["name"] in done.stdout.decode()

            # routing.zoneEgress on: through the egress, over mTLS from the sidecar.
            async def through_egress() -> bool:
                return (
                    await ask(outbound, "/via-egress") == 200 and await stat_sum(egress.admin_port, EGRESS_REQUESTS) > 0
                )

            await eventually(
                through_egress,
                timeout=60,
                what=f"ext through the egress\n{egress.logs()[-2000:]}\n{app.logs()[-2000:]}",
            )
            assert await stat_sum(app.admin_port, SIDECAR_TLS) >= 1
            assert any(seen.path == "/via-egress" for seen in backend.requests)

            # routing.zoneEgress off: direct; the egress sees nothing more.
            r = await put(g, egress_mesh(on=False))
            assert r.status_code == 200, r.text

            async def direct() -> bool:
                before = await stat_sum(egress.admin_port, EGRESS_REQUESTS)
                ok = await ask(outbound, "/probe") == 200
                return ok and await stat_sum(egress.admin_port, EGRESS_REQUESTS) == before

            await eventually(direct, timeout=60, what="ext reached directly")
            before_egress = await stat_sum(egress.admin_port, EGRESS_REQUESTS)
            before_backend = len(backend.requests)
            for _ in range(3):
                assert await ask(outbound, "/direct") == 200
            assert await stat_sum(egress.admin_port, EGRESS_REQUESTS) == before_egress
            assert len(backend.requests) == before_backend + 3
        finally:
            app.stop()
            egress.stop()

    async def gone() -> bool:
        return not await egresses(z) and not await egresses(g)

    await eventually(gone, what="the egress deregistered in zone-1 and on the global")


@pytest.mark.parametrize(
    ("token_body", "reason"),
    [
        (
            {"mesh": "default", "name": "egress-1", "type": "ingress"},
            "proxy type from requestor: egress is different than in token: ingress",
        ),
        ({"mesh": "default", "name": "egress-1"}, "needs a token of type egress, not 'any'"),
    ],
    ids=["an ingress's token", "a Dataplane's token"],
)
async def test_an_egress_without_an_egress_token_is_refused(
    procs: ProcessGroup, token_body: dict[str, str], reason: str
) -> None:
    g = await procs.global_cp()
    r = await put(g, egress_mesh(on=True))
    assert r.status_code in (200, 201), r.text
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    token_file = procs.workdir / "egress.token"
    token_file.write_text(await dataplane_token(z, token_body))
    dp = DpProcess(
        procs.workdir,
        z.ports["xds"],
        "--proxy-type",
        "egress",
        "--dataplane",
        json.dumps(factory.zone_egress("egress-1", address="127.0.0.1", port=free_port())),
        ca_cert_file=zone_ca(procs, z),
        token_file=token_file,
    )
    try:
        await eventually(lambda: reason in z.logs(), timeout=30, what=f"the zone refusing the egress: {reason}")
        assert await egresses(z) == []
    finally:
        dp.stop()
