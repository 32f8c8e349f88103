"""The global's policy for what zones send up, driven through the real Receiver and a MemoryStore."""

from __future__ import annotations

from envoy.service.discovery.v3 import discovery_pb2

from global_cp.zone_sink import ZoneSink
from meshgate.kds import ownership
from meshgate.kds.envelope import to_wire
from meshgate.kds.naming import hashed_name
from meshgate.resources import codec
from meshgate.resources.model import Resource, ResourceKey
from meshgate.store import MemoryStore
from meshgate.testing import factory

GATEWAY = {
    "type": "MeshGateway",
    "mesh": "default",
    "name": "gw",
    "selectors": [{"match": {"kuma.io/service": "gw"}}],
    "conf": {"listeners": [{"port": 8080, "protocol": "HTTP"}]},
}


async def with_default_mesh() -> MemoryStore:
    """A global's store holding Mesh `default`: zones may only send resources in meshes the global has."""
    store = MemoryStore()
    await store.create(codec.load({"type": "Mesh", "name": "default"}))
    return store


def from_zone(zone: str) -> Resource:
    r = codec.load(GATEWAY)
    return ownership.to_global(zone, r)


async def test_a_zone_resource_is_stored_as_the_zone_named_it_and_resumable() -> None:
    store = await with_default_mesh()
    sink = ZoneSink(store)
    receiver = sink.receiver("zone-1")
    receiver.subscribe(await sink.held("zone-1"))
    wire = to_wire(from_zone("zone-1"))
    plan = await sink.apply(
        "zone-1",
        receiver.receive(discovery_pb2.DeltaDiscoveryResponse(type_url="MeshGateway", nonce="1", resources=[wire])),
    )
    assert plan.accepted
    stored = await store.get(ResourceKey("MeshGateway", "default", hashed_name("default", "gw", "zone-1", "")))
    assert stored.meta.labels["kuma.io/display-name"] == "gw"
    assert wire.name == f"{stored.meta.name}.default"  # the zone hashed it (Kuma 2.7); the global keeps it
    # On reconnect the global offers exactly the version the zone computes for its own copy.
    assert (await sink.held("zone-1"))["MeshGateway"] == {wire.name: (stored.key, wire.version)}
    assert (await sink.held("zone-2"))["MeshGateway"] == {}


async def test_overwriting_a_global_resource_is_rejected() -> None:
    store = await with_default_mesh()
    squatter = codec.load({**GATEWAY, "name": hashed_name("default", "gw", "zone-1", "")})
    await store.create(squatter)  # global-origin: no kuma.io/origin label
    sink = ZoneSink(store)
    receiver = sink.receiver("zone-1")
    receiver.subscribe({})
    plan = await sink.apply(
        "zone-1",
        receiver.receive(
            discovery_pb2.DeltaDiscoveryResponse(
                type_url="MeshGateway", nonce="1", resources=[to_wire(from_zone("zone-1"))]
            )
        ),
    )
    assert [r.reason for r in plan.rejections] == [
        "ownership: would overwrite a resource owned by the global control plane"
    ]
    assert (await store.get(squatter.key)).meta.labels == {}


async def test_wrong_origin_is_rejected() -> None:
    sink = ZoneSink(await with_default_mesh())
    receiver = sink.receiver("zone-1")
    receiver.subscribe({})
    r = codec.load(GATEWAY).with_meta(labels={"kuma.io/origin": "global"})
    plan = receiver.receive(
        discovery_pb2.DeltaDiscoveryResponse(type_url="MeshGateway", nonce="1", resources=[to_wire(r)])
    )
    assert plan.rejections[0].reason == "ownership: label kuma.io/origin must be \"zone\", got 'global'"


async def test_resources_in_a_mesh_the_global_lacks_are_nacked_and_never_stored() -> None:
    """The injection attack: a zone sends a Dataplane in a mesh that does not exist on the global. It is
    rejected by name, naming the missing mesh; the valid resource of the same response is stored."""
    store = await with_default_mesh()
    sink = ZoneSink(store)
    receiver = sink.receiver("zone-1")
    receiver.subscribe({})
    ghost = codec.load({**GATEWAY, "mesh": "ghost"})
    ghost = ownership.to_global("zone-1", ghost)
    plan = await sink.apply(
        "zone-1",
        receiver.receive(
            discovery_pb2.DeltaDiscoveryResponse(
                type_url="MeshGateway", nonce="1", resources=[to_wire(ghost), to_wire(from_zone("zone-1"))]
            )
        ),
    )
    ghost_wire = to_wire(ghost).name
    assert [(r.name, r.reason) for r in plan.rejections] == [
        (ghost_wire, "mesh 'ghost' does not exist on the global: create the Mesh there first")
    ]
    nack = receiver.applied(plan)
    assert ghost_wire in nack.error_detail.message
    assert "mesh 'ghost' does not exist" in nack.error_detail.message
    assert (await store.list("MeshGateway", "ghost")).total == 0
    assert (await store.list("MeshGateway", "default")).total == 1


async def test_a_zone_without_hash_suffix_gets_kuma_s_legacy_names_both_ways() -> None:
    """pkg/kds/v2/store/sync.go GlobalSyncCallback: names from a zone without `hash-suffix` are stored as
    `<zone>.<name>`; on reconnect the global offers them back under the names that zone uses."""
    store = await with_default_mesh()
    sink = ZoneSink(store)
    receiver = sink.receiver("zone-1", hash_suffix=False)
    receiver.subscribe({})
    old = codec.load(GATEWAY).with_meta(labels={"kuma.io/origin": "zone", "kuma.io/zone": "zone-1"})
    wire = to_wire(old)
    plan = await sink.apply(
        "zone-1",
        receiver.receive(discovery_pb2.DeltaDiscoveryResponse(type_url="MeshGateway", nonce="1", resources=[wire])),
    )
    assert plan.accepted
    stored = await store.get(ResourceKey("MeshGateway", "default", "zone-1.gw"))
    assert stored.meta.labels["kuma.io/display-name"] == "gw"
    assert (await sink.held("zone-1", hash_suffix=False))["MeshGateway"] == {"gw.default": (stored.key, wire.version)}


async def test_a_zone_ingress_is_stored_with_its_zone_in_the_spec_and_resumable() -> None:
    """Kuma's global sets `spec.zone` on a ZoneIngress from a zone (pkg/kds/global/components.go:303); the zone
    keeps it empty for its own, so the version the global offers back is the zone's."""
    store = MemoryStore()
    sink = ZoneSink(store)
    receiver = sink.receiver("zone-1")
    receiver.subscribe(await sink.held("zone-1"))
    sent = ownership.to_global(
        "zone-1", codec.load(factory.zone_ingress(advertised_address="203.0.113.1", advertised_port=10001))
    )
    wire = to_wire(sent)
    plan = await sink.apply(
        "zone-1",
        receiver.receive(discovery_pb2.DeltaDiscoveryResponse(type_url="ZoneIngress", nonce="1", resources=[wire])),
    )
    assert plan.accepted
    stored = await store.get(ResourceKey("ZoneIngress", "", hashed_name("", "ingress", "zone-1", "")))
    assert stored.spec.zone == "zone-1"  # type: ignore[attr-defined]
    assert stored.spec.networking.advertisedAddress == "203.0.113.1"  # type: ignore[attr-defined]
    assert stored.meta.labels["kuma.io/zone"] == "zone-1"
    assert (await sink.held("zone-1"))["ZoneIngress"] == {wire.name: (stored.key, wire.version)}
