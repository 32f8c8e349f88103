"""MeshGatewayInstance on a Universal zone, end to end: the zone runs `replicas` meshgate-dp children (real
Envoys sharing the listener port), replaces a killed one, scales down, and stops them all on delete. The global
refuses the kind (405)."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest

from meshgate.testing.factory import gateway_instance
from tests.e2e.test_gateway import _mesh_in, _starts, backend_dataplane, gateway, put, route, through
from tests.support.envoy import http_backend
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

STATUS = "/meshes/default/meshgatewayinstances/edge/_status"


def instance(replicas: int, name: str = "edge", **extra: Any) -> dict[str, Any]:
    # No tags: the service tag defaults to the instance's name, `edge`, which the gateway selects.
    return gateway_instance(name, replicas=replicas, **extra)


async def get(cp: CPProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=5) as c:
        return await c.get(path)


async def status(z: CPProcess) -> dict[str, Any]:
    r = await get(z, STATUS)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def running(body: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {p["index"]: p for p in body["proxies"] if p["state"] == "running"}


async def listener_active(admin_port: int) -> bool:
    """This Envoy bound the gateway listener (SO_REUSEPORT lets every replica bind the same port)."""
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            text = (await c.get(f"http://127.0.0.1:{admin_port}/stats?filter=listener_manager")).text
    except httpx.HTTPError:
        return False
    stats = dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)
    return stats.get("listener_manager.total_listeners_active") == "1"


async def admin_down(admin_port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            await c.get(f"http://127.0.0.1:{admin_port}/ready")
    except httpx.HTTPError:
        return True
    return False


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_zone_runs_scales_heals_and_stops_gateway_replicas(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    listen = free_port()
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await put(g, "/meshes/default/meshgateways/edge", gateway(listen))
    await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route("echo-a"))

    # The global refuses it: create it in a zone.
    async with httpx.AsyncClient(base_url=g.url()) as c:
        refused = await c.put("/meshes/default/meshgatewayinstances/edge", json=instance(2))
    assert refused.status_code == 405, refused.text

    async with http_backend("echo-a") as a, http_backend("echo-b") as b:
        await eventually(lambda: _mesh_in(z), what="mesh in zone-1")
        for backend in (a, b):
            await put(z, f"/meshes/default/dataplanes/{backend.name}", backend_dataplane(backend.name, backend.port))

        # An instance no MeshGateway selects reports Kuma's NoGatewayMatched (and runs nothing: 0 replicas).
        await put(
            z, "/meshes/default/meshgatewayinstances/lonely", instance(0, "lonely", tags={"kuma.io/service": "x"})
        )
        lonely = (await get(z, "/meshes/default/meshgatewayinstances/lonely/_status")).json()
        assert lonely["conditions"][0]["reason"] == "NoGatewayMatched"

        await put(z, "/meshes/default/meshgatewayinstances/edge", instance(2))
        try:
            await _scenario(z, listen)
        finally:
            async with httpx.AsyncClient(base_url=z.url()) as c:
                await c.delete("/meshes/default/meshgatewayinstances/edge")


async def _scenario(z: CPProcess, listen: int) -> None:
    async def two_ready() -> bool:
        body = await status(z)
        return len(running(body)) == 2 and body["conditions"][0]["status"] == "True"

    await eventually(two_ready, timeout=30, what=f"two replicas Ready\n{z.logs()}")
    body = await status(z)
    assert body["conditions"][0]["reason"] == "Ready"
    assert body["replicas"] == {"desired": 2, "running": 2}
    first = running(body)
    assert {p["dataplane"] for p in first.values()} == {"edge-0", "edge-1"}
    assert len({p["adminPort"] for p in first.values()}) == 2

    # Both Envoys bound the one listener port, and traffic through it reaches the backend.
    for proxy in first.values():
        port = proxy["adminPort"]
        await eventually(lambda port=port: listener_active(port), timeout=30, what=f"listener on admin {port}")
    await eventually(lambda: _starts(through(listen, "/a/x"), "echo-a"), timeout=30, what="/a via the replicas")
    for name in ("edge-0", "edge-1"):
        assert (await get(z, f"/meshes/default/dataplanes/{name}")).status_code == 200

    # Kill one replica (our own child's child, by the pid the zone reports): it is replaced.
    victim = first[0]
    os.kill(victim["pid"], signal.SIGKILL)

    async def replaced() -> bool:
        now = running(await status(z))
        return 0 in now and now[0]["pid"] != victim["pid"] and now[0]["restarts"] >= 1

    await eventually(replaced, timeout=30, what=f"replica 0 replaced\n{z.logs()}")
    replacement = running(await status(z))[0]
    await eventually(lambda: listener_active(replacement["adminPort"]), timeout=30, what="replacement listener")
    await eventually(lambda: admin_down(victim["adminPort"]), what="the killed replica's Envoy is gone too")
    await eventually(lambda: _starts(through(listen, "/b"), "echo-b"), what="/b after the restart")

    # Scale down to 1: the highest index goes, and its Dataplane with it.
    await put(z, "/meshes/default/meshgatewayinstances/edge", instance(1))

    async def scaled_down() -> bool:
        body = await status(z)
        return [p["index"] for p in body["proxies"]] == [0] and body["conditions"][0]["status"] == "True"

    await eventually(scaled_down, timeout=30, what="scale down to one replica")
    await eventually(lambda: _status_code(z, "/meshes/default/dataplanes/edge-1", 404), what="edge-1 deregistered")
    await eventually(lambda: admin_down(first[1]["adminPort"]), what="replica 1's Envoy stopped")
    assert gone(first[1]["pid"])
    await eventually(lambda: _starts(through(listen, "/a/y"), "echo-a"), what="traffic via the remaining replica")

    # Delete the instance: nothing left running, nothing registered.
    survivor = running(await status(z))[0]
    async with httpx.AsyncClient(base_url=z.url()) as c:
        assert (await c.delete("/meshes/default/meshgatewayinstances/edge")).status_code == 200
    await eventually(lambda: _status_code(z, "/meshes/default/dataplanes/edge-0", 404), what="edge-0 deregistered")
    await eventually(lambda: admin_down(survivor["adminPort"]), what="the last Envoy stopped")
    await eventually(lambda: gone(survivor["pid"]), what="the last meshgate-dp exited")
    assert (await get(z, STATUS)).status_code == 404


async def _status_code(z: CPProcess, path: str, code: int) -> bool:
    return (await get(z, path)).status_code == code


async def test_zone_shutdown_stops_its_gateway_replicas(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await eventually(lambda: _mesh_in(z), what="mesh in zone-1")
    await put(z, "/meshes/default/meshgatewayinstances/edge", instance(1))

    async def one_running() -> bool:
        return len(running(await status(z))) == 1

    await eventually(one_running, timeout=30, what=f"one replica running\n{z.logs()}")
    body = await status(z)
    # No MeshGateway selects `edge` yet: the proxy runs, but the instance is not Ready.
    assert body["conditions"][0]["reason"] == "NoGatewayMatched"
    proxy = running(body)[0]
    await eventually(lambda: _status_code(z, "/meshes/default/dataplanes/edge-0", 200), what="edge-0 registered")

    assert z.stop() == 0  # SIGTERM: the zone stops its children before it exits
    assert gone(proxy["pid"])
    await eventually(lambda: admin_down(proxy["adminPort"]), what="the replica's Envoy stopped with the zone")
