"""/openapi.json: derived from the registry and the routes, so every served path is documented."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from meshgate.resources import registry
from meshgate.rest.app import ExtraRoute, create_api_app
from meshgate.rest.errors import ApiError
from meshgate.rest.handlers import Role
from meshgate.store.memory import MemoryStore
from tests.rest_support import api_client


async def list_zones(_: web.Request) -> web.Response:
    return web.json_response({"total": 0, "items": [], "next": None})


async def get_zone(request: web.Request) -> web.Response:
    raise ApiError(404, "Could not retrieve a resource", f"no zone {request.match_info['name']}")


EXTRA = [
    ExtraRoute("GET", "/widgets", list_zones, "List zones"),
    ExtraRoute("GET", "/widgets/{name}", get_zone, "Get a zone"),
]


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    memory = MemoryStore()
    yield memory
    await memory.close()


def served_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter") or info.get("path")
        routes.add((route.method.lower(), str(path)))
    return routes


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                found.add(value)
            else:
                found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


@pytest.mark.parametrize("role", ["global", "zone"])
async def test_every_served_route_is_documented(store: MemoryStore, role: Role) -> None:
    app = create_api_app(store, role=role, extra_routes=EXTRA)
    async with api_client(store, role=role, extra_routes=EXTRA) as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.1")
    documented = {(method, path) for path, item in doc["paths"].items() for method in item if method != "parameters"}
    assert served_routes(app) <= documented
    assert ("get", "/widgets/{name}") in documented
    assert doc["paths"]["/widgets"]["get"]["summary"] == "List zones"


async def test_document_is_self_consistent(store: MemoryStore) -> None:
    async with api_client(store, extra_routes=EXTRA) as http:
        doc = (await http.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for ref in refs(doc):
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas, ref
    for path, item in doc["paths"].items():
        declared = {p["name"] for p in item.get("parameters", [])}
        for method, op in item.items():
            if method == "parameters":
                continue
            names = declared | {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert set(re.findall(r"\{(\w+)\}", path)) <= names, (method, path)
            assert op["responses"], (method, path)
    assert set(schemas["Error"]["properties"]) >= {"type", "status", "title", "detail", "invalid_parameters"}


async def test_kinds_have_schemas_with_their_spec_fields(store: MemoryStore) -> None:
    async with api_client(store) as http:
        doc = (await http.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    for kind in registry.KINDS:
        schema = schemas[kind.name]
        assert schema["properties"]["type"]["const"] == kind.name
        spec_fields = {f.json_name for f in kind.spec_type.DESCRIPTOR.fields}
        assert spec_fields <= set(schema["properties"])
        assert schemas[kind.name + "List"]["properties"]["items"]["items"] == {
            "$ref": f"#/components/schemas/{kind.name}"
        }
    listeners = schemas["MeshGateway"]["properties"]["conf"]
    assert "$ref" in listeners


async def test_read_only_kind_documents_405(store: MemoryStore) -> None:
    async with api_client(store, role="global") as http:
        doc = (await http.get("/openapi.json")).json()
    put = doc["paths"]["/meshes/{mesh}/dataplanes/{name}"]["put"]
    assert set(put["responses"]) == {"405", "401", "403"}  # 401/403: authentication runs first


async def test_extra_routes_share_the_error_middleware(store: MemoryStore) -> None:
    async with api_client(store, extra_routes=EXTRA) as http:
        listed = await http.get("/widgets")
        missing = await http.get("/widgets/z1")
    assert listed.json() == {"total": 0, "items": [], "next": None}
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no zone z1"
    assert missing.json()["type"] == "/std-errors"


async def test_bearer_auth_is_declared_with_401_and_403_except_on_the_public_index_and_document(
    store: MemoryStore,
) -> None:
    """User tokens as an http bearer scheme, required by default; `/` and `/openapi.json` opt out."""
    async with api_client(store, role="global") as http:
        doc = (await http.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["BearerAuth"]["scheme"] == "bearer"
    assert doc["security"] == [{"BearerAuth": []}]
    assert doc["paths"]["/"]["get"]["security"] == []
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    delete = doc["paths"]["/meshes/{name}"]["delete"]
    assert {"401", "403"} <= set(delete["responses"])
