"""A zone ingress's `availableServices` (Kuma 2.7.29 pkg/xds/ingress/dataplane.go), and the zone's tracker that
writes them into its own ZoneIngresses (pkg/zone/available_services.go)."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_response_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import json_format

from meshgate.kds import ownership
from meshgate.resources import codec
from meshgate.resources.model import ResourceKey
from meshgate.store import MemoryStore
from meshgate.testing import factory
from meshgate.xds import CLUSTER, ENDPOINT, LISTENER, Snapshot
from meshgate.xds.ingress import available_services, ingress_snapshot, serves_zone, with_available_services
from zone_cp.ingress import IngressServices


def as_json(services: Any) -> list[dict[str, Any]]:
    return [json_format.MessageToDict(s) for s in services]


def test_one_entry_per_mesh_and_tag_set_counting_instances_in_kumas_order() -> None:
    dps = [
        codec.load(factory.dataplane("web-1", "web", tags={"version": "v1"})),
        codec.load(factory.dataplane("web-2", "web", tags={"version": "v1"})),
        codec.load(factory.dataplane("web-3", "web", tags={"version": "v2"})),
        codec.load(factory.dataplane("db-1", "db", "cache")),
        codec.load(factory.dataplane("web-b", "web", mesh="b")),
    ]
    assert as_json(available_services(dps))[:2] == [
        {"tags": {"kuma.io/service": "web"}, "instances": 1, "mesh": "b"},
        {"tags": {"kuma.io/service": "cache"}, "instances": 1, "mesh": "default"},
    ]
    # Ordered by mesh first ("b" < "default"), then by the tag set as Kuma writes it (`k=v,k=v`).
    assert [(s.mesh, dict(s.tags), s.instances) for s in available_services(dps)] == [
        ("b", {"kuma.io/service": "web"}, 1),
        ("default", {"kuma.io/service": "cache"}, 1),
        ("default", {"kuma.io/service": "db"}, 1),
        ("default", {"kuma.io/service": "web", "version": "v1"}, 2),
        ("default", {"kuma.io/service": "web", "version": "v2"}, 1),
    ]


def test_unhealthy_and_not_ready_inbounds_are_left_out_and_tag_filters_keep_prefixes() -> None:
    doc = factory.dataplane("web-1", "web", "api", "admin", tags={"version": "v1", "team": "a"})
    doc["networking"]["inbound"][1]["health"] = {"ready": False}
    doc["networking"]["inbound"][2]["state"] = "NotReady"
    dp = codec.load(doc)
    assert [dict(s.tags) for s in available_services([dp])] == [
        {"kuma.io/service": "web", "version": "v1", "team": "a"}
    ]
    assert [dict(s.tags) for s in available_services([dp], ["kuma.io/", "vers"])] == [
        {"kuma.io/service": "web", "version": "v1"}
    ]


def test_an_ingress_is_rewritten_only_when_its_list_differs() -> None:
    ingress = codec.load(factory.zone_ingress())
    services = available_services([codec.load(factory.dataplane("web-1", "web"))])
    updated = with_available_services(ingress, services)
    assert updated is not None
    assert list(updated.spec.availableServices) == services  # type: ignore[attr-defined]
    assert with_available_services(updated, services) is None
    assert list(ingress.spec.availableServices) == []  # type: ignore[attr-defined]  # not mutated


def test_only_the_zones_own_ingresses_are_served() -> None:
    own = codec.load(factory.zone_ingress())
    remote = ownership.stored_on_global("zone-2", ownership.to_global("zone-2", own), hash_suffix=True)
    assert serves_zone(own, "zone-1")
    assert not serves_zone(remote, "zone-1")
    assert serves_zone(remote, "zone-2")


async def test_the_tracker_counts_only_the_zones_own_dataplanes_and_updates_its_own_ingress() -> None:
    store = MemoryStore()
    await store.create(codec.load(factory.mesh()))
    await store.create(codec.load(factory.dataplane("web-1", "web")))
    # zone-2's Dataplane and ZoneIngress, relayed through the global: neither counted nor written.
    relayed_dp = ownership.to_global("zone-2", codec.load(factory.dataplane("db-1", "db")))
    await store.create(relayed_dp)
    own = await store.create(codec.load(factory.zone_ingress()))
    remote = ownership.stored_on_global(
        "zone-2", ownership.to_global("zone-2", codec.load(factory.zone_ingress("ingress"))), hash_suffix=True
    )
    await store.create(remote)

    tracker = IngressServices(store, "zone-1")
    assert await tracker.refresh() == ["ingress"]
    stored = await store.get(own.key)
    assert [dict(s.tags) for s in stored.spec.availableServices] == [{"kuma.io/service": "web"}]  # type: ignore[attr-defined]
    assert list((await store.get(remote.key)).spec.availableServices) == []  # type: ignore[attr-defined]
    assert await tracker.refresh() == []  # nothing changed: nothing written

    await store.delete(ResourceKey("Dataplane", "default", "web-1"))
    assert await tracker.refresh() == ["ingress"]
    assert list((await store.get(own.key)).spec.availableServices) == []  # type: ignore[attr-defined]


def _values(snap: Snapshot, type_url: str, *names: str) -> list[Any]:
    """The snapshot's messages of one type (those named, else all), typed loosely for field access."""
    named = snap.resources[type_url]
    return [named[n] for n in names] if names else list(named.values())


def _ingress_with(*dps: Any) -> tuple[Any, list[Any]]:
    loaded = [codec.load(d) for d in dps]
    ingress = codec.load(factory.zone_ingress(address="10.0.0.9", port=10001))
    return with_available_services(ingress, available_services(loaded)) or ingress, loaded


def test_the_ingress_listener_routes_each_service_by_sni_to_the_zones_sidecars_without_decrypting() -> None:
    """Kuma's IngressGenerator with its default TrafficRoute: SNI `<service>{mesh=<mesh>}`, a TCP proxy to
    `<mesh>:<service>`, whose endpoints are the sidecars' inbound ports (the mTLS session goes through)."""
    ingress, dps = _ingress_with(
        factory.dataplane("web-1", "web", address="10.0.0.1", port=8080, tags={"version": "v1"}),
        factory.dataplane("web-2", "web", address="10.0.0.2", port=8080, tags={"version": "v2"}),
        factory.dataplane("db-1", "db", mesh="b", address="10.0.0.3", port=5432),
    )
    snap = ingress_snapshot(ingress, dps, proxy_id=".ingress", zone="zone-1")
    (listener,) = _values(snap, LISTENER)
    assert listener.name == "inbound:10.0.0.9:10001"
    assert listener.address.socket_address.port_value == 10001
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = {
        tuple(c.filter_chain_match.server_names): (c.filter_chain_match.transport_protocol, c)
        for c in listener.filter_chains
    }
    # One chain per service (web's two versions share one SNI), never a TLS context: nothing is terminated.
    assert sorted(chains) == [
        ("db{mesh=b}", "db{kuma.io/zone=zone-1,mesh=b}"),
        ("web{mesh=default}", "web{kuma.io/zone=zone-1,mesh=default}"),
    ]
    for protocol, chain in chains.values():
        assert protocol == "tls"
        assert not chain.HasField("transport_socket")
    tcp = tcp_proxy_pb2.TcpProxy()
    chains[("web{mesh=default}", "web{kuma.io/zone=zone-1,mesh=default}")][1].filters[0].typed_config.Unpack(tcp)
    assert tcp.cluster == "default:web"
    assert sorted(snap.resources[CLUSTER]) == ["b:db", "default:web"]
    web = _values(snap, ENDPOINT, "default:web")[0]
    assert sorted(
        (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value)
        for group in web.endpoints
        for lb in group.lb_endpoints
    ) == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]


def test_an_ingress_with_no_service_answers_who_it_is() -> None:
    """Kuma's GenerateEmptyDirectResponseListener."""
    ingress, dps = _ingress_with()
    snap = ingress_snapshot(ingress, dps, proxy_id=".ingress", zone="zone-1")
    (listener,) = _values(snap, LISTENER)
    (chain,) = listener.filter_chains
    config = direct_response_pb2.Config()
    chain.filters[0].typed_config.Unpack(config)
    assert config.response.inline_string == '{"proxy":".ingress","zone":"zone-1"}'
    assert not snap.resources.get(CLUSTER)
