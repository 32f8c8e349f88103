"""Two global replicas on one real Redis, zones given both addresses: failover, Redis restart, races.

The failover test prints its timeline (kill, reconnect, resumed without a full resync); run with -s to see it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import grpc
import httpx
import pytest

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.auth.jwt import unverified_payload
from tests.support.kds_peer import kds_channel, kds_metadata
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, issue_zone_token
from tests.support.redis_server import RedisServer, redis_server
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}


def route(name: str, prefix: str) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": prefix}}],
                        "backends": [{"destination": {"kuma.io/service": "backend"}}],
                    }
                ]
            }
        },
    }


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    # Durable, so a restart keeps the data (as a production Redis with persistence would).
    with redis_server(tmp_path / "redis", durable=True) as server:
        yield server


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=10) as c:
        return await c.put(path, json=doc)


async def get(cp: CPProcess, path: str) -> Any:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=10) as c:
        r = await c.get(path)
    return r.json() if r.status_code == 200 else None


async def prefix_in(z: CPProcess, name: str) -> str | None:
    stored = in_zone(name) if z.module == "zone_cp" else name  # zones hold the global's routes hash-suffixed
    doc = await get(z, f"/meshes/default/meshgatewayroutes/{stored}")
    return None if doc is None else str(doc["conf"]["http"]["rules"][0]["matches"][0]["path"]["value"])


async def start(procs: ProcessGroup, redis: RedisServer) -> tuple[list[CPProcess], list[CPProcess]]:
    store = ("--store", redis.url, "--zone-health-interval", "0.5")
    a = await procs.global_cp("global-a", *store)
    b = await procs.global_cp("global-b", *store)
    # Both replicas serve KDS with certificates from the one CA they share in Redis: either's CA file will do.
    addr = {g.name: f"grpcs://127.0.0.1:{g.ports['kds']}" for g in (a, b)}
    # zone-1 prefers replica A, zone-2 prefers B; each knows both.
    z1 = await procs.zone_cp("zone-1", a.ports["kds"], "--global-address", addr["global-b"])
    z2 = await procs.zone_cp("zone-2", b.ports["kds"], "--global-address", addr["global-a"])
    return [a, b], [z1, z2]


def instance_of(overview: dict[str, Any]) -> set[str]:
    return {
        s["globalInstanceId"]
        for s in overview["zoneInsight"]["subscriptions"]
        if "disconnectTime" not in s and s["direction"] == "global-to-zone"
    }


async def test_change_on_one_replica_reaches_zones_on_both(procs: ProcessGroup, redis: RedisServer) -> None:
    (a, b), zones = await start(procs, redis)
    assert (await put(a, "/meshes/default", MESH)).status_code == 201
    assert (await put(b, "/meshes/default/meshgatewayroutes/r1", route("r1", "/one"))).status_code == 201
    for z in zones:
        await eventually(lambda z=z: prefix_in(z, "r1"), what=f"r1 in {z.name}")

    # Any replica answers for every zone, and says which replica holds each zone's stream.
    async def both_online_everywhere() -> bool:
        for g in (a, b):
            listed = await get(g, "/zones/_overview")
            if listed is None or {i["name"]: i["status"] for i in listed["items"]} != {
                "zone-1": "online",
                "zone-2": "online",
            }:
                return False
        return True

    await eventually(both_online_everywhere, what="both zones online on both replicas")
    ids = {g.name: (await get(g, "/"))["instanceId"] for g in (a, b)}

    # Exactly one replica holds the lease for singleton work.
    async def one_leader() -> bool:
        return sorted([(await get(g, "/global-insight"))["leader"] for g in (a, b)]) == [False, True]

    await eventually(one_leader, what="exactly one leader")
    seen_from_a = await get(a, "/zones/zone-2/_overview")
    assert instance_of(seen_from_a) == {ids["global-b"]}
    assert instance_of(await get(b, "/zones/zone-1/_overview")) == {ids["global-a"]}

    # `kds trace` on either replica answers for every zone, asking the replica that streams to it.
    async def traced_in_sync(g: CPProcess) -> bool:
        doc = await get(g, "/kds/trace?kind=meshgatewayroute&name=r1&mesh=default")
        return doc is not None and {z["zone"]: z["verdict"] for z in doc["zones"]} == {
            "zone-1": "in sync",
            "zone-2": "in sync",
        }

    for g in (a, b):
        await eventually(lambda g=g: traced_in_sync(g), what=f"trace from {g.name}")
    doc = await get(a, "/kds/trace?kind=meshgatewayroute&name=r1&mesh=default")
    remote_row = next(z for z in doc["zones"] if z["zone"] == "zone-2")
    assert remote_row["replica"] == ids["global-b"]

    # So does `kds trace name`: zone-2 streams to B, which answers for it (with zone-2's VIP) when A is asked.
    z2 = zones[1]
    dp = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "echo-1",
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "echo"}}]},
    }
    assert (await put(z2, "/meshes/default/dataplanes/echo-1", dp)).status_code == 201

    async def name_traced() -> bool:
        doc = await get(a, "/kds/trace/name?name=echo.mesh")
        if doc is None:
            return False
        rows = {z["zone"]: z for z in doc["zones"]}
        return (
            rows["zone-1"]["verdict"] == "in sync"
            and rows["zone-2"]["verdict"] == "origin"
            and all("vip" in row for row in rows.values())
        )

    await eventually(name_traced, what="echo.mesh traced from A for both zones, with their VIPs")
    doc = await get(a, "/kds/trace/name?name=echo.mesh")
    assert next(z for z in doc["zones"] if z["zone"] == "zone-2")["replica"] == ids["global-b"]


async def test_killed_replica_zones_fail_over_and_resume_without_full_resync(
    procs: ProcessGroup, redis: RedisServer
) -> None:
    (a, b), (z1, z2) = await start(procs, redis)
    await put(a, "/meshes/default", MESH)
    for i in range(20):
        await put(a, f"/meshes/default/meshgatewayroutes/r{i}", route(f"r{i}", f"/p{i}"))

    async def all_routes(z: CPProcess) -> bool:
        listed = await get(z, "/meshes/default/meshgatewayroutes")
        return listed is not None and listed["total"] == 20

    for z in (z1, z2):
        await eventually(lambda z=z: all_routes(z), what=f"20 routes in {z.name}")
    before = await get(z1, "/meshes/default/meshgatewayroutes")
    connects_before = (await get(z1, "/status/kds"))["connects"]

    t0 = time.monotonic()
    a.stop(signal.SIGKILL)  # kill -9 the replica zone-1 is streaming from
    t_kill = time.monotonic() - t0

    async def moved() -> bool:
        st = await get(z1, "/status/kds")
        return bool(st and st["connected"] and st["synced"] and st["connects"] > connects_before)

    await eventually(moved, what="zone-1 reconnected to replica B")
    t_reconnect = time.monotonic() - t0
    status = await get(z1, "/status/kds")
    assert status["globalAddress"] == f"127.0.0.1:{b.ports['kds']}"

    # Resumed from its versions: replica B's new stream to zone-1 carried no resources at all.
    async def fresh_stream() -> dict[str, Any] | None:
        doc = await get(b, "/zones/zone-1/_overview")
        subs = [
            s
            for s in doc["zoneInsight"]["subscriptions"]
            if "disconnectTime" not in s and s["direction"] == "global-to-zone"
        ]
        return subs[0] if subs else None

    await eventually(fresh_stream, what="B's subscription for zone-1")
    sub = await fresh_stream()
    assert sub is not None
    sent = {kind: stat["resourcesSent"] for kind, stat in sub["status"]["stat"].items()}
    # Nothing re-sent, of any kind the stream carries (Kuma's policies included).
    assert {"Mesh", "Secret", "MeshGateway", "MeshGatewayRoute", "Dataplane", "Timeout"} <= sent.keys()
    assert sent == dict.fromkeys(sent, 0)

    # Nothing lost or duplicated, and the zone's copies were not even rewritten.
    assert await get(z1, "/meshes/default/meshgatewayroutes") == before
    # And it keeps receiving changes through B.
    await put(b, "/meshes/default/meshgatewayroutes/r0", route("r0", "/after-failover"))
    await eventually(lambda: _eq(prefix_in(z1, "r0"), "/after-failover"), what="change after failover")
    print(
        f"\nfailover timeline: kill -9 replica A at +{t_kill * 1000:.0f} ms; zone-1 reconnected to B and synced at"
        f" +{t_reconnect * 1000:.0f} ms; resources re-sent on the new stream: {sum(sent.values())}"
        f" (of {before['total']} routes + mesh held)"
    )


async def _eq(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_redis_restart_globals_recover_and_later_applies_reach_every_zone(
    procs: ProcessGroup, redis: RedisServer
) -> None:
    (a, b), zones = await start(procs, redis)
    await put(a, "/meshes/default", MESH)
    await put(a, "/meshes/default/meshgatewayroutes/r1", route("r1", "/before"))
    for z in zones:
        await eventually(lambda z=z: prefix_in(z, "r1"), what=f"r1 in {z.name}")

    redis.stop()
    r = await put(a, "/meshes/default/meshgatewayroutes/r2", route("r2", "/down"))
    assert r.status_code == 503  # a clear error, not a hang or a 500
    assert "redis" in r.text.lower()
    for z in zones:  # zones keep their state
        assert await prefix_in(z, "r1") == "/before"
    redis.start()

    async def writable(g: CPProcess) -> bool:
        r = await put(g, "/meshes/default/meshgatewayroutes/r3", route("r3", f"/after-{g.name}"))
        return r.status_code in (200, 201)

    for g in (a, b):
        await eventually(lambda g=g: writable(g), what=f"{g.name} writes again")
    for z in zones:
        await eventually(lambda z=z: _eq(prefix_in(z, "r3"), "/after-global-b"), what=f"r3 in {z.name}")
        assert await prefix_in(z, "r1") == "/before"
    assert all(p.proc.poll() is None for p in (a, b))  # neither global crashed


async def test_concurrent_applies_on_both_replicas_converge_to_one_winner(
    procs: ProcessGroup, redis: RedisServer
) -> None:
    (a, b), zones = await start(procs, redis)
    await put(a, "/meshes/default", MESH)
    await put(a, "/meshes/default/meshgatewayroutes/hot", route("hot", "/start"))
    for round_ in range(10):
        results: dict[str, int] = {}

        async def write(g: CPProcess, value: str, results: dict[str, int] = results) -> None:
            r = await put(g, "/meshes/default/meshgatewayroutes/hot", route("hot", value))
            results[value] = r.status_code

        async with anyio.create_task_group() as tg:
            tg.start_soon(write, a, f"/a{round_}")
            tg.start_soon(write, b, f"/b{round_}")
        assert set(results.values()) <= {200, 409}
        winner = await prefix_in(a, "hot")
        assert winner in {f"/a{round_}", f"/b{round_}"}
        assert await prefix_in(b, "hot") == winner  # both replicas read the same single winner
        for z in zones:
            await eventually(lambda z=z, w=winner: _eq(prefix_in(z, "hot"), w), what=f"{z.name} converges")


async def test_a_second_instance_of_a_zone_is_refused_on_the_other_replica_too(
    procs: ProcessGroup, redis: RedisServer
) -> None:
    """Replicas publish which zone instance holds each zone (global_cp/replicas.py): a client claiming
    zone-1 on replica B, while zone-1 streams from replica A, is refused with ALREADY_EXISTS by B."""
    store = ("--store", redis.url)
    a = await procs.global_cp("global-a", *store)
    b = await procs.global_cp("global-b", *store)
    await put(a, "/meshes/default", MESH)
    z1 = await procs.zone_cp("zone-1", a.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="the mesh in zone-1")

    async def b_sees_zone_1() -> bool:
        doc = await get(b, "/zones/zone-1/_overview")
        return doc is not None and any("disconnectTime" not in s for s in doc["zoneInsight"]["subscriptions"])

    await eventually(b_sees_zone_1, what="replica B knows replica A holds zone-1")
    async with kds_channel(b) as channel:
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(
            metadata=await kds_metadata(b, "zone-1", instance="impostor")
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "on global replica" in (refused.value.details() or "")
    assert (await get(z1, "/status/kds"))["connects"] == 1


async def test_a_token_revoked_on_one_replica_closes_the_stream_on_the_other(
    procs: ProcessGroup, redis: RedisServer
) -> None:
    """The revocation list is in the shared store: revoked through replica A, the token of zone-1, which
    streams from replica B, stops passing there too. B's token cache refresh (every second) sees the list
    change and re-checks its open streams, long before the 60 s periodic recheck."""
    store = ("--store", redis.url)
    a = await procs.global_cp("global-a", *store)
    b = await procs.global_cp("global-b", *store)
    await put(a, "/meshes/default", MESH)
    token = await issue_zone_token(a, "zone-1")
    token_file = procs.workdir / "zone-1.token"
    token_file.write_text(token)
    z1 = await procs.zone_cp("zone-1", b.ports["kds"], "--cp-token-path", str(token_file))
    await eventually(lambda: get(z1, "/meshes/default"), what="the mesh in zone-1, through replica B")

    async with httpx.AsyncClient(base_url=a.url(), timeout=10) as c:
        r = await c.post("/tokens/revocations", json={"type": "zone", "id": unverified_payload(token)["jti"]})
    assert r.status_code == 200, r.text

    async def closed_as_revoked() -> bool:
        status = await get(z1, "/status/kds")
        return status is not None and not status["connected"] and "revoked" in (status["lastError"] or "")

    await eventually(closed_as_revoked, timeout=20, what="replica B closed zone-1's stream as revoked")
