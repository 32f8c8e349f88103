"""KDS over real grpc.aio on loopback: a global-side server and a zone-side client, in one process.

The kind is a made-up one (spec = Struct) so these tests pin the transport alone; the end-to-end tests
run the real kinds through real processes.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import anyio
import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.kds.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_MSG_SIZE
from meshgate.kds.ownership import to_zone
from meshgate.kds.sender import Sender
from meshgate.observability.metrics import KDSMetrics
from meshgate.resources.model import LABEL_ORIGIN, ResourceKey
from meshgate.store import MemoryStore, NotFoundError
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import StreamRegistry, StreamSession
from meshgate.transport.grpc_server import serve_grpc
from meshgate.transport.kds_client import Backoff, GlobalToZoneClient
from meshgate.transport.kds_server import GlobalKDSService, KDSSyncService
from tests.support.thing import THING, no_bad, thing
from tests.support.wait import eventually


@dataclass
class Global:
    store: MemoryStore
    registry: StreamRegistry
    port: int
    connected: list[str]


def _register(service: KDSSyncService, health: GlobalKDSService) -> list:  # type: ignore[type-arg]
    return [
        lambda s: kds_pb2_grpc.add_KDSSyncServiceServicer_to_server(service, s),
        lambda s: kds_pb2_grpc.add_GlobalKDSServiceServicer_to_server(health, s),
    ]


async def _start_global(
    tg: anyio.abc.TaskGroup, store: MemoryStore, port: int = 0, max_bytes: int = DEFAULT_MAX_BYTES
) -> Global:
    source = SnapshotSource(store, [THING], include=lambda r: True, mapper=lambda r: to_zone(r, hash_suffix=False))
    registry = StreamRegistry(KDSMetrics())
    connected: list[str] = []

    async def on_connect(zone: str) -> str | None:
        connected.append(zone)
        return None

    service = KDSSyncService(source, registry, on_connect=on_connect, max_bytes=max_bytes)
    await tg.start(source.run)
    names = ["kuma.mesh.v1alpha1.KDSSyncService", "kuma.mesh.v1alpha1.GlobalKDSService"]
    bound = await tg.start(serve_grpc, _register(service, GlobalKDSService(registry, 0.2)), names, "127.0.0.1", port)
    return Global(store, registry, bound, connected)


def _sender(session: StreamSession) -> Sender:
    assert session.sender is not None
    return session.sender


def _client(zone: str, port: int, store: MemoryStore) -> GlobalToZoneClient:
    return GlobalToZoneClient(
        zone=zone,
        addresses=[f"grpc://127.0.0.1:{port}"],
        store=store,
        kinds=[THING],
        validate=no_bad,
        backoff=Backoff(initial=0.02, maximum=0.2),
    )


async def _value(store: MemoryStore, name: str) -> str | None:
    try:
        r = await store.get(ResourceKey("Thing", "default", name))
    except NotFoundError:
        return None
    assert isinstance(r.spec, struct_pb2.Struct)
    return str(r.spec["value"])


async def test_create_update_delete_propagate_to_two_zones() -> None:
    async with anyio.create_task_group() as tg:
        g = await _start_global(tg, MemoryStore())
        zones = {z: MemoryStore() for z in ("zone-1", "zone-2")}
        for z, store in zones.items():
            tg.start_soon(_client(z, g.port, store).run)

        created = await g.store.create(thing("a", "one"))
        for store in zones.values():
            await eventually(lambda s=store: _value(s, "a"), what="create in zone")
            r = await store.get(created.key)
            assert r.meta.labels[LABEL_ORIGIN] == "global"
        await g.store.update(created.with_meta().__class__(created.kind, created.meta, thing("a", "two").spec))
        for store in zones.values():
            await eventually(lambda s=store: _eq(_value(s, "a"), "two"), what="update in zone")
        await g.store.delete(created.key)
        for store in zones.values():
            await eventually(lambda s=store: _eq(_value(s, "a"), None), what="delete in zone")
        assert sorted(set(g.connected)) == ["zone-1", "zone-2"]
        kinds = [_sender(s).kinds["Thing"].stats for s in g.registry.active.values()]
        assert all(k.acks == k.responses_sent for k in kinds)
        assert g.registry.metrics.requests_received[("Thing", "ACK")] >= 6
        assert set(g.registry.last_health_check) == {"zone-1", "zone-2"}
        tg.cancel_scope.cancel()


async def _eq(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_bad_resource_is_nacked_by_name_while_others_apply() -> None:
    async with anyio.create_task_group() as tg:
        g = await _start_global(tg, MemoryStore())
        zone_store = MemoryStore()
        tg.start_soon(_client("zone-1", g.port, zone_store).run)
        await g.store.apply_sync("Thing", [thing("good"), thing("evil", "bad")], [])

        def nacked() -> bool:
            return any(_sender(s).kinds["Thing"].stats.last_nack is not None for s in g.registry.active.values())

        await eventually(nacked, what="a NACK")
        await eventually(lambda: _value(zone_store, "good"), what="good applied")
        assert await _value(zone_store, "evil") is None
        (session,) = g.registry.active.values()
        nack = _sender(session).kinds["Thing"].stats.last_nack
        assert nack is not None
        assert set(nack.names) == {"evil.default"}
        assert "must not be bad" in nack.error
        assert g.registry.metrics.requests_received[("Thing", "NACK")] == 1
        tg.cancel_scope.cancel()


async def test_reconnect_resumes_from_held_versions_and_removes_deleted() -> None:
    async with anyio.create_task_group() as tg:
        global_store, zone_store = MemoryStore(), MemoryStore()
        await global_store.apply_sync("Thing", [thing(f"r{i}") for i in range(50)], [])
        async with anyio.create_task_group() as first:
            g = await _start_global(first, global_store)
            client = _client("zone-1", g.port, zone_store)
            first.start_soon(client.run)
            await eventually(lambda: client.synced, what="initial sync")
            assert (await zone_store.list("Thing")).total == 50
            first.cancel_scope.cancel()  # the global goes away

        assert (await zone_store.list("Thing")).total == 50  # the zone keeps serving its last state
        await global_store.apply_sync(
            "Thing", [thing("r1", "changed"), thing("new")], [ResourceKey("Thing", "default", "r2")]
        )
        g2 = await _start_global(tg, global_store)
        client2 = _client("zone-1", g2.port, zone_store)
        tg.start_soon(client2.run)
        await eventually(lambda: _eq(_value(zone_store, "new"), "v"), what="resume")
        await eventually(lambda: _eq(_value(zone_store, "r2"), None), what="removal while away")
        assert await _value(zone_store, "r1") == "changed"
        (session,) = g2.registry.active.values()
        # Only the two upserts travelled, not all 50 resources.
        assert _sender(session).kinds["Thing"].stats.resources_sent == 2
        assert _sender(session).kinds["Thing"].stats.removals_sent == 1
        tg.cancel_scope.cancel()


async def test_client_reconnects_after_global_restart_on_same_port() -> None:
    async with anyio.create_task_group() as tg:
        global_store, zone_store = MemoryStore(), MemoryStore()
        async with anyio.create_task_group() as first:
            g = await _start_global(first, global_store)
            port = g.port
            client = _client("zone-1", port, zone_store)
            tg.start_soon(client.run)
            await global_store.create(thing("a"))
            await eventually(lambda: _value(zone_store, "a"), what="first sync")
            first.cancel_scope.cancel()
        await eventually(lambda: not client.status.connected, what="client notices")
        await global_store.create(thing("b"))
        await _start_global(tg, global_store, port)
        await eventually(lambda: _value(zone_store, "b"), what="sync after restart")
        assert client.status.connects == 2
        tg.cancel_scope.cancel()


async def test_protocol_error_closes_stream_loudly() -> None:
    async with anyio.create_task_group() as tg:
        g = await _start_global(tg, MemoryStore())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync(metadata=(("client-id", "z"),))
            await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url="Thing", response_nonce="77"))
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "ack for Thing in state unsubscribed" in (info.value.details() or "")
        assert g.registry.metrics.protocol_errors["z"] == 1
        tg.cancel_scope.cancel()


async def test_missing_client_id_is_refused() -> None:
    async with anyio.create_task_group() as tg:
        g = await _start_global(tg, MemoryStore())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        tg.cancel_scope.cancel()


async def test_state_beyond_the_message_cap_is_split_under_it_and_an_oversized_resource_is_named() -> None:
    """11 MB of state is more than Kuma's 10 MiB message cap (`--kds-max-msg-size`): it crosses in several
    responses, each under the cap; a resource that alone exceeds the cap is skipped, logged and reported by
    name, and the rest still apply."""
    global_store, zone_store = MemoryStore(), MemoryStore()
    chunk = "x" * 100_000
    await global_store.apply_sync("Thing", [thing(f"big-{i:03d}", chunk) for i in range(110)], [])
    await global_store.create(thing("huge", "y" * (DEFAULT_MAX_BYTES + 1)))
    async with anyio.create_task_group() as tg:
        g = await _start_global(tg, global_store)
        client = _client("zone-1", g.port, zone_store)
        tg.start_soon(client.run)
        await eventually(lambda: client.synced, what="initial sync")
        (session,) = g.registry.active.values()
        ks = _sender(session).kinds["Thing"]

        async def all_applied() -> bool:
            return (await zone_store.list("Thing")).total == 110

        await eventually(all_applied, what="every chunk applied")
        assert ks.stats.responses_sent >= 2
        assert ks.stats.bytes_sent / ks.stats.responses_sent < DEFAULT_MAX_MSG_SIZE
        assert set(ks.oversized) == {"huge.default"}
        assert any("huge.default" in w for w in session.warnings)
        tg.cancel_scope.cancel()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    b = Backoff(initial=0.1, maximum=1.0)
    delays = [b.next_delay() for _ in range(8)]
    for i, d in enumerate(delays):
        cap = min(1.0, 0.1 * 2**i)
        assert cap / 2 <= d <= cap
    assert delays[:4] == sorted(delays[:4])  # below the cap, each band starts where the last one ended
    b.reset()
    assert b.next_delay() <= 0.1


def test_backoff_defaults_follow_kuma_and_reset_only_after_a_lasting_session() -> None:
    """Kuma: 5 s growing to 1 min (pkg/config/app/kuma-cp/config.go:408-409, v2.7.29); meshgate starts at
    1 s and caps at the same minute. A session that failed before its first response, or ended soon after
    it, does not reset the count: only one that lasted `stable_after` does."""
    b = Backoff()
    assert (b.initial, b.maximum) == (1.0, 60.0)
    for _ in range(3):
        b.next_delay()
    b.session_ended(None)
    b.session_ended(b.stable_after / 2)
    assert b.next_delay() >= 4.0  # the 4th delay: [4, 8]
    delays = [b.next_delay() for _ in range(100)]
    assert max(delays) <= 60.0
    assert delays[-1] >= 30.0
    b.session_ended(b.stable_after)
    assert b.next_delay() <= 1.0


class _HangingHealth(GlobalKDSService):
    """Answers the first health check (ping every 0.05 s), then lets every later one hang past its deadline."""

    def __init__(self, registry: StreamRegistry) -> None:
        super().__init__(registry, 0.05)
        self.hung = 0

    async def HealthCheck(self, request: Any, context: Any) -> Any:
        if self._registry.last_health_check:
            self.hung += 1
            await anyio.sleep_forever()
        return await super().HealthCheck(request, context)


@pytest.mark.parametrize("delivering", [False, True])
async def test_failed_health_checks_reconnect_only_a_silent_stream(delivering: bool) -> None:
    """Three failed pings in a row end a session whose stream delivered nothing meanwhile (a global gone behind
    a load balancer); while the stream keeps delivering, the global is alive but busy, and the zone stays."""
    async with anyio.create_task_group() as tg:
        store = MemoryStore()
        source = SnapshotSource(store, [THING], include=lambda r: True, mapper=lambda r: to_zone(r, hash_suffix=False))
        registry = StreamRegistry(KDSMetrics())
        health = _HangingHealth(registry)
        await tg.start(source.run)
        names = ["kuma.mesh.v1alpha1.KDSSyncService", "kuma.mesh.v1alpha1.GlobalKDSService"]
        port = await tg.start(serve_grpc, _register(KDSSyncService(source, registry), health), names, "127.0.0.1", 0)
        client = _client("zone-1", port, MemoryStore())
        client.ping_timeout = 0.1
        tg.start_soon(client.run)
        await eventually(lambda: client.synced, what="zone synced")

        if not delivering:
            await eventually(lambda: "health checks in a row failed" in client.status.last_error, what="reconnect")
        else:

            async def changes() -> None:
                for i in range(1_000_000):
                    await store.apply_sync("Thing", [thing("busy", str(i))], [])
                    await anyio.sleep(0.01)

            tg.start_soon(changes)
            await eventually(lambda: health.hung >= 6, what="six pings failed")
            assert client.status.connects == 1
            assert "health checks" not in client.status.last_error
        tg.cancel_scope.cancel()
