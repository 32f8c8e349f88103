"""A global on Redis: refused on a Redis that persists nothing, and nothing lost across a Redis restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import CPProcess, ProcessGroup, global_argv
from tests.support.redis_server import redis_server
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}
ROUTES = 25


def route(name: str) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": f"/{name}"}}],
                        "backends": [{"destination": {"kuma.io/service": "backend"}}],
                    }
                ]
            }
        },
    }


async def test_a_global_refuses_a_redis_that_persists_nothing(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", durable=False) as redis:
        refused = CPProcess("global_cp", global_argv("--store", redis.url), tmp_path, "global")
        try:
            await eventually(lambda: refused.proc.poll() is not None, what="the global to exit", timeout=30)
        finally:
            code = refused.stop()
    assert code == 1
    lines = [line for line in refused.log_path.read_text().splitlines() if "--store-allow-volatile" in line]
    assert len(lines) == 1, refused.log_path.read_text()
    assert "Redis persists nothing" in lines[0]


async def test_allowed_volatility_starts_with_a_warning(procs: ProcessGroup, tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", durable=False) as redis:
        g = await procs.global_cp("global", "--store", redis.url, "--store-allow-volatile")
        async with httpx.AsyncClient(base_url=g.url(), timeout=10) as http:
            assert (await http.put("/meshes/default", json=MESH)).status_code == 201
        assert "redis.durability.volatile" in g.logs()


async def test_a_redis_restart_under_a_running_global_loses_nothing(procs: ProcessGroup, tmp_path: Path) -> None:
    """redis-server is stopped by its handle and started again on the same port and AOF directory."""
    with redis_server(tmp_path / "redis") as redis:
        g = await procs.global_cp("global", "--store", redis.url)
        names = [f"r{i}" for i in range(ROUTES)]
        async with httpx.AsyncClient(base_url=g.url(), timeout=10) as http:
            assert (await http.put("/meshes/default", json=MESH)).status_code == 201
            for name in names:
                assert (
                    await http.put(f"/meshes/default/meshgatewayroutes/{name}", json=route(name))
                ).status_code == 201
            before = (await http.get("/meshes/default/meshgatewayroutes")).json()

            redis.restart()

            async def listed() -> dict[str, Any] | None:
                r = await http.get("/meshes/default/meshgatewayroutes")
                return r.json() if r.status_code == 200 else None

            await eventually(listed, what="the global to read Redis again")
            after = await listed()
            assert after is not None
            assert after["total"] == before["total"] == ROUTES
            assert [i["name"] for i in after["items"]] == [i["name"] for i in before["items"]]
            assert [i["conf"] for i in after["items"]] == [i["conf"] for i in before["items"]]
            assert (await http.get("/meshes/default")).status_code == 200

            async def writes() -> bool:
                r = await http.put("/meshes/default/meshgatewayroutes/after", json=route("after"))
                return r.status_code == 201

            await eventually(writes, what="writes to resume")
            assert (await http.get("/meshes/default/meshgatewayroutes")).json()["total"] == ROUTES + 1
