"""Config dump of a real Envoy (meshgate-dp) on the zone and through the global over StreamXDSConfigs.

The admin address flows: meshgate-dp --admin-port -> Dataplane networking.admin.port (registered with the zone)
-> the zone fetches http://127.0.0.1:<port>/config_dump; the global finds the Dataplane's zone and asks it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.e2e.test_gateway import backend_dataplane, gateway, put, route
from tests.support.dp import zone_dp
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESHGATECTL = str(Path(sys.executable).with_name("meshgatectl"))


async def ctl(cp: CPProcess, *args: str) -> tuple[int, str, str]:
    done = await anyio.run_process([MESHGATECTL, "--api", cp.url(), *args], check=False)
    return done.returncode, done.stdout.decode(), done.stderr.decode()


async def get(cp: CPProcess, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=30) as c:
        return await c.get(path)


def listener_names(dump: dict[str, Any]) -> set[str]:
    names = set()
    for config in dump.get("configs", []):
        for key in ("dynamic_listeners", "static_listeners"):
            for listener in config.get(key, []):
                state = listener.get("active_state") or listener.get("warming_state") or listener
                name = (state.get("listener") or {}).get("name") or listener.get("name")
                if name:
                    names.add(name)
    return names


async def _has_listener(cp: CPProcess, path: str) -> bool:
    r = await get(cp, path)
    return r.status_code == 200 and bool(listener_names(r.json()))


async def test_config_dump_on_the_zone_and_through_the_global(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    listen = free_port()
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await put(g, "/meshes/default/meshgateways/edge", gateway(listen))
    await put(g, "/meshes/default/meshgatewayroutes/edge-routes", route("echo-a"))
    await eventually(lambda: _ok(get(z, "/meshes/default")), what="mesh in zone-1")
    # A backend for the route, so the gateway has endpoints to dump (with a token file, the bootstrap has no
    # static xds_cluster whose endpoints would show).
    await put(z, "/meshes/default/dataplanes/echo-a", backend_dataplane("echo-a", free_port()))
    edge = json.dumps(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "edge-1",
            "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
        }
    )
    dp = await zone_dp(procs, z, edge)
    try:
        # The admin port meshgate-dp was given is what the zone knows.
        await eventually(lambda: _ok(get(z, "/meshes/default/dataplanes/edge-1")), what="edge-1 registered")
        registered = (await get(z, "/meshes/default/dataplanes/edge-1")).json()
        assert registered["networking"]["admin"]["port"] == dp.admin_port

        zone_path = "/meshes/default/dataplanes/edge-1/xds"
        await eventually(lambda: _has_listener(z, zone_path), timeout=30, what=f"a listener\n{dp.logs()[-2000:]}")
        zone_dump = (await get(z, zone_path)).json()
        (listener,) = listener_names(zone_dump)
        assert str(listen) in listener

        # Through the global: by the display name, and by the stored (hash-suffixed) name.
        await eventually(lambda: _has_listener(g, zone_path), timeout=30, what="config dump via the global")
        assert listener in listener_names((await get(g, zone_path)).json())
        stored = [
            d["name"]
            for d in (await get(g, "/meshes/default/dataplanes")).json()["items"]
            if d["name"].startswith("edge-1")
        ]
        (stored_name,) = stored
        assert stored_name != "edge-1"
        assert listener in listener_names((await get(g, f"/meshes/default/dataplanes/{stored_name}/xds")).json())

        with_eds = (await get(g, zone_path + "?include_eds=true")).json()
        assert any("EndpointsConfigDump" in c.get("@type", "") for c in with_eds["configs"])

        # meshgatectl against either API.
        for cp in (z, g):
            code, out, err = await ctl(
                cp, "inspect", "dataplane", "edge-1", "--mesh", "default", "--type", "config-dump"
            )
            assert code == 0, err
            assert listener in listener_names(json.loads(out))

        # Unknown dataplane: 404 on both, and meshgatectl says so.
        for cp in (z, g):
            assert (await get(cp, "/meshes/default/dataplanes/nope/xds")).status_code == 404
        code, _, err = await ctl(g, "inspect", "dataplane", "nope", "--type", "config-dump")
        assert code == 1
        assert 'no Dataplane with name "nope"' in err

        # The zone stopped: the global answers with a clear error, not a hang.
        z.stop()
        r = await get(g, zone_path)
        assert r.status_code in (503, 504), r.text
        assert "zone-1" in r.json()["detail"]
    finally:
        dp.stop()


async def _ok(resp: Any) -> bool:
    return bool((await resp).status_code == 200)
