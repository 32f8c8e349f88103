"""Bounded input on the HTTP API: big YAML bodies are parsed off the event loop, and every malformed input
(too deep, too large, encoded, absurd numbers, too many labels) is a 4xx with Kuma's error body naming the
field, never a 500."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest

from global_cp.tokens import token_route
from meshgate.rest import body
from meshgate.rest.body import MAX_BODY_BYTES, MAX_DEPTH, PARSE_THREADS
from meshgate.store.memory import MemoryStore
from meshgate.tokens import ZoneTokens
from tests.rest_support import api_client, dataplane, mesh
from tests.support.wait import eventually

# Deadlock guard, never a speed assertion.
GUARD = 60.0


@asynccontextmanager
async def global_api() -> AsyncIterator[httpx.AsyncClient]:
    """The global's API with the default Mesh (a context manager, not a fixture: the server's task group
    must be entered and left in the test's own task)."""
    store = MemoryStore()
    async with api_client(store) as http:
        assert (await http.put("/meshes/default", json=mesh())).status_code == 201
        yield http


@asynccontextmanager
async def zone_api() -> AsyncIterator[httpx.AsyncClient]:
    store = MemoryStore()
    async with api_client(store, role="global") as seed:
        assert (await seed.put("/meshes/default", json=mesh())).status_code == 201
    async with api_client(store, role="zone") as http:
        yield http


def big_yaml(size: int) -> bytes:
    """A Mesh document of about `size` bytes whose extra field holds many small mappings (slow to build)."""
    lines = ["type: Mesh", "name: default", "padding:"]
    total = sum(len(line) + 1 for line in lines)
    i = 0
    while total < size - 100:
        line = f"  k{i}: {{a: [1, 2], b: {{c: d}}}}"
        lines.append(line)
        total += len(line) + 1
        i += 1
    return "\n".join(lines).encode()


def kuma_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    doc: dict[str, Any] = response.json()
    assert doc["type"] == "/std-errors"
    assert doc["status"] == status
    return doc


def fields(doc: dict[str, Any]) -> list[str]:
    return [p["field"] for p in doc.get("invalid_parameters", [])]


async def test_the_loop_answers_while_several_big_yaml_bodies_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Index requests complete while 1 MiB YAML bodies are still being parsed, and at most PARSE_THREADS
    parses run at once. Before: the parse held the loop, so nothing answered until every parse was done."""
    async with global_api() as http:
        real = body.parse_document
        lock = threading.Lock()
        running = started = finished = peak = 0

        def parse(raw: bytes, *bounds: body.Bounds) -> dict[str, object]:
            nonlocal running, started, finished, peak
            with lock:
                running += 1
                started += 1
                peak = max(peak, running)
            try:
                return real(raw, *bounds)
            finally:
                with lock:
                    running -= 1
                    finished += 1

        monkeypatch.setattr(body, "parse_document", parse)
        payload = big_yaml(MAX_BODY_BYTES - 1024)
        statuses: list[int] = []
        puts = PARSE_THREADS + 1

        async def put() -> None:
            # Its own client and timeout: the parses queue behind each other, and the last waits for them all.
            async with httpx.AsyncClient(base_url=http.base_url, timeout=GUARD) as slow:
                r = await slow.put("/meshes/default", content=payload, headers={"Content-Type": "application/yaml"})
            statuses.append(r.status_code)

        with anyio.fail_after(GUARD):
            async with anyio.create_task_group() as tg:
                for _ in range(puts):
                    tg.start_soon(put)
                await eventually(lambda: started > 0, what="a parse to start", timeout=GUARD)
                # How many parses were running in worker threads as each index answer arrived. A parse on the
                # event loop (as before) would make this 0 for every answer: nothing else runs during it.
                parses_during_answers: list[int] = []
                for _ in range(5):
                    index = await http.get("/")
                    assert index.status_code == 200
                    parses_during_answers.append(running)
        assert all(n > 0 for n in parses_during_answers), parses_during_answers
        assert finished == started == puts
        assert peak <= PARSE_THREADS
        assert statuses == [400] * puts  # `padding` is no Mesh field: the body was parsed, then refused


async def test_nesting_deeper_than_the_limit_is_a_400() -> None:
    async with global_api() as http:
        deep = b'{"type": "Mesh", "name": "default", "x": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
        doc = kuma_error(await http.put("/meshes/default", content=deep), 400)
        assert doc["detail"] == f"the body nests deeper than {MAX_DEPTH} levels"
        very_deep_yaml = b"type: Mesh\nname: default\nx: " + b"[" * 5000 + b"]" * 5000
        kuma_error(await http.put("/meshes/default", content=very_deep_yaml), 400)


async def test_a_body_over_the_limit_is_a_413() -> None:
    async with global_api() as http:
        doc = kuma_error(await http.put("/meshes/default", content=b" " * (MAX_BODY_BYTES + 1)), 413)
        assert str(MAX_BODY_BYTES) in doc["detail"]


@pytest.mark.parametrize("encoding", ["bogus", "gzip", "br, gzip"])
async def test_an_encoded_body_is_a_415_naming_the_encoding(encoding: str) -> None:
    async with global_api() as http:
        r = await http.put("/meshes/default", content=b"\x1f\x8bnot gzip", headers={"Content-Encoding": encoding})
        assert encoding in kuma_error(r, 415)["detail"]


@pytest.mark.parametrize(
    "port",
    ["9" * 5001, '"' + "9" * 5001 + '"', "-" + "9" * 5001, "1e999", "99999999999999999999999"],
)
async def test_an_absurd_port_is_a_400_on_that_field(port: str) -> None:
    async with zone_api() as http:
        raw = (
            '{"type": "Dataplane", "mesh": "default", "name": "dp-1", "networking": {"address": "10.0.0.1",'
            f' "inbound": [{{"port": {port}, "tags": {{"kuma.io/service": "web"}}}}]}}}}'
        )
        doc = kuma_error(await http.put("/meshes/default/dataplanes/dp-1", content=raw), 400)
        assert fields(doc) == ["networking.inbound[0].port"]


async def test_an_absurd_port_in_yaml_is_a_400_on_that_field() -> None:
    async with zone_api() as http:
        raw = (
            "type: Dataplane\nmesh: default\nname: dp-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n"
            f"  - port: {'9' * 5001}\n    tags: {{kuma.io/service: web}}\n"
        )
        doc = kuma_error(await http.put("/meshes/default/dataplanes/dp-1", content=raw.encode()), 400)
        assert fields(doc) == ["networking.inbound[0].port"]


async def test_too_many_labels_is_a_400_on_labels() -> None:
    async with zone_api() as http:
        doc = dataplane("dp-1", **{f"l{i}": "v" for i in range(65)})
        refused = kuma_error(await http.put("/meshes/default/dataplanes/dp-1", json=doc), 400)
        assert fields(refused) == ["labels"]
        long_value = dataplane("dp-1", team="x" * 64)
        assert fields(kuma_error(await http.put("/meshes/default/dataplanes/dp-1", json=long_value), 400)) == [
            'labels["team"]'
        ]


async def test_a_body_of_many_unknown_fields_lists_the_first_hundred() -> None:
    async with global_api() as http:
        doc: dict[str, Any] = {**mesh(), **{f"f{i}": 1 for i in range(5000)}}
        refused = kuma_error(await http.put("/meshes/default", json=doc), 400)
        assert len(refused["invalid_parameters"]) == 101
        assert refused["invalid_parameters"][-1]["reason"] == "and 4900 more violations"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("offset=-1", "offset"),
        ("offset=abc", "offset"),
        ("offset=" + "9" * 5001, "offset"),
        ("offset=" + "0" * 5001, "offset"),
        ("offset=2147483648", "offset"),
        ("size=0", "size"),
        ("size=1001", "size"),
        ("size=" + "9" * 5001, "size"),
        ("size=%2B5", None),  # "+5": Go's Atoi takes a sign
        ("size= 5", "size"),
        ("size=5_0", "size"),
    ],
)
async def test_paging_numbers_are_validated(query: str, field: str | None) -> None:
    async with global_api() as http:
        r = await http.get(f"/meshes?{query}")
        if field is None:
            assert r.status_code == 200
        else:
            assert fields(kuma_error(r, 400)) == [field]


async def test_the_zone_token_endpoint_has_the_same_bounds() -> None:
    store = MemoryStore()
    async with api_client(store, extra_routes=[token_route(ZoneTokens(store))]) as http:
        deep = b'{"zone": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert "nests deeper" in kuma_error(await http.post("/tokens/zone", content=deep), 400)["detail"]
        huge = {"zone": "zone-1", "validFor": "9" * 5001 + "h"}
        assert fields(kuma_error(await http.post("/tokens/zone", json=huge), 400)) == ["validFor"]
        encoded = await http.post("/tokens/zone", content=b"{}", headers={"Content-Encoding": "gzip"})
        kuma_error(encoded, 415)
