"""Which control plane may write which kind: derived from the descriptors, answered 405 like Kuma."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from meshgate.resources import codec, registry
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE
from meshgate.rest.errors import GLOBAL_READ_ONLY_MESSAGE, ZONE_READ_ONLY_MESSAGE
from meshgate.rest.handlers import Role
from meshgate.store.memory import MemoryStore
from meshgate.testing import factory
from tests.rest_support import api_client, dataplane, gateway, mesh, route, zone

DOCS: dict[str, Callable[[], dict[str, Any]]] = {
    "Mesh": mesh,
    "MeshGateway": gateway,
    "MeshGatewayRoute": route,
    "Dataplane": dataplane,
    "Zone": zone,
    "Secret": lambda: {"type": "Secret", "mesh": "default", "name": "tls-cert", "data": "c2VjcmV0"},
    "MeshGatewayInstance": lambda: {"type": "MeshGatewayInstance", "mesh": "default", "name": "edge", "replicas": 2},
    "ZoneIngress": lambda: {
        "type": "ZoneIngress",
        "name": "zi-1",
        "networking": {
            "address": "192.168.0.1",
            "advertisedAddress": "10.0.0.1",
            "port": 10001,
            "advertisedPort": 1234,
        },
    },
    "ZoneEgress": lambda: factory.zone_egress("ze-1"),
    "DataplaneInsight": lambda: {
        "type": "DataplaneInsight",
        "mesh": "default",
        "name": "edge-1",
        "subscriptions": [
            {"id": "s-1", "controlPlaneInstanceId": "cp-1", "connectTime": "2026-01-01T00:00:00Z", "status": {}}
        ],
    },
    **factory.POLICY_BUILDERS,
}


def all_kinds() -> list[KindDescriptor]:
    return list(registry.KINDS)


def item_path(kind: KindDescriptor, doc: dict[str, Any]) -> str:
    if kind.mesh_scoped:
        return f"/meshes/{doc['mesh']}/{kind.plural}/{doc['name']}"
    return f"/{kind.plural}/{doc['name']}"


def writable(kind: KindDescriptor, role: Role) -> bool:
    return kind.writable_on_global if role == "global" else kind.writable_on_zone


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore()
    await memory.create(codec.load(mesh()))
    yield memory
    await memory.close()


def test_every_kind_has_a_sample_document() -> None:
    assert {k.name for k in all_kinds()} <= set(DOCS)


@pytest.mark.parametrize("role", ["global", "zone"])
async def test_read_only_kinds_answer_405(store: MemoryStore, role: Role) -> None:
    message = GLOBAL_READ_ONLY_MESSAGE if role == "global" else ZONE_READ_ONLY_MESSAGE
    read_only = [k for k in all_kinds() if not writable(k, role)]
    assert read_only, f"some kind should be read-only on the {role}"
    async with api_client(store, role=role) as http:
        for kind in read_only:
            doc = DOCS[kind.name]()
            path = item_path(kind, doc)
            for response in (await http.put(path, json=doc), await http.delete(path)):
                assert response.status_code == 405, (kind.name, response.text)
                assert response.json() == {
                    "type": "/std-errors",
                    "status": 405,
                    "title": "Method not Allowed",
                    "detail": message,
                    "details": message,
                }
    assert [r.meta.name for r in (await store.list("Mesh")).items] == ["default"]


@pytest.mark.parametrize("role", ["global", "zone"])
async def test_every_kind_can_be_read_on_both(store: MemoryStore, role: Role) -> None:
    for kind in all_kinds():
        if kind.name != "Mesh":
            await store.create(codec.load(DOCS[kind.name]()))
    async with api_client(store, role=role) as http:
        for kind in all_kinds():
            doc = DOCS[kind.name]()
            got = await http.get(item_path(kind, doc))
            assert got.status_code == 200, (kind.name, got.text)
            listed = await http.get(f"/meshes/default/{kind.plural}" if kind.mesh_scoped else f"/{kind.plural}")
            assert listed.json()["total"] == 1


@pytest.mark.parametrize("role", ["global", "zone"])
async def test_resources_index_reports_write_rules(store: MemoryStore, role: Role) -> None:
    async with api_client(store, role=role) as http:
        body = (await http.get("/_resources")).json()
    by_name = {r["name"]: r for r in body["resources"]}
    assert set(by_name) == {k.name for k in all_kinds()}
    for kind in all_kinds():
        entry = by_name[kind.name]
        assert entry["path"] == kind.plural
        assert entry["singular"] == kind.singular
        assert entry["scope"] == kind.scope.value
        assert entry["readOnly"] is (not writable(kind, role))
    assert by_name["Mesh"]["pluralDisplayName"] == "Meshes"
    assert [r["name"] for r in body["resources"]] == sorted(by_name)


async def test_zone_refuses_to_edit_what_the_global_synced(store: MemoryStore) -> None:
    kind = next(k for k in all_kinds() if k.writable_on_zone and k.mesh_scoped)
    doc = DOCS[kind.name]()
    doc["labels"] = {LABEL_ORIGIN: "global"}
    await store.apply_sync(kind.name, [codec.load(doc)], [])
    async with api_client(store, role="zone") as http:
        put = await http.put(item_path(kind, doc), json=DOCS[kind.name]())
        deleted = await http.delete(item_path(kind, doc))
    for response in (put, deleted):
        assert response.status_code == 405
        assert "only from the GLOBAL control plane" in response.json()["detail"]
    assert (await store.get(codec.load(doc).key)).meta.labels[LABEL_ORIGIN] == "global"


async def test_global_refuses_to_edit_what_a_zone_synced(store: MemoryStore) -> None:
    kind = next(k for k in all_kinds() if k.writable_on_global and k.mesh_scoped)
    doc = DOCS[kind.name]()
    doc["labels"] = {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
    await store.apply_sync(kind.name, [codec.load(doc)], [])
    async with api_client(store, role="global") as http:
        put = await http.put(item_path(kind, doc), json=DOCS[kind.name]())
        deleted = await http.delete(item_path(kind, doc))
    assert (put.status_code, deleted.status_code) == (405, 405)
    assert "ZONE control plane" in put.json()["detail"]


async def test_zone_marks_what_users_create_there(store: MemoryStore) -> None:
    kind = next(k for k in all_kinds() if k.writable_on_zone and k.mesh_scoped)
    doc = DOCS[kind.name]()
    doc["labels"] = {"team": "edge", LABEL_ORIGIN: "global"}
    async with api_client(store, role="zone") as http:
        assert (await http.put(item_path(kind, doc), json=doc)).status_code == 201
        labels = (await http.get(item_path(kind, doc))).json()["labels"]
    assert labels == {"team": "edge", LABEL_ORIGIN: "zone"}


async def test_zone_still_rejects_an_origin_that_is_no_origin(store: MemoryStore) -> None:
    kind = next(k for k in all_kinds() if k.writable_on_zone and k.mesh_scoped)
    doc = DOCS[kind.name]()
    doc["labels"] = {LABEL_ORIGIN: "mars"}
    async with api_client(store, role="zone") as http:
        response = await http.put(item_path(kind, doc), json=doc)
    assert response.status_code == 400
    assert [p["field"] for p in response.json()["invalid_parameters"]] == [f'labels["{LABEL_ORIGIN}"]']
