"""Dataplanes relayed through the global to every other zone: their services get `.mesh` names everywhere."""

from __future__ import annotations

from typing import Any

import anyio
import dns.rcode
import httpx
import pytest

from meshgate.testing.factory import dataplane
from tests.e2e.test_dns import DNS_ARGS, MESHGATECTL, put_dataplane, resolve, vip_of
from tests.e2e.test_global_to_zone import MESH, get, put
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

SERVICE = "echo_default_svc_80"
NAME = "echo.default.svc.80.mesh"


async def dataplanes(cp: CPProcess) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get("/meshes/default/dataplanes")
    r.raise_for_status()
    return list(r.json()["items"])


async def test_a_dataplane_of_zone_2_is_relayed_to_zone_1_and_its_name_resolves_there(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"], *DNS_ARGS)
    z2 = await procs.zone_cp("zone-2", g.ports["kds"], *DNS_ARGS)
    for z in (z1, z2):
        await eventually(lambda z=z: get(z, "/meshes/default"), what=f"the Mesh on {z.name}")
    r = await put_dataplane(z2, dataplane("echo-1", SERVICE))
    assert r.status_code == 201, r.text

    async def relayed() -> bool:
        return bool(await dataplanes(z1))

    await eventually(relayed, what="zone-2's Dataplane in zone-1")
    [copy] = await dataplanes(z1)
    # Named and labelled as the global stores it: hash-suffixed, with the zone it belongs to.
    assert copy["name"].startswith("echo-1-")
    assert copy["labels"] == {"kuma.io/origin": "zone", "kuma.io/zone": "zone-2", "kuma.io/display-name": "echo-1"}

    # zone-1 may neither change zone-2's Dataplane nor claim to create one for zone-2.
    async with httpx.AsyncClient(base_url=z1.url()) as c:
        r = await c.delete(f"/meshes/default/dataplanes/{copy['name']}")
        assert r.status_code == 405
        assert "belongs to zone 'zone-2'" in r.json()["details"]
        forged = {**dataplane("forged", SERVICE), "labels": {"kuma.io/zone": "zone-2"}}
        r = await c.put("/meshes/default/dataplanes/forged", json=forged)
        assert r.status_code == 400
        assert r.json()["invalid_parameters"][0]["field"] == 'labels["kuma.io/zone"]'

    await eventually(lambda: vip_of(z1, NAME), what=f"{NAME} resolving in zone-1")
    vip = await vip_of(z1, NAME)
    assert vip is not None
    assert vip.startswith("127.100.")
    async with httpx.AsyncClient(base_url=z1.url()) as c:
        listed = (await c.get("/vips", params={"mesh": "default"})).json()["items"]
    [entry] = [i for i in listed if i["name"] == NAME]
    assert entry["source"] == ["Dataplane echo-1 (zone zone-2)"]

    # The global explains the name: what makes it, and that each zone has it.
    done = await anyio.run_process([MESHGATECTL, "--api", g.url(), "kds", "trace", "name", NAME], check=False)
    assert done.returncode == 0, done.stderr.decode()
    out = name_out = done.stdout.decode()
    assert f"Dataplane echo-1 in mesh default (inbound kuma.io/service: {SERVICE}; from zone zone-2; port 80)" in out
    # Each line ends with the VIP that zone gives the name (asked of the zone over its KDS session).
    [line1] = [line for line in out.splitlines() if line.startswith("zone-1: ")]
    assert line1.startswith("zone-1: in sync — holds Dataplane echo-1-"), out
    assert line1.endswith(f"; VIP {vip}"), out
    [line2] = [line for line in out.splitlines() if line.startswith("zone-2: ")]
    assert line2.startswith("zone-2: origin — Dataplane echo-1 was created in this zone; VIP 127.100."), out
    # The Dataplane's own trace: zone-2 sent it up, and zone-1 holds the relayed copy.
    done = await anyio.run_process([MESHGATECTL, "--api", g.url(), "kds", "trace", "dataplane", "echo-1"], check=False)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stdout.decode()
    assert "zone-1: in sync — relayed from zone-2 as echo-1-" in out, out
    assert "zone-2: in sync" in out, out
    # A .mesh name alone is enough: `kds trace NAME` is `kds trace name NAME`.
    short = await anyio.run_process([MESHGATECTL, "--api", g.url(), "kds", "trace", NAME], check=False)
    assert short.returncode == 0, short.stderr.decode()
    assert short.stdout.decode().splitlines()[:2] == name_out.splitlines()[:2]
    # A name nothing makes: the answer says what would make it.
    done = await anyio.run_process([MESHGATECTL, "--api", g.url(), "kds", "trace", "name", "nope.mesh"], check=False)
    assert done.returncode == 1
    assert "no Dataplane inbound with kuma.io/service: nope" in done.stderr.decode()

    # Not echoed: zone-2 keeps only its own Dataplane, the global holds it once, zone-1 sends nothing up.
    assert [d["name"] for d in await dataplanes(z2)] == ["echo-1"]
    on_global = await dataplanes(g)
    assert [(d["labels"]["kuma.io/zone"], d["labels"]["kuma.io/display-name"]) for d in on_global] == [
        ("zone-2", "echo-1")
    ]

    # A Dataplane of zone-1 goes the other way.
    assert (await put_dataplane(z1, dataplane("web-1", "web"))).status_code == 201
    await eventually(lambda: vip_of(z2, "web.mesh"), what="web.mesh resolving in zone-2")

    # ?zone= filters on a zone as on the global: its own Dataplanes, or another zone's relayed ones.
    async with httpx.AsyncClient(base_url=z1.url()) as c:
        own = (await c.get("/meshes/default/dataplanes", params={"zone": "zone-1"})).json()["items"]
        from_zone_2 = (await c.get("/meshes/default/dataplanes", params={"zone": "zone-2"})).json()["items"]
    assert [d["name"] for d in own] == ["web-1"]
    assert [d["labels"]["kuma.io/display-name"] for d in from_zone_2] == ["echo-1"]

    # Deleted in zone-2: gone from zone-1, and its name no longer resolves there.
    async with httpx.AsyncClient(base_url=z2.url()) as c:
        assert (await c.delete("/meshes/default/dataplanes/echo-1")).status_code == 200

    async def gone() -> bool:
        response = await resolve(z1, NAME)
        return response.rcode() == dns.rcode.NXDOMAIN

    await eventually(gone, what=f"{NAME} NXDOMAIN in zone-1")
    assert [d["labels"].get("kuma.io/zone") for d in await dataplanes(z1)] == [None]


async def test_a_relayed_dataplane_survives_a_zone_restart_without_being_sent_back(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"], *DNS_ARGS)
    z2 = await procs.zone_cp("zone-2", g.ports["kds"], *DNS_ARGS)
    await eventually(lambda: get(z1, "/meshes/default"), what="the Mesh on zone-1")
    await eventually(lambda: get(z2, "/meshes/default"), what="the Mesh on zone-2")
    assert (await put_dataplane(z2, dataplane("echo-1", SERVICE))).status_code == 201
    await eventually(lambda: vip_of(z1, NAME), what=f"{NAME} in zone-1")
    vip = await vip_of(z1, NAME)

    z1.stop()
    z1b = await procs.zone_cp("zone-1", g.ports["kds"], *DNS_ARGS)  # same data dir
    await eventually(lambda: vip_of(z1b, NAME), what=f"{NAME} after the restart")
    assert await vip_of(z1b, NAME) == vip
    # The resumed session offered zone-1's copy as held from the global, so nothing was re-sent or echoed.
    on_global = await dataplanes(g)
    assert [d["labels"]["kuma.io/zone"] for d in on_global] == ["zone-2"]
