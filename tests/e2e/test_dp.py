"""`meshgate-dp run` as a process against a zone-like test server: a real aiohttp API taking the Dataplane's
PUT and DELETE, and the real delta ADS server. Envoy is the real binary the launcher starts."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from aiohttp import web

from meshgate.dp.bootstrap import parse_cp_address, render_bootstrap
from meshgate.dp.envoy import envoy_argv, find_envoy, unique_base_id
from meshgate.transport.grpc_server import serve_grpc
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from meshgate.xds.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, SnapshotStore, register_ads
from tests.support.dp import DpProcess
from tests.support.envoy import http_backend
from tests.support.envoy_config import http_listener, route_config, snapshot
from tests.support.processes import free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

PROXY = ProxyId("default", "gw-1")
DATAPLANE = """\
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 127.0.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge
"""


@dataclass
class Zone:
    """What a zone offers meshgate-dp: the Dataplane API and the xDS server."""

    api_port: int
    xds_port: int
    store: SnapshotStore
    registry: ProxyRegistry
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    refuse: bool = False

    def seen(self, method: str) -> list[tuple[str, Any]]:
        return [(path, body) for m, path, body in self.requests if m == method]


@asynccontextmanager
async def zone() -> AsyncIterator[Zone]:
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        store, registry = SnapshotStore(), ProxyRegistry()
        xds_port = await tg.start(
            serve_grpc,
            [register_ads(AggregatedDiscoveryService(store, registry))],
            [ADS_SERVICE_NAME],
            "127.0.0.1",
            0,
        )
        z = Zone(0, xds_port, store, registry)

        async def dataplane(request: web.Request) -> web.Response:
            body = await request.json() if request.can_read_body else None
            z.requests.append((request.method, request.path, body))
            if z.refuse:
                return web.json_response({"title": "Could not process a resource", "details": "refused"}, status=400)
            return web.Response(status=201) if request.method == "PUT" else web.json_response({})

        app = web.Application()
        app.router.add_route("PUT", "/meshes/{mesh}/dataplanes/{name}", dataplane)
        app.router.add_route("DELETE", "/meshes/{mesh}/dataplanes/{name}", dataplane)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        z.api_port = int(runner.addresses[0][1])
        yield z


@asynccontextmanager
async def dp(workdir: Path, z: Zone, *args: str) -> AsyncIterator[DpProcess]:
    p = DpProcess(workdir, z.xds_port, z.api_port, *args)
    try:
        yield p
    finally:
        p.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_register_connect_serve_then_sigterm_stops_envoy_and_deregisters(tmp_path: Path) -> None:
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    async with zone() as z, http_backend("backend") as backend, httpx.AsyncClient(timeout=5.0) as http:
        port = free_port()
        z.store.set(
            PROXY,
            snapshot(
                {"backend": (backend.port,)},
                {"http": http_listener("http", port, "routes")},
                {"routes": route_config("routes", {"/": "backend"})},
            ),
        )
        async with dp(tmp_path, z, "--dataplane-file", str(tmp_path / "dp.yaml")) as p:
            await eventually(lambda: z.seen("PUT"), what="the Dataplane registered")
            (path, body), *_ = z.seen("PUT")
            assert path == "/meshes/default/dataplanes/gw-1"
            assert body["type"] == "Dataplane"
            assert body["networking"]["gateway"]["tags"] == {"kuma.io/service": "edge"}

            def connected() -> bool:
                record = z.registry.get(PROXY)
                return record is not None and record.connected

            await eventually(connected, what=f"Envoy's ADS stream from node default.gw-1\n{p.logs()[-3000:]}")

            async def through_envoy() -> bool:
                try:
                    resp = await http.get(f"http://127.0.0.1:{port}/hello")
                except httpx.TransportError:
                    return False
                return resp.text == "backend /hello"

            await eventually(through_envoy, what="traffic through the launched Envoy")
            admin = await http.get(f"http://127.0.0.1:{p.admin_port}/server_info")
            assert admin.json()["command_line_options"]["disable_hot_restart"] is True
            (started,) = p.events("dp.envoy.started")
            envoy_pid = int(started["pid"])
            assert pid_alive(envoy_pid)
            assert not z.seen("DELETE")

            p.proc.send_signal(signal.SIGTERM)
            assert await p.exited() == 0, p.logs()
            assert not pid_alive(envoy_pid), "Envoy is gone"
            assert [path for path, _ in z.seen("DELETE")] == ["/meshes/default/dataplanes/gw-1"]
            await eventually(lambda: not connected(), what="the ADS stream closed")
            with pytest.raises(httpx.TransportError):
                await http.get(f"http://127.0.0.1:{p.admin_port}/ready")


async def test_envoy_failing_is_forwarded_as_the_exit_code_and_still_deregisters(tmp_path: Path) -> None:
    """Envoy cannot bind its admin port (taken): it exits 1, and so does meshgate-dp, after its DELETE."""
    inline = json.dumps({"type": "Dataplane", "mesh": "default", "name": "gw-2", **_networking()})
    async with zone() as z:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            admin_port = taken.getsockname()[1]
            async with dp(tmp_path, z, "--dataplane", inline, "--admin-port", str(admin_port)) as p:
                assert await p.exited() == 1, p.logs()
        assert [path for path, _ in z.seen("PUT")] == ["/meshes/default/dataplanes/gw-2"]
        assert [path for path, _ in z.seen("DELETE")] == ["/meshes/default/dataplanes/gw-2"]
        assert p.events("dp.envoy.exited")[0]["returncode"] == 1


async def test_a_refused_dataplane_fails_before_envoy_starts(tmp_path: Path) -> None:
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    async with zone() as z:
        z.refuse = True
        async with dp(tmp_path, z, "--dataplane-file", str(tmp_path / "dp.yaml")) as p:
            assert await p.exited() == 1
            assert "the zone refused the Dataplane: HTTP 400" in p.logs()
            assert not p.events("dp.envoy.started")
        assert not z.seen("DELETE")


def _networking() -> dict[str, Any]:
    return {"networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "e"}}}}


def test_envoy_itself_accepts_the_bootstrap(tmp_path: Path) -> None:
    """`envoy --mode validate` on what meshgate-dp writes, for a host-name control plane too."""
    for i, cp in enumerate(("grpc://127.0.0.1:5678", "grpc://localhost:5678")):
        bootstrap = tmp_path / f"bootstrap-{i}.json"
        doc = render_bootstrap("default.gw-1", parse_cp_address(cp), admin_port=0)
        bootstrap.write_text(json.dumps(doc))
        argv = envoy_argv(find_envoy(), bootstrap, base_id=unique_base_id(), extra=("--mode", "validate"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's exit may wait for a reaper that a container's PID 1 is not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


async def test_envoy_dies_with_a_killed_meshgate_dp(tmp_path: Path) -> None:
    """SIGKILL gives meshgate-dp no chance to stop Envoy: the parent-death signal must, or Envoy is orphaned."""
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    async with zone() as z, dp(tmp_path, z, "--dataplane-file", str(tmp_path / "dp.yaml")) as p:
        await eventually(lambda: p.events("dp.envoy.started"), what="Envoy started")
        (started,) = p.events("dp.envoy.started")
        envoy_pid = int(started["pid"])
        assert running(envoy_pid)
        p.proc.kill()
        p.proc.wait()
        await eventually(lambda: not running(envoy_pid), what="Envoy to exit after its parent was killed")
