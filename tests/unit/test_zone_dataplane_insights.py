"""The zone's DataplaneInsight writer against an in-memory store: written on connect and disconnect, otherwise
at most once per flush interval, never without its Dataplane, removed with it, and stale subscriptions of a
previous run closed on start."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
from google.protobuf import json_format

from meshgate.api.mesh.v1alpha1.dataplane_insight_pb2 import DataplaneInsight
from meshgate.resources import codec
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.memory import MemoryStore
from meshgate.store.protocol import NotFoundError
from meshgate.testing import factory
from meshgate.testing.wait import eventually
from meshgate.xds.ads import AdsStream, ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from zone_cp.dataplane_insights import DataplaneInsightWriter

WEB = ProxyId("default", "web-1")
KEY = ResourceKey("DataplaneInsight", "default", "web-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _store() -> MemoryStore:
    store = MemoryStore()
    await store.create(codec.load(factory.mesh()))
    await store.create(codec.load(factory.gateway_dataplane("web-1", "edge")))
    return store


async def _insight(store: MemoryStore) -> DataplaneInsight:
    spec = (await store.get(KEY)).spec
    assert isinstance(spec, DataplaneInsight)
    return spec


async def test_writes_on_connect_then_at_most_once_per_interval_then_on_disconnect() -> None:
    store, clock, registry = await _store(), Clock(), ProxyRegistry()
    writer = DataplaneInsightWriter(store, registry, "cp-1", flush_interval=10.0, clock=clock)
    stream = AdsStream(WEB)
    rec = registry.open(stream, "ipv4:127.0.0.1:1", clock.now)
    await writer.flush({WEB})
    (sub,) = (await _insight(store)).subscriptions
    assert (sub.id, sub.control_plane_instance_id) == (rec.uid, "cp-1")
    assert not sub.HasField("disconnect_time")
    stored = await store.get(KEY)
    assert stored.meta.labels == {"kuma.io/origin": "zone"}
    assert writer.writes == 1

    for step in range(5):  # the stream keeps changing; the writer writes once per 10 s
        clock.now += 3
        stream.last_update = clock.now
        await writer.flush()
        assert writer.writes == 1 + (step >= 3), step  # written again at +12 s, not at +3, +6 or +9
    clock.now += 0.5
    registry.close(rec, clock.now)  # a disconnect is written at once
    await writer.flush({WEB})
    assert writer.writes == 3
    (sub,) = (await _insight(store)).subscriptions
    assert sub.disconnect_time.seconds == int(clock.now)
    await writer.flush({WEB})  # nothing new
    assert writer.writes == 3


async def test_nothing_is_written_without_the_dataplane_and_an_insight_goes_with_it() -> None:
    store, clock, registry = await _store(), Clock(), ProxyRegistry()
    writer = DataplaneInsightWriter(store, registry, "cp-1", clock=clock)
    ghost = ProxyId("default", "ghost")
    registry.open(AdsStream(ghost), "ipv4:127.0.0.1:1", clock.now)
    registry.open(AdsStream(ProxyId("", "ingress-1")), "ipv4:127.0.0.1:2", clock.now)  # a zone proxy: none
    registry.open(AdsStream(WEB), "ipv4:127.0.0.1:3", clock.now)
    await writer.flush({ghost, WEB})
    assert [r.meta.name for r in (await store.list("DataplaneInsight")).items] == ["web-1"]

    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        await store.delete(ResourceKey("Dataplane", "default", "web-1"))

        async def gone() -> bool:
            try:
                await store.get(KEY)
            except NotFoundError:
                return True
            return False

        await eventually(gone, what="the insight removed with its Dataplane")
        tg.cancel_scope.cancel()


async def test_start_closes_subscriptions_a_previous_run_left_open() -> None:
    store, clock = await _store(), Clock()
    left_open = json_format.ParseDict(
        {
            "subscriptions": [
                {"id": "old", "controlPlaneInstanceId": "cp-0", "connectTime": "2026-01-01T00:00:00Z", "status": {}}
            ]
        },
        DataplaneInsight(),
    )
    await store.create(Resource("DataplaneInsight", Meta(name="web-1", mesh="default"), left_open))
    writer = DataplaneInsightWriter(store, ProxyRegistry(), "cp-1", clock=clock)
    async with anyio.create_task_group() as tg:
        await tg.start(writer.run)
        tg.cancel_scope.cancel()
    (sub,) = (await _insight(store)).subscriptions
    assert sub.disconnect_time.ToDatetime(UTC) == datetime.fromtimestamp(clock.now, UTC)
