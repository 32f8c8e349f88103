"""Kuma's offset paging: `size`, `offset`, and `next` as the full URL of the following page."""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator

import httpx
import pytest

from meshgate.resources import codec
from meshgate.store.protocol import ResourceStore
from tests.rest_support import api_client, gateway, mesh
from tests.store_support import BACKENDS, open_backend

NAMES = [f"gw-{i}" for i in range(5)]


def base(http: httpx.AsyncClient) -> str:
    return str(http.base_url).rstrip("/")


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[ResourceStore]:
    backend = await open_backend(request.param, tmp_path)
    try:
        await backend.create(codec.load(mesh()))
        await backend.create(codec.load(mesh("other")))
        for name in NAMES:
            await backend.create(codec.load(gateway(name)))
        await backend.create(codec.load(gateway("gw-x", mesh="other")))
        yield backend
    finally:
        await backend.close()


async def test_next_links_walk_every_page(store: ResourceStore) -> None:
    async with api_client(store) as http:
        first = (await http.get("/meshes/default/meshgateways", params={"size": 2})).json()
        assert first["total"] == 5
        assert first["next"] == f"{base(http)}/meshes/default/meshgateways?offset=2&size=2"
        seen = [i["name"] for i in first["items"]]
        link = first["next"]
        pages = 1
        while link is not None:
            page = (await http.get(link)).json()
            seen += [i["name"] for i in page["items"]]
            link = page["next"]
            pages += 1
    assert seen == NAMES
    assert pages == 3


async def test_default_page_holds_everything_and_has_no_next(store: ResourceStore) -> None:
    async with api_client(store) as http:
        body = (await http.get("/meshes/default/meshgateways")).json()
    assert body["total"] == 5
    assert len(body["items"]) == 5
    assert body["next"] is None


async def test_next_keeps_other_query_parameters(store: ResourceStore) -> None:
    async with api_client(store) as http:
        body = (await http.get("/meshes", params={"size": 1, "format": "universal"})).json()
    assert body["next"] == f"{base(http)}/meshes?format=universal&offset=1&size=1"


async def test_listing_across_meshes(store: ResourceStore) -> None:
    async with api_client(store) as http:
        body = (await http.get("/meshgateways", params={"size": 4, "offset": 3})).json()
    assert body["total"] == 6
    assert [(i["mesh"], i["name"]) for i in body["items"]] == [
        ("default", "gw-3"),
        ("default", "gw-4"),
        ("other", "gw-x"),
    ]
    assert body["next"] is None


@pytest.mark.parametrize(
    ("query", "field", "detail", "reason"),
    [
        ({"size": "ten"}, "size", "Invalid page size", "invalid format"),
        (
            {"size": "1001"},
            "size",
            "Invalid page size",
            "invalid page size of 1001. Maximum page size is 1000",
        ),
        ({"size": "0"}, "size", "Invalid page size", "invalid page size of 0. Minimum page size is 1"),
        ({"offset": "x"}, "offset", "Invalid offset", "Invalid format"),
        ({"offset": "-1"}, "offset", "Invalid offset", "Invalid format"),
    ],
)
async def test_bad_paging_parameters_are_400(
    store: ResourceStore, query: dict[str, str], field: str, detail: str, reason: str
) -> None:
    async with api_client(store) as http:
        response = await http.get("/meshes/default/meshgateways", params=query)
    assert response.status_code == 400
    assert response.json() == {
        "type": "/std-errors",
        "status": 400,
        "title": "Could not retrieve resources",
        "detail": detail,
        "invalid_parameters": [{"field": field, "reason": reason}],
        "details": detail,
        "causes": [{"field": field, "message": reason}],
    }


async def test_offset_past_the_end_is_an_empty_last_page(store: ResourceStore) -> None:
    async with api_client(store) as http:
        response = await http.get("/meshes", params={"offset": 50})
    assert response.status_code == 200
    assert response.json() == {"total": 2, "items": [], "next": None}


async def test_next_uses_the_host_the_client_asked_for(store: ResourceStore) -> None:
    async with api_client(store) as http:
        response = await http.get("/meshes", params={"size": 1}, headers={"Host": "cp.example:5681"})
    assert response.json()["next"] == "http://cp.example:5681/meshes?offset=1&size=1"
