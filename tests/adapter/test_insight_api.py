"""The global's insight, watch, trace and zone-lifecycle endpoints over real HTTP, in one process.

The StreamRegistry is filled by hand (the e2e tests fill it with real zones); the HTTP app, the store, the
lifecycle task and the watch endpoint are the real ones, wired as global_cp/app.py wires them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from structlog.testing import capture_logs

from global_cp.insights import HealthPolicy, insight_routes
from global_cp.lifecycle import STILL_CONNECTED, ZoneLifecycle
from global_cp.trace import trace_routes
from global_cp.watch import KDSWatch
from meshgate.kds.ownership import to_zone
from meshgate.observability.metrics import KDSMetrics
from meshgate.resources import codec, registry
from meshgate.rest.app import create_api_app
from meshgate.rest.testing import serving
from meshgate.store.memory import MemoryStore
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import StreamRegistry, StreamSession
from tests.rest_support import HTTP_TIMEOUT, dataplane, mesh, zone
from tests.support.wait import eventually


@dataclass
class Global:
    http: httpx.AsyncClient
    store: MemoryStore
    streams: StreamRegistry
    tg: anyio.abc.TaskGroup


@asynccontextmanager
async def global_api() -> AsyncIterator[Global]:
    store = MemoryStore()
    streams = StreamRegistry(KDSMetrics(), instance_id="global-test")
    source = SnapshotSource(
        store,
        registry.kinds_sent_to_zone(),
        include=lambda r: True,
        mapper=lambda r: to_zone(r, hash_suffix=False),
    )
    policy = HealthPolicy(interval=10.0)
    lifecycle = ZoneLifecycle(store, streams)
    watch = KDSWatch(streams, heartbeat=0.05)
    app = create_api_app(
        store,
        role="global",
        before_write=lifecycle.before_write,
        extra_routes=[
            *insight_routes(store, streams, policy),
            *watch.routes(),
            *trace_routes(store, streams, source, policy),
        ],
    )
    with capture_logs():
        async with anyio.create_task_group() as tg:
            await tg.start(source.run)
            await tg.start(lifecycle.run, 0.05)
            await tg.start(watch.run)
            async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=HTTP_TIMEOUT) as http:
                yield Global(http, store, streams, tg)
            tg.cancel_scope.cancel()


async def held_stream(g: Global, name: str) -> StreamSession:
    """An open stream whose cancel scope is a real one, closed in the registry when cancelled (as the
    KDS adapter does)."""
    session = g.streams.open(name, "global-to-zone", "peer")

    async def hold(*, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with anyio.CancelScope() as scope:
            session.cancel = scope
            task_status.started()
            await anyio.sleep_forever()
        g.streams.close(session)

    await g.tg.start(hold)
    return session


async def test_overview_routes_win_over_resource_routes_and_are_documented() -> None:
    async with global_api() as g:
        await g.http.put("/meshes/default", json=mesh())
        await g.http.put("/zones/zone-1", json=zone("zone-1"))
        await held_stream(g, "zone-1")
        dp = codec.load(dataplane("dp-1", **{"kuma.io/zone": "zone-1", "kuma.io/origin": "zone"}))
        await g.store.create(dp)

        listed = (await g.http.get("/zones/_overview")).json()
        assert [(i["name"], i["status"]) for i in listed["items"]] == [("zone-1", "online")]
        assert (await g.http.get("/zones/zone-1/_overview")).json()["type"] == "ZoneOverview"
        assert (await g.http.get("/zones/nope/_overview")).status_code == 404

        dps = (await g.http.get("/meshes/default/dataplanes/_overview")).json()
        assert [(i["name"], i["zoneStatus"]) for i in dps["items"]] == [("dp-1", "online")]
        assert (await g.http.get("/meshes/default/dataplanes/_overview?zone=zone-2")).json()["total"] == 0
        assert (await g.http.get("/meshes/nope/dataplanes/_overview")).status_code == 404

        insight = (await g.http.get("/global-insight")).json()
        assert insight["resources"]["Dataplane"] == {"total": 1}
        assert insight["zones"]["controlPlanes"] == {"online": 1, "total": 1}

        paths = (await g.http.get("/openapi.json")).json()["paths"]
        for path in ("/zones/_overview", "/zones/{name}/_overview", "/global-insight", "/kds/watch", "/kds/trace"):
            assert path in paths
        assert "/meshes/{mesh}/dataplanes/_overview" in paths


async def test_connected_zone_cannot_be_deleted_and_disabling_cuts_its_streams() -> None:
    async with global_api() as g:
        await g.http.put("/zones/zone-1", json=zone("zone-1"))
        session = await held_stream(g, "zone-1")
        refused = await g.http.delete("/zones/zone-1")
        assert refused.status_code == 400
        body = refused.json()
        assert body["title"] == "Could not delete a resource"
        assert body["detail"] == "Resource is not valid"
        assert body["invalid_parameters"] == [{"field": "zone", "reason": STILL_CONNECTED}]

        assert (await g.http.put("/zones/zone-1", json=zone("zone-1", enabled=False))).status_code == 200
        await eventually(lambda: session.stream_id not in g.streams.active, what="stream cut")
        assert session.disconnected_at is not None
        overview = (await g.http.get("/zones/zone-1/_overview")).json()
        assert overview["status"] == "disabled"

        assert (await g.http.delete("/zones/zone-1")).status_code == 200
        # A deleted zone leaves nothing behind in the insights.
        await eventually(lambda: "zone-1" not in g.streams.history, what="zone-1 forgotten")
        assert (await g.http.get("/zones/_overview")).json()["items"] == []


async def test_watch_replays_since_then_streams_live_with_heartbeats() -> None:
    async with global_api() as g:
        bus = g.streams.events
        first = bus.publish("zone-1", "s1", "global-to-zone", "response", kind="Mesh", nonce="1")
        bus.publish("zone-2", "s2", "global-to-zone", "response", kind="Mesh", nonce="1")
        bus.publish("zone-1", "s1", "global-to-zone", "ack", kind="Mesh", nonce="1", latency_ms=1.5)
        params = {"zone": "zone-1", "since": str(first.seq - 1)}
        async with g.http.stream("GET", "/kds/watch", params=params) as response:
            assert response.headers["Content-Type"] == "application/x-ndjson"
            lines = response.aiter_lines()
            replayed = [json.loads(await anext(lines)) for _ in range(2)]
            assert [(e["zone"], e["event"]) for e in replayed] == [("zone-1", "response"), ("zone-1", "ack")]
            assert replayed[1]["latencyMs"] == 1.5
            bus.publish("zone-2", "s2", "global-to-zone", "ack", kind="Mesh", nonce="1")  # filtered out
            bus.publish("zone-1", "s1", "global-to-zone", "nack", kind="MeshGateway", nonce="2", error="bad")
            seen: list[str] = []
            while "nack" not in seen or "heartbeat" not in seen:
                seen.append(json.loads(await anext(lines))["event"])
            assert "ack" not in seen
        await eventually(lambda: not bus.watching, what="watcher gone after the client left")

        async with g.http.stream("GET", "/kds/watch", params={"kind": "meshgateways"}) as response:
            lines = response.aiter_lines()
            bus.publish("zone-1", "s1", "global-to-zone", "response", kind="Mesh", nonce="3")
            bus.publish("zone-1", "s1", "global-to-zone", "response", kind="MeshGateway", nonce="4")
            events: list[dict[str, Any]] = []
            while not events or events[-1]["event"] == "heartbeat":
                events.append(json.loads(await anext(lines)))
            assert (events[-1]["kind"], events[-1]["nonce"]) == ("MeshGateway", "4")

        assert (await g.http.get("/kds/watch", params={"kind": "nope"})).status_code == 400
        assert (await g.http.get("/kds/watch", params={"since": "x"})).status_code == 400


async def test_trace_of_unknown_resource_or_kind() -> None:
    async with global_api() as g:
        await g.http.put("/meshes/default", json=mesh())
        await g.http.put("/zones/zone-1", json=zone("zone-1"))
        r = await g.http.get("/kds/trace", params={"kind": "meshgateways", "name": "nope"})
        assert r.status_code == 404
        assert r.json()["detail"] == (
            'MeshGateway "nope" in mesh "default" is unknown to the global and to every connected zone'
        )
        assert (await g.http.get("/kds/trace", params={"kind": "nope", "name": "x"})).status_code == 400
        assert (await g.http.get("/kds/trace", params={"kind": "zones", "name": "zone-1"})).status_code == 400

        async def offline_mesh() -> bool:
            r = await g.http.get("/kds/trace", params={"kind": "Mesh", "name": "default"})
            return r.status_code == 200 and r.json()["zones"] == [
                {"zone": "zone-1", "status": "offline", "verdict": "offline", "reason": r.json()["zones"][0]["reason"]}
            ]

        await eventually(offline_mesh, what="Mesh default traced, zone-1 offline")
        doc = (await g.http.get("/kds/trace", params={"kind": "Mesh", "name": "default"})).json()
        assert doc["wireName"] == "default."
        assert doc["mesh"] == ""
        assert doc["globalVersion"]
