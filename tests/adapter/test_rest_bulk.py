"""`POST /_apply` over a real socket: many resources in one request, all stored or none, every failure named."""

from __future__ import annotations

import pathlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest

from meshgate.apply_batch import APPLY_PATH
from meshgate.resources import codec, kinds
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, ResourceKey
from meshgate.rest import bulk
from meshgate.rest.body import Bounds
from meshgate.rest.errors import ZONE_READ_ONLY_MESSAGE
from meshgate.store.memory import MemoryStore
from meshgate.store.protocol import ResourceStore
from tests.rest_support import api_client, dataplane, gateway, invalid_gateway, mesh, route
from tests.store_support import BACKENDS, next_batch, open_backend

# Deadlock guard for the thread handshake below; not a speed assertion.
DEADLOCK_GUARD = 10.0


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[ResourceStore]:
    backend = await open_backend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.close()


async def apply(http: httpx.AsyncClient, *docs: dict[str, Any]) -> httpx.Response:
    return await http.post(APPLY_PATH, json={"items": list(docs)})


async def stored(store: ResourceStore, kind: str) -> list[str]:
    return [r.meta.name for r in (await store.list(kind)).items]


async def test_one_request_creates_a_mesh_and_what_is_in_it_then_updates(store: ResourceStore) -> None:
    """The routes' mesh is created by the same batch; the answer lists every item in order; applying the same
    batch again updates each, keeping its creation time."""
    docs = [mesh(), gateway(), *(route(f"web-{i}") for i in range(40))]
    async with api_client(store) as http:
        async with store.changes.subscribe() as sub:
            first = await apply(http, *docs)
            batch = await next_batch(sub)
        assert first.status_code == 200, first.text
        assert [(i["type"], i["mesh"], i["name"], i["status"]) for i in first.json()["items"]] == [
            ("Mesh", "", "default", "created"),
            ("MeshGateway", "default", "edge", "created"),
            *(("MeshGatewayRoute", "default", f"web-{i}", "created") for i in range(40)),
        ]
        # One transaction, one event batch: every key at once.
        assert set(batch) == {kinds.MESH, kinds.MESH_GATEWAY, kinds.MESH_GATEWAY_ROUTE}
        assert len(batch[kinds.MESH_GATEWAY_ROUTE] or ()) == 40
        before = await store.get(ResourceKey(kinds.MESH_GATEWAY_ROUTE, "default", "web-7"))
        again = await apply(http, *docs)
        assert again.status_code == 200, again.text
        assert {i["status"] for i in again.json()["items"]} == {"updated"}
        got = (await http.get("/meshes/default/meshgatewayroutes/web-7")).json()
    after = await store.get(before.key)
    assert after.meta.creation_time == before.meta.creation_time
    assert after.meta.version != before.meta.version
    assert got["name"] == "web-7"
    assert len(await stored(store, kinds.MESH_GATEWAY_ROUTE)) == 40


async def test_every_failing_resource_is_named_with_its_fields_and_nothing_is_stored(store: ResourceStore) -> None:
    """A valid Mesh and route, a gateway with several violations, a route in a mesh that exists nowhere, an
    item without a type and a repeated key: one 400 naming each, and not even the valid items are stored."""
    with pytest.raises(ValidationError) as info:
        codec.load(invalid_gateway())
    async with api_client(store) as http:
        response = await apply(
            http,
            mesh(),
            route("good"),
            invalid_gateway(),
            route("lost", mesh="ghost"),
            {"name": "anonymous"},
            route("good"),
        )
        assert response.status_code == 400
        body = response.json()
        assert (body["type"], body["title"]) == ("/std-errors", "Could not apply resources")
        assert body["detail"] == "4 of 6 resources are not valid; nothing was stored"
        fields = [(p["field"], p["reason"]) for p in body["invalid_parameters"]]
        expected_gateway = [(f"items[2].{v.field}", v.message) for v in info.value.violations]
        assert fields == [
            *expected_gateway,
            ("items[3].mesh", "mesh of name ghost is not found"),
            ("items[4].type", "is required"),
            ("items[5]", "repeats items[1]: each resource at most once"),
        ]
        named = [(r["index"], r["type"], r["mesh"], r["name"]) for r in body["resources"]]
        assert named == [
            (2, "MeshGateway", "default", "edge"),
            (3, "MeshGatewayRoute", "ghost", "lost"),
            (4, "", "", "anonymous"),
            (5, "MeshGatewayRoute", "default", "good"),
        ]
        # Per resource, fields are the resource's own, as a PUT of it would name them.
        gateway_fields = [(p["field"], p["reason"]) for p in body["resources"][0]["invalid_parameters"]]
        assert gateway_fields == [(v.field, v.message) for v in info.value.violations]
        assert body["resources"][3]["invalid_parameters"] == [
            {"field": "", "reason": "repeats items[1]: each resource at most once"}
        ]
        assert (await http.get("/meshes/default")).status_code == 404
    for kind in (kinds.MESH, kinds.MESH_GATEWAY, kinds.MESH_GATEWAY_ROUTE):
        assert await stored(store, kind) == []


async def test_the_body_must_hold_items(store: ResourceStore) -> None:
    async with api_client(store) as http:
        for body, reason in [
            ({"resources": []}, '"items": an array of resources'),
            ({"items": {}}, '"items": an array of resources'),
            ({"items": []}, "no resources to apply"),
        ]:
            response = await http.post(APPLY_PATH, json=body)
            assert response.status_code == 400, body
            assert reason in response.json()["detail"]
        not_object = await apply(http, mesh(), "Mesh")  # type: ignore[arg-type]
        assert not_object.status_code == 400
        assert not_object.json()["invalid_parameters"] == [{"field": "items[1]", "reason": "must be an object"}]
        odd_type = await apply(http, {"type": ["Mesh"], "name": "m"})
        assert odd_type.status_code == 400
        assert odd_type.json()["invalid_parameters"] == [{"field": "items[0].type", "reason": "unknown type ['Mesh']"}]


async def test_zone_refuses_global_owned_kinds_by_name_and_stores_nothing(store: ResourceStore) -> None:
    await store.create(codec.load(mesh()))
    async with api_client(store, role="zone") as http:
        response = await apply(http, dataplane("dp-1"), mesh("other"), gateway())
        assert response.status_code == 405
        body = response.json()
        assert body["title"] == "Method not Allowed"
        assert ZONE_READ_ONLY_MESSAGE in body["detail"]
        assert [r["index"] for r in body["resources"]] == [1]
        assert body["invalid_parameters"][0]["field"] == "items[1]"
        assert body["invalid_parameters"][0]["reason"].startswith('Mesh "other": ')
        # What a zone may write goes in with its origin label, as a PUT would.
        ok = await apply(http, dataplane("dp-1"), dataplane("dp-2"))
        assert ok.status_code == 200, ok.text
    assert await stored(store, kinds.MESH) == ["default"]
    dp = await store.get(ResourceKey(kinds.DATAPLANE, "default", "dp-1"))
    assert dp.meta.labels[LABEL_ORIGIN] == "zone"


async def test_global_refuses_to_overwrite_what_a_zone_synced(store: ResourceStore) -> None:
    await store.create(codec.load(mesh()))
    synced = gateway("from-zone")
    synced["labels"] = {LABEL_ORIGIN: "zone", LABEL_ZONE: "zone-1"}
    await store.apply_sync(kinds.MESH_GATEWAY, [codec.load(synced)], [])
    async with api_client(store) as http:
        response = await apply(http, gateway("new"), gateway("from-zone"))
    assert response.status_code == 405
    body = response.json()
    assert [(r["index"], r["name"]) for r in body["resources"]] == [(1, "from-zone")]
    assert "ZONE control plane" in body["invalid_parameters"][0]["reason"]
    assert await stored(store, kinds.MESH_GATEWAY) == ["from-zone"]


async def test_too_many_items_or_bytes_is_413_before_anything_is_checked(
    store: ResourceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bulk, "MAX_APPLY_ITEMS", 3)
    async with api_client(store) as http:
        many = await apply(http, mesh(), *(route(f"r{i}") for i in range(3)))
        assert many.status_code == 413
        assert many.json()["detail"] == "the request has 4 resources, more than 3: send them in several requests"
        monkeypatch.setattr(bulk, "APPLY_BOUNDS", Bounds(max_bytes=500))
        sized = await apply(http, mesh(), route("r0"), route("r1"))
        assert sized.status_code == 413
        assert sized.json()["detail"] == "the body is larger than 500 bytes"

        # Without a Content-Length (chunked), the stream is cut off at the bound too.
        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"items": ['
            for _ in range(100):
                yield b'{"type": "Mesh", "name": "padding-padding-padding"},'
            yield b"{}]}"

        chunked = await http.post(APPLY_PATH, content=chunks())
        assert chunked.status_code == 413
        assert chunked.json()["detail"] == "the body is larger than 500 bytes"
        ok = await apply(http, mesh(), route("r0"))
        assert ok.status_code == 200, ok.text
    assert await stored(store, kinds.MESH_GATEWAY_ROUTE) == ["r0"]


async def test_the_loop_answers_while_a_batch_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation holds until an index request has been answered: were it on the event loop, that answer could
    never come (the request would then fail after the deadlock guard)."""
    started, answered = threading.Event(), threading.Event()
    real = bulk.BulkApply._validate

    def validate(self: bulk.BulkApply, items: list[Any]) -> None:
        started.set()
        assert answered.wait(DEADLOCK_GUARD), "no index answer while the batch was validated"
        real(self, items)

    monkeypatch.setattr(bulk.BulkApply, "_validate", validate)
    store = MemoryStore()
    async with api_client(store) as http, anyio.create_task_group() as tg:
        results: list[httpx.Response] = []

        async def bulk_apply() -> None:
            results.append(await apply(http, mesh(), *(route(f"r{i}") for i in range(100))))

        tg.start_soon(bulk_apply)
        assert await anyio.to_thread.run_sync(started.wait, DEADLOCK_GUARD)
        assert (await http.get("/")).status_code == 200
        answered.set()
    assert results[0].status_code == 200, results[0].text
    assert (await store.list(kinds.MESH_GATEWAY_ROUTE, size=1)).total == 100
