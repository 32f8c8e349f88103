"""KDS admission on the global over real grpc.aio on loopback: the attacks that worked, now refused.

The global here is wired as global_cp/app.py wires it (ZoneAdmission shared by both services, ZoneRecords,
ZoneSink over the real kinds), in one process, so each test can look at what the registry retains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from global_cp.zone_sink import ZoneSink
from global_cp.zones import ZoneRecords
from meshgate.api.mesh.v1alpha1 import kds_pb2, kds_pb2_grpc
from meshgate.auth import ZoneAuthenticator, generate_key_pem, issue, public_key
from meshgate.kds.envelope import KUMA_RESOURCE_TYPE_URL, to_wire
from meshgate.kds.ownership import to_global, to_zone
from meshgate.observability.metrics import KDSMetrics
from meshgate.resources import codec, registry
from meshgate.store import MemoryStore
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import StreamRegistry
from meshgate.testing.factory import dataplane, resource
from meshgate.transport.grpc_server import serve_grpc
from meshgate.transport.kds_admission import ZoneAdmission
from meshgate.transport.kds_server import GlobalKDSService, KDSSyncService
from tests.support.wait import eventually

KEY = generate_key_pem()
Call = grpc.aio.StreamStreamCall


@dataclass
class Global:
    store: MemoryStore
    streams: StreamRegistry
    admission: ZoneAdmission
    port: int
    now: list[float] = field(default_factory=lambda: [1_000_000.0])
    revoked: set[str] = field(default_factory=set)

    def token(self, zone: str, valid_for: float = 100.0, jti: str = "") -> str:
        return issue(KEY, zone, ["cp"], valid_for, self.now[0], jti)


async def _global(
    tg: anyio.abc.TaskGroup, *, auth: bool = False, max_zones: int = 1000, max_concurrent_admissions: int = 0
) -> Global:
    store = MemoryStore()
    await store.create(codec.load({"type": "Mesh", "name": "default"}))
    streams = StreamRegistry(KDSMetrics(), max_zones=max_zones)
    g = Global(store, streams, ZoneAdmission(streams), 0)
    if auth:
        g.admission.authenticator = ZoneAuthenticator(
            public_key(KEY), clock=lambda: g.now[0], is_revoked=g.revoked.__contains__
        )
    source = SnapshotSource(
        store,
        registry.kinds_sent_to_zone(),
        include=lambda r: True,
        mapper=lambda r: to_zone(r, hash_suffix=False),
    )
    sync = KDSSyncService(
        source,
        streams,
        on_connect=ZoneRecords(store, max_zones).on_connect,
        sink=ZoneSink(store),
        admission=g.admission,
        max_concurrent_admissions=max_concurrent_admissions,
    )
    health = GlobalKDSService(streams, 0.2, admission=g.admission)
    await tg.start(source.run)
    register: list[Callable[[grpc.aio.Server], None]] = [
        lambda s: kds_pb2_grpc.add_KDSSyncServiceServicer_to_server(sync, s),
        lambda s: kds_pb2_grpc.add_GlobalKDSServiceServicer_to_server(health, s),
    ]
    names = ["kuma.mesh.v1alpha1.KDSSyncService", "kuma.mesh.v1alpha1.GlobalKDSService"]
    g.port = await tg.start(serve_grpc, register, names, "127.0.0.1", 0)
    return g


def _metadata(zone: str, instance: str = "real", token: str = "") -> tuple[tuple[str, str], ...]:
    auth = (("authorization", f"Bearer {token}"),) if token else ()
    return (("client-id", zone), ("zone-instance-id", instance), *auth)


def _subscribe(kind: str = "Mesh", **versions: str) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=kind, resource_names_subscribe=["*"], initial_resource_versions=versions
    )


async def _status(call: Call[Any, Any]) -> grpc.aio.AioRpcError:
    """The status the global ends `call` with (reading, and dropping, whatever came before)."""
    try:
        while await call.read() is not grpc.aio.EOF:  # type: ignore[attr-defined]
            pass
    except grpc.aio.AioRpcError as exc:
        return exc
    code, details = await call.code(), await call.details()
    assert code != grpc.StatusCode.OK, "the call ended without an error"
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, None)


async def _upstream(channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...]) -> Call[Any, Any]:
    """A ZoneToGlobalSync call, admitted: the global's subscribes (every kind sent to the global) are read."""
    call: Call[Any, Any] = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(metadata=metadata)
    subscribed: set[str] = set()
    while subscribed != {d.name for d in registry.kinds_sent_to_global()}:
        req = await call.read()
        assert isinstance(req, discovery_pb2.DeltaDiscoveryRequest), req
        subscribed.add(req.type_url)
    return call


def _dataplane(
    zone: str, name: str = "web-1", mesh: str = "default", address: str = "10.0.0.1"
) -> discovery_pb2.Resource:
    r = resource(dataplane(name, "web", mesh=mesh, port=80))
    return to_wire(to_global(zone, r))


async def _dataplanes(store: MemoryStore) -> list[str]:
    return sorted(r.meta.labels["kuma.io/display-name"] for r in (await store.list("Dataplane")).items)


async def test_client_ids_the_api_would_refuse_get_invalid_argument_with_a_bounded_message() -> None:
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            for client_id in ("Zone_3", "zone 3", "x" * 4000, "-zone"):
                call = stub.GlobalToZoneSync(metadata=_metadata(client_id))
                await call.write(_subscribe())
                refused = await _status(call)
                assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, client_id
                details = refused.details() or ""
                assert "is not a valid zone name" in details
                assert len(details) < 600
            upstream = stub.ZoneToGlobalSync(metadata=_metadata("Zone_3"))
            assert (await _status(upstream)).code() == grpc.StatusCode.INVALID_ARGUMENT
        # Refused before anything was recorded: no Zone record, no history, no metric label.
        assert (await g.store.list("Zone")).total == 0
        assert g.streams.history == {}
        assert not g.streams.metrics.protocol_errors
        tg.cancel_scope.cancel()


async def test_a_stolen_zone_name_cannot_open_a_second_stream_nor_replace_the_zones_state() -> None:
    """The first attack: a client connecting as a connected zone's name with an empty state. Refused with
    ALREADY_EXISTS in both directions; the zone's Dataplane stays stored. The same instance reconnecting
    replaces its own stream."""
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            real = await _upstream(channel, _metadata("zone-3", "real-instance"))
            await real.write(
                discovery_pb2.DeltaDiscoveryResponse(type_url="Dataplane", nonce="1", resources=[_dataplane("zone-3")])
            )
            ack = await real.read()
            assert isinstance(ack, discovery_pb2.DeltaDiscoveryRequest)
            assert not ack.error_detail.message
            assert await _dataplanes(g.store) == ["web-1"]

            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            thief_up = stub.ZoneToGlobalSync(metadata=_metadata("zone-3", "thief"))
            refused = await _status(thief_up)
            assert refused.code() == grpc.StatusCode.ALREADY_EXISTS
            assert "zone 'zone-3' already has a KDS stream from instance 'real-instance'" in (refused.details() or "")
            thief_down = stub.GlobalToZoneSync(metadata=_metadata("zone-3", "thief"))
            await thief_down.write(_subscribe())
            assert (await _status(thief_down)).code() == grpc.StatusCode.ALREADY_EXISTS
            # Config dumps too: only the instance holding the zone answers for its proxies.
            dumps = kds_pb2_grpc.GlobalKDSServiceStub(channel).StreamXDSConfigs(metadata=_metadata("zone-3", "thief"))
            assert (await _status(dumps)).code() in (grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNIMPLEMENTED)
            assert await _dataplanes(g.store) == ["web-1"]
            assert [s.zone_instance_id for s in g.streams.active.values()] == ["real-instance"]

            # The real instance reconnecting (its old stream not yet noticed gone) replaces its own stream.
            again = await _upstream(channel, _metadata("zone-3", "real-instance"))
            assert (await _status(real)).code() == grpc.StatusCode.ABORTED
            await eventually(lambda: len(g.streams.active) == 1, what="one stream left")
            again.cancel()
        tg.cancel_scope.cancel()


async def test_resources_in_a_mesh_the_global_lacks_are_nacked_and_not_stored() -> None:
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            call = await _upstream(channel, _metadata("zone-evil"))
            resources = [_dataplane("zone-evil", "ghost-dp", mesh="ghost"), _dataplane("zone-evil", "ok-dp")]
            await call.write(discovery_pb2.DeltaDiscoveryResponse(type_url="Dataplane", nonce="1", resources=resources))
            nack = await call.read()
            assert isinstance(nack, discovery_pb2.DeltaDiscoveryRequest)
            assert resources[0].name in nack.error_detail.message  # the name the zone sent, hash-suffixed
            assert resources[0].name.startswith("ghost-dp-")
            assert "mesh 'ghost' does not exist on the global" in nack.error_detail.message
            call.cancel()
        assert await _dataplanes(g.store) == ["ok-dp"]
        assert (await g.store.list("Dataplane", "ghost")).total == 0
        tg.cancel_scope.cancel()


async def test_a_zone_response_for_a_kind_the_global_does_not_take_is_acked_and_the_stream_goes_on() -> None:
    """A Kuma zone answers the kinds a Kuma global asks for; a meshgate global must not drop it for a kind it
    does not know (ZoneIngressInsight): it ACKs, stores nothing, and takes the zone's Dataplanes after. Its
    requests carry node.id = the zone name, as Kuma's global's (pkg/kds/global/components.go:179)."""
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            call: Call[Any, Any] = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(
                metadata=_metadata("zone-1")
            )
            subscribes = [await call.read() for _ in registry.kinds_sent_to_global()]
            for req in subscribes:
                assert isinstance(req, discovery_pb2.DeltaDiscoveryRequest)
                assert req.node.id == "zone-1"
                assert req.node.metadata.fields["features"].WhichOneof("kind") == "list_value"
            unknown = discovery_pb2.DeltaDiscoveryResponse(type_url="ZoneIngressInsight", nonce="1")
            unknown.resources.add(name="web-1.default", version="v")
            await call.write(unknown)
            ack = await call.read()
            assert isinstance(ack, discovery_pb2.DeltaDiscoveryRequest)
            assert (ack.type_url, ack.response_nonce, ack.node.id) == ("ZoneIngressInsight", "1", "zone-1")
            assert not ack.HasField("error_detail")
            await call.write(
                discovery_pb2.DeltaDiscoveryResponse(type_url="Dataplane", nonce="2", resources=[_dataplane("zone-1")])
            )
            ack = await call.read()
            assert isinstance(ack, discovery_pb2.DeltaDiscoveryRequest)
            assert (ack.type_url, ack.response_nonce) == ("Dataplane", "2")
            call.cancel()
        assert await _dataplanes(g.store) == ["web-1"]
        tg.cancel_scope.cancel()


async def test_features_are_read_from_repeated_metadata_values_and_the_comma_form() -> None:
    """Kuma's zones send one `features` value per feature (pkg/kds/mux/client.go:100-105); meshgate zones
    used to join them with commas. The global reads both (StreamSession.features)."""
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            for zone, features in (
                ("zone-1", (("features", "zone-ping-health"), ("features", "hash-suffix"))),
                ("zone-2", (("features", "zone-ping-health,hash-suffix"),)),
            ):
                call = stub.GlobalToZoneSync(metadata=(*_metadata(zone), *features))
                await call.write(_subscribe("Mesh"))
                assert isinstance(await call.read(), discovery_pb2.DeltaDiscoveryResponse)
                (session,) = g.streams.by_zone(zone)
                assert session.features == ("zone-ping-health", "hash-suffix")
                call.cancel()
        tg.cancel_scope.cancel()


def _any(type_url: str, value: bytes) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=value)


@pytest.mark.parametrize(
    ("what", "response"),
    [
        ("absurd kind name", discovery_pb2.DeltaDiscoveryResponse(type_url="Bogus" * 200, nonce="1")),
        (
            "not a KumaResource",
            discovery_pb2.DeltaDiscoveryResponse(
                type_url="Dataplane",
                nonce="1",
                resources=[discovery_pb2.Resource(name="a.default", resource=_any("type.googleapis.com/x.Y", b""))],
            ),
        ),
        (
            "undecodable Any",
            discovery_pb2.DeltaDiscoveryResponse(
                type_url="Dataplane",
                nonce="1",
                resources=[
                    discovery_pb2.Resource(name="a.default", resource=_any(KUMA_RESOURCE_TYPE_URL, b"\xff\xff"))
                ],
            ),
        ),
        (
            "oversized name",
            discovery_pb2.DeltaDiscoveryResponse(
                type_url="Dataplane", nonce="1", resources=[discovery_pb2.Resource(name="n" * 100_000)]
            ),
        ),
    ],
)
async def test_garbage_from_a_zone_gets_invalid_argument_with_a_bounded_message(
    what: str, response: discovery_pb2.DeltaDiscoveryResponse
) -> None:
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            call = await _upstream(channel, _metadata("zone-1"))
            await call.write(response)
            refused = await _status(call)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert (refused.details() or "").startswith("malformed KDS message: ")
        assert len(refused.details() or "") < 500, what
        assert (await g.store.list("Dataplane")).total == 0
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("what", "request_"),
    [
        ("absurd kind name", _subscribe("Nope" * 300)),
        ("oversized name", _subscribe("Mesh", **{"m" * 10_000: "v"})),
        ("oversized version", _subscribe("Mesh", **{"m.": "v" * 10_000})),
    ],
)
async def test_garbage_requests_get_invalid_argument(what: str, request_: discovery_pb2.DeltaDiscoveryRequest) -> None:
    async with anyio.create_task_group() as tg:
        g = await _global(tg)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            call = kds_pb2_grpc.KDSSyncServiceStub(channel).GlobalToZoneSync(metadata=_metadata("zone-1"))
            await call.write(request_)
            refused = await _status(call)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert len(refused.details() or "") < 500, what
        tg.cancel_scope.cancel()


async def test_closed_streams_keep_only_counters_and_history_is_capped() -> None:
    """The third attack, scaled down: 40 client-ids each offer 2,000 initial versions. With --kds-max-zones
    10, ten are admitted (and disconnect), thirty are refused before any state is kept; nothing per resource
    survives a closed stream, and the registry remembers at most 10 zones."""
    async with anyio.create_task_group() as tg:
        g = await _global(tg, max_zones=10)
        versions = {f"mesh-{i:05d}-{'x' * 40}.": "0123456789abcdef0123" for i in range(2000)}
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            for i in range(40):
                zone = f"zone-{i}"
                call = stub.GlobalToZoneSync(metadata=_metadata(zone, f"instance-{i}"))
                await call.write(_subscribe("Mesh", **versions))

                def known(zone: str = zone) -> bool:
                    return any(s.sender is not None and s.sender.kinds["Mesh"].known for s in g.streams.by_zone(zone))

                if i < 10:
                    await eventually(known, what=f"{zone} subscribed")
                    call.cancel()
                    await eventually(lambda zone=zone: not g.streams.by_zone(zone), what=f"{zone} closed")
                else:
                    # Past the Zone record cap (10): refused before a stream is registered.
                    refused = await _status(call)
                    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert "--kds-max-zones" in (refused.details() or "")
        assert g.streams.active == {}
        assert len(g.streams.history) <= 10
        assert (await g.store.list("Zone")).total == 10
        for hist in g.streams.history.values():
            for session in hist.closed:
                assert session.token == ""
                assert session.sender is not None
                for ks in session.sender.kinds.values():
                    assert (ks.known, ks.confirmed, ks.sent, ks.rejected) == ({}, {}, {}, {})
                # ...while the counters a closed stream's insight shows are kept.
                assert session.sender.kinds["Mesh"].stats.responses_sent >= 1
        tg.cancel_scope.cancel()


async def test_recheck_closes_open_streams_whose_token_expired_or_was_revoked() -> None:
    async with anyio.create_task_group() as tg:
        g = await _global(tg, auth=True)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            short = stub.GlobalToZoneSync(metadata=_metadata("zone-1", token=g.token("zone-1", valid_for=100)))
            await short.write(_subscribe())
            revocable = stub.GlobalToZoneSync(
                metadata=_metadata("zone-2", token=g.token("zone-2", valid_for=10_000, jti="jti-2"))
            )
            await revocable.write(_subscribe())
            await eventually(lambda: len(g.streams.active) == 2, what="both streams open")
            assert g.admission.recheck() == []

            g.now[0] += 200  # zone-1's token expires while its stream is open
            assert [s.zone for s in g.admission.recheck()] == ["zone-1"]
            expired = await _status(short)
            assert expired.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "zone token no longer valid" in (expired.details() or "")
            assert "expired" in (expired.details() or "")

            g.revoked.add("jti-2")  # zone-2's is revoked later
            assert [s.zone for s in g.admission.recheck()] == ["zone-2"]
            revoked = await _status(revocable)
            assert revoked.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in (revoked.details() or "")
            await eventually(lambda: not g.streams.active, what="both streams closed")

            # A revoked token is refused at the door too, and health checks with it fail.
            again = stub.GlobalToZoneSync(metadata=_metadata("zone-2", token=g.token("zone-2", jti="jti-2")))
            await again.write(_subscribe())
            assert (await _status(again)).code() == grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.aio.AioRpcError) as ping:
                await kds_pb2_grpc.GlobalKDSServiceStub(channel).HealthCheck(
                    kds_pb2.ZoneHealthCheckRequest(), metadata=_metadata("zone-2", token=g.token("zone-2", jti="jti-2"))
                )
            assert ping.value.code() == grpc.StatusCode.UNAUTHENTICATED
        failures = g.streams.metrics.auth_failures
        assert failures[("zone-1", "expired")] == 1
        assert failures[("zone-2", "revoked")] >= 2
        tg.cancel_scope.cancel()


async def test_health_checks_from_untracked_zones_are_bounded() -> None:
    async with anyio.create_task_group() as tg:
        g = await _global(tg, max_zones=10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            health = kds_pb2_grpc.GlobalKDSServiceStub(channel)
            for i in range(30):
                await health.HealthCheck(kds_pb2.ZoneHealthCheckRequest(), metadata=_metadata(f"ping-{i}"))
        assert len(g.streams.last_health_check) == 10
        tg.cancel_scope.cancel()


async def _subscribe_all(call: Call[Any, Any], kinds: list[str]) -> None:
    for kind in kinds:
        await call.write(_subscribe(kind))


async def _responses(call: Call[Any, Any], n: int) -> list[discovery_pb2.DeltaDiscoveryResponse]:
    out = []
    for _ in range(n):
        resp = await call.read()
        assert isinstance(resp, discovery_pb2.DeltaDiscoveryResponse), resp
        out.append(resp)
    return out


async def _ack(call: Call[Any, Any], responses: list[discovery_pb2.DeltaDiscoveryResponse]) -> None:
    for resp in responses:
        await call.write(discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce))


async def test_initial_syncs_wait_for_a_slot_and_zones_in_sync_still_get_changes() -> None:
    """--kds-max-concurrent-admissions 1: while one zone's first responses are not all written (it subscribed
    to one kind only), the next zone's stream waits (nothing sent to it, counted as waiting), a zone already
    in sync still receives a change, and the waiting zone is served once the first's responses are out."""
    kinds = [d.name for d in registry.kinds_sent_to_zone()]
    async with anyio.create_task_group() as tg:
        g = await _global(tg, max_concurrent_admissions=1)
        metrics = g.streams.metrics
        async with grpc.aio.insecure_channel(f"127.0.0.1:{g.port}") as channel:
            stub = kds_pb2_grpc.KDSSyncServiceStub(channel)
            in_sync = stub.GlobalToZoneSync(metadata=_metadata("zone-1"))
            await _subscribe_all(in_sync, kinds)
            await _ack(in_sync, await _responses(in_sync, len(kinds)))
            await eventually(lambda: metrics.admissions_in_progress() == 0, what="zone-1's slot given back")

            slow = stub.GlobalToZoneSync(metadata=_metadata("zone-2"))
            await _subscribe_all(slow, kinds[:1])
            await _ack(slow, await _responses(slow, 1))
            waiting = stub.GlobalToZoneSync(metadata=_metadata("zone-3"))
            await _subscribe_all(waiting, kinds)
            await eventually(lambda: metrics.admissions_waiting() == 1, what="zone-3 waiting for a slot")
            assert metrics.admissions_in_progress() == 1
            assert "meshgate_kds_admissions_waiting 1" in metrics.render()

            await g.store.create(codec.load({"type": "Mesh", "name": "other"}))
            (change,) = await _responses(in_sync, 1)
            assert change.type_url == "Mesh"
            assert len(change.resources) == 1
            assert metrics.admissions_waiting() == 1  # still waiting: zone-2's first responses are not all out

            # zone-2 subscribes to the other kinds: once their first responses are written, zone-3 is let in.
            await _subscribe_all(slow, kinds[1:])
            await _responses(slow, len(kinds) - 1)
            first = await _responses(waiting, len(kinds))
            assert {r.type_url for r in first} == set(kinds)
            assert metrics.admissions_waiting() == 0
            assert {s.zone for s in g.streams.active.values()} == {"zone-1", "zone-2", "zone-3"}
            for call in (in_sync, slow, waiting):
                call.cancel()
        tg.cancel_scope.cancel()
