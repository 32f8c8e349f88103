"""Zone insights, lifecycle rules and the debugging commands, against a real global and real zones.

meshgatectl runs as the installed entry point, in a subprocess, exactly as a user runs it.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from tests.e2e.test_global_to_zone import MESH, gateway, get, put, store_an_invalid_gateway
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESHGATECTL = str(Path(sys.executable).with_name("meshgatectl"))
# Short pings so a zone that goes silent is offline within seconds, not the default 30.
FAST_HEALTH = ("--zone-health-interval", "0.5")


async def ctl(g: CPProcess, *args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([MESHGATECTL, "--api", g.url(), *args], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def overview(g: CPProcess, zone: str) -> dict[str, Any]:
    doc = await get(g, f"/zones/{zone}/_overview")
    assert doc is not None
    return doc


async def status_is(g: CPProcess, zone: str, status: str) -> bool:
    return bool((await overview(g, zone))["status"] == status)


async def start(
    procs: ProcessGroup, *args: str, kds_port: int = 0, zone_args: tuple[str, ...] = ()
) -> tuple[CPProcess, list[CPProcess]]:
    g = await procs.global_cp("global", *args, kds_port=kds_port)
    zones = [await procs.zone_cp(z, g.ports["kds"], *zone_args) for z in ("zone-1", "zone-2")]
    for z in zones:
        await eventually(lambda z=z: status_is(g, z.name, "online"), what=f"{z.name} online")
    return g, zones


async def test_inspect_zones_shows_both_zones_online(procs: ProcessGroup) -> None:
    g, _zones = await start(procs)
    await put(g, MESH)
    code, out, err = await ctl(g, "inspect", "zones")
    assert code == 0, err
    header, *rows = out.splitlines()
    assert re.split(r"\s{2,}", header) == [
        "NAME",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
        "IN FLIGHT",
        "WARNINGS",
    ]
    assert [(r.split()[0], r.split()[1]) for r in rows] == [("zone-1", "Online"), ("zone-2", "Online")]
    for row in rows:
        cells = row.split()
        assert int(cells[4]) > 0  # TOTAL UPDATES: at least the first response per kind
        assert cells[5] == "0"  # TOTAL ERRORS

    code, out, err = await ctl(g, "inspect", "zones", "-o", "json")
    assert code == 0, err
    body = json.loads(out)
    assert [i["name"] for i in body["items"]] == ["zone-1", "zone-2"]
    assert {i["status"] for i in body["items"]} == {"online"}
    sub = body["items"][0]["zoneInsight"]["subscriptions"][-1]
    assert {"id", "globalInstanceId", "connectTime", "status", "direction"} <= sub.keys()

    code, out, err = await ctl(g, "inspect", "zone", "zone-1")
    assert code == 0, err
    assert "Status:        Online" in out
    assert "global-to-zone" in out
    assert "MeshGateway" in out

    code, _out, err = await ctl(g, "inspect", "zone", "nope")
    assert code == 1
    assert err == 'Error: there is no Zone with name "nope"\n'


async def test_killed_zone_turns_offline_and_back_online(procs: ProcessGroup) -> None:
    g, zones = await start(procs, *FAST_HEALTH)
    z1 = zones[0]
    z1.stop(signal.SIGKILL)
    await eventually(lambda: status_is(g, "zone-1", "offline"), what="zone-1 offline after SIGKILL")
    assert await status_is(g, "zone-2", "online")
    insight = await get(g, "/global-insight")
    assert insight is not None
    assert insight["zones"]["controlPlanes"] == {"online": 1, "total": 2}

    await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: status_is(g, "zone-1", "online"), what="zone-1 online after restart")
    subs = (await overview(g, "zone-1"))["zoneInsight"]["subscriptions"]
    assert any("disconnectTime" in s for s in subs)  # the killed stream is kept, closed
    assert "disconnectTime" not in subs[-1]


async def test_kds_trace_reports_a_nacked_resource_as_rejected(procs: ProcessGroup) -> None:
    """The global's store gets an invalid gateway directly (a global with looser rules); zones that validate
    (they cannot verify the global's certificate) NACK it."""
    kds_port = free_port()
    await store_an_invalid_gateway(procs, kds_port, gateway("good"))
    # A zone trusts what a global it authenticated accepted (issue 16); one that cannot verify the global's
    # certificate validates again, and NACKs the bad gateway by name.
    g, _zones = await start(procs, kds_port=kds_port, zone_args=("--kds-tls-skip-verify",))

    async def verdicts(name: str) -> dict[str, str]:
        doc = await get(g, f"/kds/trace?kind=MeshGateway&name={name}")
        assert doc is not None
        return {z["zone"]: z["verdict"] for z in doc["zones"]}

    async def settled() -> bool:
        return await verdicts("bad") == {"zone-1": "rejected", "zone-2": "rejected"} and await verdicts("good") == {
            "zone-1": "in sync",
            "zone-2": "in sync",
        }

    await eventually(settled, what="bad rejected and good in sync in both zones")

    code, out, err = await ctl(g, "kds", "trace", "meshgateways", "bad")
    assert code == 0, err
    reason = "conf.listeners[0].port: port must be in the range [1, 65535]"
    assert f"zone-1: rejected — {reason}" in out.splitlines()
    assert f"zone-2: rejected — {reason}" in out.splitlines()
    assert out.splitlines()[1].startswith("Global version: ")

    code, out, err = await ctl(g, "kds", "trace", "meshgateway", "good", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert {z["zoneVersion"] for z in doc["zones"]} == {doc["globalVersion"]}

    overview_doc = await overview(g, "zone-1")
    [down] = [
        s
        for s in overview_doc["zoneInsight"]["subscriptions"]
        if s["direction"] == "global-to-zone" and "disconnectTime" not in s
    ]
    nack = down["status"]["stat"]["MeshGateway"]["lastNack"]
    assert reason in nack["resources"][f"{in_zone('bad')}.default"]

    code, _out, err = await ctl(g, "kds", "trace", "meshgateway", "never-existed")
    assert code == 1
    assert "is unknown to the global and to every connected zone" in err


async def test_kds_watch_shows_an_apply_as_it_happens(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: status_is(g, "zone-1", "online"), what="zone-1 online")
    async with await anyio.open_process([MESHGATECTL, "--api", g.url(), "kds", "watch", "--kind", "meshgateways"]) as p:
        try:
            await _read_until(p, "stderr", lambda line: line.startswith("Watching KDS events"))
            assert (await put(g, gateway("edge"))).status_code == 201
            response = await _read_until(
                p, "stdout", lambda line: " response " in line and f"+{in_zone('edge')}.default@" in line
            )
            assert "zone-1  global-to-zone" in response
            nonce = response.split("nonce=")[1].split()[0]
            ack = await _read_until(p, "stdout", lambda line: " ack " in line and f"nonce={nonce} " in line)
            assert "MeshGateway" in ack
            assert ack.rstrip().endswith("ms")  # the ACK's latency
        finally:
            p.send_signal(signal.SIGINT)  # Ctrl-C
            with anyio.fail_after(15):
                code = await p.wait()
    assert code == 0


async def _read_until(p: Process, which: str, match: Any) -> str:
    stream = p.stdout if which == "stdout" else p.stderr
    assert stream is not None
    with anyio.fail_after(15):
        buffered = ""
        async for chunk in TextReceiveStream(stream):
            buffered += chunk
            while "\n" in buffered:
                line, buffered = buffered.split("\n", 1)
                if match(line):
                    return line
    raise AssertionError(f"meshgatectl kds watch ended before the expected {which} line")


async def test_disable_cuts_the_stream_and_delete_needs_an_offline_zone(procs: ProcessGroup) -> None:
    g, zones = await start(procs, *FAST_HEALTH)
    async with httpx.AsyncClient(base_url=g.url()) as c:
        refused = await c.delete("/zones/zone-2")
        assert refused.status_code == 400
        assert refused.json()["title"] == "Could not delete a resource"
        assert refused.json()["invalid_parameters"] == [
            {"field": "zone", "reason": "unable to delete Zone, Zone CP is still connected, please shut it down first"}
        ]

        r = await c.put("/zones/zone-1", json={"type": "Zone", "name": "zone-1", "enabled": False})
        assert r.status_code == 200

    async def cut_off() -> bool:
        doc = await overview(g, "zone-1")
        subs = doc["zoneInsight"]["subscriptions"]
        return doc["status"] == "disabled" and all("disconnectTime" in s for s in subs)

    await eventually(cut_off, what="zone-1's streams cut after disable")
    zone_side = await get(zones[0], "/status/kds")
    assert zone_side is not None
    assert "disabled" in zone_side["lastError"] or not zone_side["connected"]
    code, out, _err = await ctl(g, "inspect", "zones")
    assert code == 0
    assert out.splitlines()[1].split()[:2] == ["zone-1", "Disabled"]

    # zone-2 owns a Dataplane on the global; deleting the zone must not leave it behind.
    await put(g, MESH)
    await eventually(lambda: get(zones[1], "/meshes/default"), what="mesh in zone-2")
    dp = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "dp-1",
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]},
    }
    async with httpx.AsyncClient(base_url=zones[1].url()) as c:
        assert (await c.put("/meshes/default/dataplanes/dp-1", json=dp)).status_code == 201

    async def dataplanes_on_global() -> int:
        listed = await get(g, "/meshes/default/dataplanes")
        assert listed is not None
        return int(listed["total"])

    await eventually(dataplanes_on_global, what="zone-2's dataplane on the global")

    zones[1].stop()
    await eventually(lambda: status_is(g, "zone-2", "offline"), what="zone-2 offline after stop")
    async with httpx.AsyncClient(base_url=g.url()) as c:
        assert (await c.delete("/zones/zone-2")).status_code == 200
        assert (await c.get("/zones/zone-2")).status_code == 404

    async def no_dataplanes() -> bool:
        return await dataplanes_on_global() == 0

    await eventually(no_dataplanes, what="the deleted zone's dataplane removed")
    listed = await get(g, "/zones/_overview")
    assert listed is not None
    assert [i["name"] for i in listed["items"]] == ["zone-1"]
