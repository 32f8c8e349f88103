"""Store failures at the HTTP boundary: 503 when the store is unreachable, retries and 409 on races."""

from __future__ import annotations

import pathlib
import sqlite3

import anyio
import pytest

from meshgate.resources import codec
from meshgate.store.sqlite import SqliteStore
from tests.rest_support import api_client, gateway, mesh

GW = "/meshes/default/meshgateways/edge"


async def test_closed_store_is_503(tmp_path: pathlib.Path) -> None:
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    await store.close()
    async with api_client(store) as http:
        for response in (await http.get("/meshes"), await http.put("/meshes/default", json=mesh())):
            assert response.status_code == 503
            body = response.json()
            assert body["type"] == "/std-errors"
            assert body["title"] == "Service unavailable"
            assert "store is unavailable" in body["detail"]


async def test_write_blocked_by_another_process_is_503_and_changes_nothing(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "db.sqlite"
    store = await SqliteStore.open(path, busy_timeout=0.05)
    try:
        await store.create(codec.load(mesh()))
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")  # another writer holds the database's write lock
            async with api_client(store) as http:
                blocked = await http.put(GW, json=gateway())
                other.execute("ROLLBACK")
                assert blocked.status_code == 503
                assert (await http.get(GW)).status_code == 404
                assert (await http.put(GW, json=gateway())).status_code == 201
        finally:
            other.close()
    finally:
        await store.close()


@pytest.mark.parametrize("writers", [12])
async def test_concurrent_writers_of_one_key(tmp_path: pathlib.Path, writers: int) -> None:
    """Racing PUTs each either win (one create, then updates) or get Kuma's 409; none is lost silently."""
    store = await SqliteStore.open(tmp_path / "db.sqlite")
    statuses: dict[str, int] = {}
    try:
        await store.create(codec.load(mesh()))
        async with api_client(store) as http:

            async def put(i: int) -> None:
                doc = gateway()
                doc["labels"] = {"writer": str(i)}
                response = await http.put(GW, json=doc)
                if response.status_code == 409:
                    assert response.json()["title"] == "Conflict"
                statuses[str(i)] = response.status_code

            async with anyio.create_task_group() as tg:
                for i in range(writers):
                    tg.start_soon(put, i)
            final = (await http.get(GW)).json()
    finally:
        await store.close()
    assert set(statuses.values()) <= {200, 201, 409}
    assert list(statuses.values()).count(201) == 1
    winners = {w for w, status in statuses.items() if status in (200, 201)}
    assert final["labels"]["writer"] in winners
