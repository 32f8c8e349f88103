"""ZoneIngress over KDS as Kuma 2.7 syncs it: registered in its zone, up to the global (named, labelled and with
`spec.zone` set there), then from the global to every other zone but its own; the zone keeps its
`availableServices` listing its own Dataplanes' services."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import anyio
import httpx
import pytest

from meshgate.testing.dp import DpProcess, dataplane_token, zone_ca
from meshgate.testing.factory import dataplane, zone_ingress
from meshgate.testing.processes import free_port
from tests.e2e.test_dns import MESHGATECTL, put_dataplane
from tests.e2e.test_global_to_zone import MESH, get, put
from tests.support.gateway_harness import self_signed, tls_backend
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


async def ingresses(cp: CPProcess) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get("/zone-ingresses")
    r.raise_for_status()
    return list(r.json()["items"])


async def test_a_zone_ingress_of_zone_1_reaches_the_global_and_zone_2_with_its_services(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    z2 = await procs.zone_cp("zone-2", g.ports["kds"])
    for z in (z1, z2):
        await eventually(lambda z=z: get(z, "/meshes/default"), what=f"the Mesh on {z.name}")

    doc = zone_ingress("ingress-1", address="10.0.1.5", advertised_address="203.0.113.7", advertised_port=10001)
    async with httpx.AsyncClient(base_url=z1.url()) as c:
        r = await c.put("/zone-ingresses/ingress-1", json=doc)
        assert r.status_code == 201, r.text
    r = await put_dataplane(z1, dataplane("web-1", "web", tags={"version": "v1"}))
    assert r.status_code == 201, r.text
    r = await put_dataplane(z2, dataplane("db-1", "db"))  # zone-2's: relayed to zone-1, never counted there
    assert r.status_code == 201, r.text

    web = {"tags": {"kuma.io/service": "web", "version": "v1"}, "instances": 1, "mesh": "default"}

    async def listed_on(cp: CPProcess) -> list[dict[str, Any]] | None:
        items = await ingresses(cp)
        if len(items) == 1 and items[0].get("availableServices") == [web]:
            return items
        return None

    # The zone fills in its own ingress's services.
    await eventually(lambda: listed_on(z1), what="zone-1's ingress listing web")
    [own] = await ingresses(z1)
    assert own["name"] == "ingress-1"
    assert own.get("zone", "") == ""  # Kuma leaves spec.zone empty in the registering zone

    # The global holds it as Kuma names it: hash-suffixed, labelled with its zone, spec.zone set.
    await eventually(lambda: listed_on(g), what="zone-1's ingress on the global")
    [on_global] = await ingresses(g)
    assert on_global["name"].startswith("ingress-1-")
    assert on_global["labels"] == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "ingress-1",
    }
    assert on_global["zone"] == "zone-1"
    assert on_global["networking"] == {
        "address": "10.0.1.5",
        "advertisedAddress": "203.0.113.7",
        "port": 10001,
        "advertisedPort": 10001,
    }

    # kumactl's names: `get zone-ingresses` lists it, `get zone-ingress NAME` shows it.
    done = await anyio.run_process([MESHGATECTL, "--api", g.url(), "get", "zone-ingresses"], check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert on_global["name"] in done.stdout.decode()
    done = await anyio.run_process(
        [MESHGATECTL, "--api", g.url(), "get", "zone-ingress", on_global["name"], "-o", "json"], check=False
    )
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["networking"]["advertisedAddress"] == "203.0.113.7"

    # zone-2 gets it from the global, advertised address and services included; it is read-only there.
    await eventually(lambda: listed_on(z2), what="zone-1's ingress in zone-2")
    [on_z2] = await ingresses(z2)
    assert on_z2["name"] == on_global["name"]
    assert on_z2["zone"] == "zone-1"
    assert on_z2["networking"]["advertisedAddress"] == "203.0.113.7"
    async with httpx.AsyncClient(base_url=z2.url()) as c:
        r = await c.delete(f"/zone-ingresses/{on_z2['name']}")
        assert r.status_code == 405
    # Read-only on the global too: only its zone writes it.
    async with httpx.AsyncClient(base_url=g.url()) as c:
        r = await c.put("/zone-ingresses/made-on-global", json=zone_ingress("made-on-global"))
        assert r.status_code in (400, 405), r.text

    # Not sent back to zone-1: it still holds only its own.
    assert [i["name"] for i in await ingresses(z1)] == ["ingress-1"]

    # A new instance in zone-1 updates the count everywhere.
    r = await put_dataplane(z1, dataplane("web-2", "web", address="10.0.0.2", tags={"version": "v1"}))
    assert r.status_code == 201, r.text

    async def two_instances() -> bool:
        [item] = await ingresses(z2)
        return bool(item.get("availableServices") == [{**web, "instances": 2}])

    await eventually(two_instances, what="two web instances in zone-2's copy")

    # Deleted in zone-1: gone from the global and zone-2.
    async with httpx.AsyncClient(base_url=z1.url()) as c:
        assert (await c.delete("/zone-ingresses/ingress-1")).status_code == 200

    async def gone() -> bool:
        return not await ingresses(g) and not await ingresses(z2)

    await eventually(gone, what="the ingress gone from the global and zone-2")


async def test_meshgate_dp_proxy_type_ingress_registers_its_zone_ingress_and_passes_tls_through_by_sni(
    procs: ProcessGroup,
) -> None:
    """kuma-dp's `--proxy-type ingress` with a ZoneIngress document: the zone registers it from the stream's node
    metadata (node.id `.<name>`), fills in its services, syncs it to the global, and gives its Envoy Kuma's
    ingress listener: a TLS connection whose SNI is `web{mesh=default}` reaches web's inbound port untouched
    (the TLS handshake is the backend's own), another SNI reaches nothing. The ZoneIngress goes when the proxy
    stops. Its credential is a data plane token of type `ingress` for its name (Kuma's, a zone token of scope
    `ingress`, cannot be checked by a meshgate zone)."""
    g = await procs.global_cp()
    await put(g, MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="the Mesh on zone-1")
    cert = self_signed(procs.workdir / "certs", "web")
    async with tls_backend("web", cert) as backend:
        r = await put_dataplane(z1, dataplane("web-1", "web", address="127.0.0.1", port=backend.port))
        assert r.status_code == 201, r.text
        ingress_port = free_port()
        doc = zone_ingress(
            "ingress-1", address="127.0.0.1", port=ingress_port, advertised_address="203.0.113.7", advertised_port=10001
        )
        token_file = procs.workdir / "ingress.token"
        body = {"mesh": "default", "name": "ingress-1", "type": "ingress"}
        token_file.write_text(await dataplane_token(z1, body))
        dp = DpProcess(
            procs.workdir,
            z1.ports["xds"],
            "--proxy-type",
            "ingress",
            "--dataplane",
            json.dumps(doc),
            ca_cert_file=zone_ca(procs, z1),
            token_file=token_file,
        )
        try:
            web = [{"tags": {"kuma.io/service": "web"}, "instances": 1, "mesh": "default"}]

            async def registered(cp: CPProcess) -> bool:
                items = await ingresses(cp)
                return len(items) == 1 and items[0].get("availableServices") == web

            await eventually(lambda: registered(z1), timeout=30, what=f"the ingress registered\n{dp.logs()[-2000:]}")
            [own] = await ingresses(z1)
            assert own["name"] == "ingress-1"
            assert own["labels"] == {"kuma.io/origin": "zone"}
            assert own["networking"]["admin"]["port"] == dp.admin_port  # declared for config dumps
            await eventually(lambda: registered(g), what="the registered ingress on the global")

            async def greeting(sni: str) -> str:
                ctx = ssl.create_default_context(cafile=str(cert.cert))
                ctx.check_hostname = False  # the SNI names the mesh service, the certificate the backend
                try:
                    with anyio.fail_after(5):
                        reader, writer = await asyncio.open_connection(
                            "127.0.0.1", ingress_port, ssl=ctx, server_hostname=sni
                        )
                        try:
                            return (await reader.readline()).decode()
                        finally:
                            writer.close()
                except (OSError, ssl.SSLError, TimeoutError):
                    return ""

            async def through_ingress() -> bool:
                return await greeting("web{mesh=default}") == "web\n"

            await eventually(through_ingress, timeout=30, what=f"web through the ingress\n{dp.logs()[-2000:]}")
            assert await greeting("db{mesh=default}") == ""  # no chain for that SNI: the connection is closed
        finally:
            dp.stop()

    async def gone() -> bool:
        return not await ingresses(z1) and not await ingresses(g)

    await eventually(gone, what="the ingress deregistered in zone-1 and on the global")


@pytest.mark.parametrize(
    ("token_body", "reason"),
    [
        (None, "missing data plane token"),
        ({"mesh": "default", "name": "ingress-1"}, "needs a token of type ingress, not 'any'"),
        ({"mesh": "default", "name": "other", "type": "ingress"}, "proxy name from requestor: ingress-1"),
    ],
    ids=["no token", "a Dataplane's token", "another ingress's token"],
)
async def test_an_ingress_without_its_own_ingress_token_is_refused(
    procs: ProcessGroup, token_body: dict[str, str] | None, reason: str
) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    token_file = None
    if token_body is not None:
        token_file = procs.workdir / "ingress.token"
        token_file.write_text(await dataplane_token(z1, token_body))
    doc = zone_ingress("ingress-1", address="127.0.0.1", port=free_port())
    dp = DpProcess(
        procs.workdir,
        z1.ports["xds"],
        "--proxy-type",
        "ingress",
        "--dataplane",
        json.dumps(doc),
        ca_cert_file=zone_ca(procs, z1),
        token_file=token_file,
    )
    try:
        await eventually(lambda: reason in z1.logs(), timeout=30, what=f"the zone refusing the ingress: {reason}")
        assert await ingresses(z1) == []
    finally:
        dp.stop()
