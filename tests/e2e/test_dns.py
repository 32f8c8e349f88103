"""`.mesh` DNS on a real zone process: a registered Dataplane's name resolves, and keeps its VIP across a restart."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import anyio
import dns.asyncquery
import dns.message
import dns.rcode
import httpx
import pytest

from meshgate.testing.factory import dataplane
from tests.e2e.test_global_to_zone import MESH, get, put
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESHGATECTL = str(Path(sys.executable).with_name("meshgatectl"))
DNS_ARGS = ("--vip-cidr", "127.100.0.0/16")


async def put_dataplane(z: CPProcess, doc: dict[str, object]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=z.url()) as c:
        return await c.put(f"/meshes/default/dataplanes/{doc['name']}", json=doc)


async def resolve(z: CPProcess, name: str, rdtype: str = "A") -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    return await dns.asyncquery.udp(query, "127.0.0.1", port=z.ports["dns"], timeout=2)


async def vip_of(z: CPProcess, name: str) -> str | None:
    response = await resolve(z, name)
    if response.rcode() != dns.rcode.NOERROR or not response.answer:
        return None
    return str(response.answer[0][0])


async def test_a_dataplane_name_resolves_and_keeps_its_vip_across_a_restart(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    z = await procs.zone_cp("zone-1", g.ports["kds"], *DNS_ARGS)
    await eventually(lambda: get(z, "/meshes/default"), what="the Mesh on the zone")
    for name, service in [("web-1", "web"), ("echo-1", "echo_default_svc_80")]:
        r = await put_dataplane(z, dataplane(name, service))
        assert r.status_code in (200, 201), r.text

    await eventually(lambda: vip_of(z, "echo.default.svc.80.mesh"), what="echo's name resolving")
    before = {n: await vip_of(z, n) for n in ("web.mesh", "echo_default_svc_80.mesh", "echo.default.svc.80.mesh")}
    # web-1 was registered first, so it may have taken the first address before echo-1 existed.
    assert sorted({str(v) for v in before.values()}) == ["127.100.0.1", "127.100.0.2"]
    assert before["echo_default_svc_80.mesh"] == before["echo.default.svc.80.mesh"] != before["web.mesh"]
    web, echo = before["web.mesh"], before["echo.default.svc.80.mesh"]
    aaaa = await resolve(z, "web.mesh", "AAAA")
    assert [r.to_text() for r in aaaa.answer[0]] == [f"::ffff:{web}"]
    assert (await resolve(z, "nope.mesh")).rcode() == dns.rcode.NXDOMAIN
    response = await dns.asyncquery.tcp(dns.message.make_query("web.mesh", "A"), "127.0.0.1", port=z.ports["dns"])
    assert [r.to_text() for r in response.answer[0]] == [web]

    done = await anyio.run_process([MESHGATECTL, "--api", z.url(), "inspect", "vips", "--mesh", "default"], check=False)
    assert done.returncode == 0, done.stderr.decode()
    rows = [re.split(r"\s{2,}", line) for line in done.stdout.decode().splitlines()]
    assert rows == [
        ["NAME", "VIP", "PORTS", "SOURCE"],
        ["echo_default_svc_80.mesh", echo, "80", "Dataplane echo-1"],
        ["echo.default.svc.80.mesh", echo, "80", "Dataplane echo-1"],
        ["web.mesh", web, "80", "Dataplane web-1"],
    ]

    # The zone's /metrics counts what its DNS answered.
    async with httpx.AsyncClient() as c:
        metrics = (await c.get(f"http://127.0.0.1:{z.ports['diagnostics']}/metrics")).text.splitlines()
    assert "meshgate_dns_names 3" in metrics
    counts = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics if line.startswith("meshgate_dns_")}
    # At least the queries above (polling while names were still missing adds NXDOMAINs).
    assert counts['meshgate_dns_responses_total{rcode="NOERROR"}'] >= 3
    assert counts['meshgate_dns_responses_total{rcode="NXDOMAIN"}'] >= 1

    # Restart: the VIPs come back from the zone's sqlite store, before the DNS port opens.
    z.stop()
    z = await procs.zone_cp("zone-1", g.ports["kds"], *DNS_ARGS)
    assert {n: await vip_of(z, n) for n in before} == before
