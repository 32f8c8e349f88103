"""The resource API over a real socket: create, read, update, delete and the Kuma error bodies."""

from __future__ import annotations

import json
import pathlib
from collections.abc import AsyncIterator

import pytest
import yaml
from structlog.testing import capture_logs

from meshgate.resources import codec
from meshgate.resources.errors import ValidationError
from meshgate.store.protocol import ResourceStore
from tests.rest_support import api_client, dataplane, gateway, invalid_gateway, mesh, route
from tests.store_support import BACKENDS, open_backend

GW_PATH = "/meshes/default/meshgateways"


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[ResourceStore]:
    backend = await open_backend(request.param, tmp_path)
    try:
        yield backend
    finally:
        await backend.close()


def expected_violations(doc: dict[str, object]) -> list[dict[str, str]]:
    """What the codec itself reports for `doc`: the API must list exactly these, in order."""
    with pytest.raises(ValidationError) as info:
        codec.load(doc)
    return [{"field": v.field, "reason": v.message} for v in info.value.violations]


async def test_each_request_is_logged_once_with_its_status(store: ResourceStore) -> None:
    with capture_logs() as logs:
        async with api_client(store) as http:
            await http.get("/meshes/nope")
            await http.put("/meshes/default", json=mesh())
    requests = [e for e in logs if e["event"] == "request"]
    assert [(e["method"], e["path"], e["status"]) for e in requests] == [
        ("GET", "/meshes/nope", 404),
        ("PUT", "/meshes/default", 201),
    ]


async def test_index_describes_the_control_plane(store: ResourceStore) -> None:
    async with api_client(store) as http:
        body = (await http.get("/")).json()
    assert body["product"] == "meshgate"
    assert (body["tagline"], body["product"]) == ("Kuma", "meshgate")  # kumactl 2.7 checks the tagline
    assert body["basedOnKuma"] == "2.7"
    assert body["version"]
    assert body["instanceId"].startswith(body["hostname"])
    assert "clusterId" in body


async def test_mesh_create_then_update(store: ResourceStore) -> None:
    """First PUT creates (201), the second updates (200); labels from the body are kept."""
    async with api_client(store) as http:
        created = await http.put("/meshes/default", json=mesh(team="edge"))
        updated = await http.put("/meshes/default", json=mesh(team="core"))
        got = await http.get("/meshes/default")
    assert (created.status_code, updated.status_code) == (201, 200)
    assert got.status_code == 200
    body = got.json()
    assert body["type"] == "Mesh"
    assert body["name"] == "default"
    assert body["labels"]["team"] == "core"
    assert body["creationTime"]
    assert body["modificationTime"]


async def test_mesh_scoped_kinds_round_trip(store: ResourceStore) -> None:
    async with api_client(store) as http:
        assert (await http.put("/meshes/default", json=mesh())).status_code == 201
        for path, doc in [
            (f"{GW_PATH}/edge", gateway()),
            ("/meshes/default/meshgatewayroutes/web", route()),
        ]:
            response = await http.put(path, json=doc)
            assert response.status_code == 201, response.text
            got = (await http.get(path)).json()
            assert got == codec.encode(await store.get(codec.load(doc).key))
            assert got["mesh"] == "default"
            assert got["type"] == doc["type"]


async def test_yaml_body_is_accepted(store: ResourceStore) -> None:
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        response = await http.put(
            f"{GW_PATH}/edge",
            content=yaml.safe_dump(gateway()),
            headers={"Content-Type": "application/yaml"},
        )
        assert response.status_code == 201, response.text
        assert (await http.get(f"{GW_PATH}/edge")).json()["conf"]["listeners"][0]["port"] == 8080


async def test_name_and_mesh_default_from_the_path(store: ResourceStore) -> None:
    doc = gateway()
    del doc["name"], doc["mesh"], doc["type"]
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        assert (await http.put(f"{GW_PATH}/edge", json=doc)).status_code == 201
        got = (await http.get(f"{GW_PATH}/edge")).json()
    assert (got["type"], got["mesh"], got["name"]) == ("MeshGateway", "default", "edge")


async def test_unknown_resource_is_a_kuma_404(store: ResourceStore) -> None:
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        got = await http.get(f"{GW_PATH}/nope")
        deleted = await http.delete(f"{GW_PATH}/nope")
        no_mesh = await http.get("/meshes/nope")
    assert got.status_code == 404
    assert got.json() == {
        "type": "/std-errors",
        "status": 404,
        "title": "Could not retrieve a resource",
        "detail": "Not found",
        "details": "Not found",
    }
    assert deleted.status_code == 404
    assert deleted.json()["title"] == "Could not delete a resource"
    assert no_mesh.status_code == 404


async def test_path_mesh_that_does_not_exist_is_404_on_reads(store: ResourceStore) -> None:
    async with api_client(store) as http:
        listed = await http.get("/meshes/ghost/meshgateways")
        got = await http.get("/meshes/ghost/meshgateways/edge")
    for response in (listed, got):
        assert response.status_code == 404
        assert response.json()["title"] == "Failed to retrieve Mesh"


async def test_invalid_resource_lists_every_violation_and_stores_nothing(store: ResourceStore) -> None:
    doc = invalid_gateway()
    expected = expected_violations(doc)
    assert len(expected) >= 2, "the fixture should break several rules"
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        response = await http.put(f"{GW_PATH}/edge", json=doc)
        after = await http.get(GW_PATH)
    assert response.status_code == 400
    assert response.json() == {
        "type": "/std-errors",
        "status": 400,
        "title": "Could not process a resource",
        "detail": "Resource is not valid",
        "invalid_parameters": expected,
        "details": "Resource is not valid",
        "causes": [{"field": p["field"], "message": p["reason"]} for p in expected],
    }
    assert after.json()["total"] == 0
    assert (await store.list("MeshGateway")).total == 0


async def test_invalid_update_keeps_the_stored_version(store: ResourceStore) -> None:
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        await http.put(f"{GW_PATH}/edge", json=gateway(port=8080))
        before = (await http.get(f"{GW_PATH}/edge")).json()
        assert (await http.put(f"{GW_PATH}/edge", json=invalid_gateway())).status_code == 400
        assert (await http.get(f"{GW_PATH}/edge")).json() == before


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("name", "other", "name from the URL has to be the same as in body"),
        ("mesh", "other", "mesh from the URL has to be the same as in body"),
        ("type", "MeshGatewayRoute", "type from the URL has to be the same as in body"),
    ],
)
async def test_body_contradicting_the_path_is_400(store: ResourceStore, field: str, value: str, reason: str) -> None:
    doc = gateway()
    doc[field] = value
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        await http.put("/meshes/other", json=mesh("other"))
        response = await http.put(f"{GW_PATH}/edge", json=doc)
        assert (await http.get(f"{GW_PATH}/edge")).status_code == 404
    assert response.status_code == 400
    assert {"field": field, "reason": reason} in response.json()["invalid_parameters"]


async def test_path_mismatch_and_spec_violations_are_reported_together(store: ResourceStore) -> None:
    doc = invalid_gateway(name="other")
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        response = await http.put(f"{GW_PATH}/edge", json=doc)
    params = response.json()["invalid_parameters"]
    assert params[0] == {"field": "name", "reason": "name from the URL has to be the same as in body"}
    assert params[1:] == expected_violations(doc)


async def test_missing_mesh_is_400_naming_it(store: ResourceStore) -> None:
    async with api_client(store) as http:
        response = await http.put("/meshes/ghost/meshgateways/edge", json=gateway(mesh="ghost"))
    assert response.status_code == 400
    assert response.json() == {
        "type": "/std-errors",
        "status": 400,
        "title": "Could not create a resource",
        "detail": "Mesh is not found",
        "invalid_parameters": [{"field": "mesh", "reason": "mesh of name ghost is not found"}],
        "details": "Mesh is not found",
        "causes": [{"field": "mesh", "message": "mesh of name ghost is not found"}],
    }
    assert (await store.list("MeshGateway")).total == 0


@pytest.mark.parametrize("body", [b"", b"{not json: [", b"- just\n- a list\n", "\xff".encode("latin-1")])
async def test_unparsable_body_is_400(store: ResourceStore, body: bytes) -> None:
    async with api_client(store) as http:
        response = await http.put("/meshes/default", content=body)
    assert response.status_code == 400
    assert response.json()["title"] == "Bad Request"
    assert response.json()["type"] == "/std-errors"


async def test_unknown_origin_label_is_400(store: ResourceStore) -> None:
    async with api_client(store) as http:
        response = await http.put("/meshes/default", json=mesh(**{"kuma.io/origin": "mars"}))
    assert response.status_code == 400
    assert response.json()["invalid_parameters"] == [
        {"field": 'labels["kuma.io/origin"]', "reason": 'unknown resource origin "mars"'}
    ]


async def test_delete_answers_empty_object(store: ResourceStore) -> None:
    async with api_client(store) as http:
        await http.put("/meshes/default", json=mesh())
        await http.put(f"{GW_PATH}/edge", json=gateway())
        response = await http.delete(f"{GW_PATH}/edge")
        assert (response.status_code, response.json()) == (200, {})
        assert (await http.get(f"{GW_PATH}/edge")).status_code == 404


async def test_deleting_a_mesh_deletes_its_resources(store: ResourceStore) -> None:
    async with api_client(store) as http:
        for name in ("default", "other"):
            await http.put(f"/meshes/{name}", json=mesh(name))
            await http.put(f"/meshes/{name}/meshgateways/edge", json=gateway(mesh=name))
            await http.put(f"/meshes/{name}/meshgatewayroutes/web", json=route(mesh=name))
        assert (await http.delete("/meshes/default")).status_code == 200
        gateways = (await http.get("/meshgateways")).json()
        routes = (await http.get("/meshgatewayroutes")).json()
        assert (await http.get("/meshes/default")).status_code == 404
    assert [(g["mesh"], g["name"]) for g in gateways["items"]] == [("other", "edge")]
    assert [(r["mesh"], r["name"]) for r in routes["items"]] == [("other", "web")]


async def test_unknown_path_and_method_get_kuma_bodies(store: ResourceStore) -> None:
    async with api_client(store) as http:
        missing = await http.get("/no/such/path")
        wrong_method = await http.post("/meshes")
    assert missing.status_code == 404
    assert missing.json()["type"] == "/std-errors"
    assert wrong_method.status_code == 405
    assert "GET" in wrong_method.headers["Allow"]
    assert json.loads(wrong_method.text)["status"] == 405


async def test_dataplane_is_written_on_the_zone_and_read_on_both(store: ResourceStore) -> None:
    async with api_client(store, role="zone") as zone:
        await store.create(codec.load(mesh()))
        response = await zone.put("/meshes/default/dataplanes/edge-1", json=dataplane())
        assert response.status_code == 201, response.text
        got = (await zone.get("/meshes/default/dataplanes/edge-1")).json()
    assert got["labels"]["kuma.io/origin"] == "zone"
    async with api_client(store, role="global") as global_:
        assert (await global_.get("/meshes/default/dataplanes/edge-1")).status_code == 200
        assert (await global_.get("/dataplanes")).json()["total"] == 1
