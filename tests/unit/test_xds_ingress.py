"""A zone ingress's `availableServices` (Kuma 2.7.29 pkg/xds/ingress/dataplane.go), and the zone's tracker that
writes them into its own ZoneIngresses (pkg/zone/available_services.go)."""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format

from meshgate.kds import ownership
from meshgate.resources import codec
from meshgate.resources.model import ResourceKey
from meshgate.store import MemoryStore
from meshgate.testing import factory
from meshgate.xds.ingress import available_services, serves_zone, with_available_services
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
