"""`meshgate-dp run` as a process against a zone-like test server: the real delta ADS server with a recording
gate in place of the zone's authentication, over plaintext. Envoy is the real binary the launcher starts.

What the gate sees is what a zone would check: the `authorization` metadata (the token) and the node metadata
carrying the Dataplane (`dataplane.resource`) and the admin port (`dataplane.admin.port`). The real zone's
checks are tested in tests/e2e/test_dp_auth.py."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from envoy.config.core.v3 import base_pb2

from meshgate.dp.bootstrap import parse_cp_address, render_bootstrap
from meshgate.dp.envoy import envoy_argv, unique_base_id
from meshgate.pki import generate_authority
from meshgate.testing.tools import ENVOY, require
from meshgate.transport.ads_server import (
    ADS_SERVICE_NAME,
    AggregatedDiscoveryService,
    SnapshotStore,
    StreamRefused,
    register_ads,
)
from meshgate.transport.grpc_server import serve_grpc
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
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
class Opened:
    proxy: ProxyId
    metadata: dict[str, str]  # node metadata, string values
    authorization: list[str]


@dataclass
class Zone:
    """What a zone offers meshgate-dp: the xDS server, with a gate that records (or refuses) each stream."""

    xds_port: int
    store: SnapshotStore
    registry: ProxyRegistry
    opened: list[Opened] = field(default_factory=list)
    closed: int = 0
    refuse: bool = False


class _Session:
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    async def watch(self) -> StreamRefused:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self.zone.closed += 1


class _RecordingGate:
    def __init__(self, zone: Zone) -> None:
        self.zone = zone

    async def open(
        self, proxy: ProxyId, node: base_pb2.Node, metadata: Sequence[tuple[str, str | bytes]], peer: str
    ) -> _Session:
        fields = {k: v.string_value for k, v in node.metadata.fields.items()}
        auth = [str(v) for k, v in metadata if k == "authorization"]
        self.zone.opened.append(Opened(proxy, fields, auth))
        if self.zone.refuse:
            raise StreamRefused("missing_token", "refused by the test")
        return _Session(self.zone)


@asynccontextmanager
async def zone() -> AsyncIterator[Zone]:
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        store, registry = SnapshotStore(), ProxyRegistry()
        z = Zone(0, store, registry)
        service = AggregatedDiscoveryService(store, registry, gate=_RecordingGate(z))
        z.xds_port = await tg.start(serve_grpc, [register_ads(service)], [ADS_SERVICE_NAME], "127.0.0.1", 0)
        yield z


@asynccontextmanager
async def dp(workdir: Path, z: Zone, *args: str) -> AsyncIterator[DpProcess]:
    p = DpProcess(workdir, z.xds_port, *args)
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
        args = ("--dataplane-file", str(tmp_path / "dp.yaml"), "--dataplane-token", "t0k3n")
        async with dp(tmp_path, z, *args) as p:
            await eventually(lambda: z.opened, what=f"Envoy's ADS stream\n{p.logs()[-3000:]}")
            opened = z.opened[0]
            assert opened.proxy == PROXY
            assert opened.authorization == ["t0k3n"]  # kuma-dp's way: raw, in the call's metadata
            body = json.loads(opened.metadata["dataplane.resource"])
            assert (body["type"], body["mesh"], body["name"]) == ("Dataplane", "default", "gw-1")
            assert body["networking"]["gateway"]["tags"] == {"kuma.io/service": "edge"}
            assert opened.metadata["dataplane.admin.port"] == str(p.admin_port)

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
            assert z.closed == 0

            p.proc.send_signal(signal.SIGTERM)
            assert await p.exited() == 0, p.logs()
            assert not pid_alive(envoy_pid), "Envoy is gone"
            await eventually(lambda: not connected(), what="the ADS stream closed")
            await eventually(lambda: z.closed == 1, what="the zone told the stream closed (it deregisters then)")
            with pytest.raises(httpx.TransportError):
                await http.get(f"http://127.0.0.1:{p.admin_port}/ready")


async def test_envoy_failing_is_forwarded_as_the_exit_code(tmp_path: Path) -> None:
    """Envoy cannot bind its admin port (taken): it exits 1, and so does meshgate-dp."""
    inline = json.dumps({"type": "Dataplane", "mesh": "default", "name": "gw-2", **_networking()})
    async with zone() as z:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            admin_port = taken.getsockname()[1]
            async with dp(tmp_path, z, "--dataplane", inline, "--admin-port", str(admin_port)) as p:
                assert await p.exited() == 1, p.logs()
        assert p.events("dp.envoy.exited")[0]["returncode"] == 1


async def test_a_refused_stream_gets_no_config_and_envoy_keeps_asking(tmp_path: Path) -> None:
    """The zone refuses (no token): Envoy gets nothing and retries with backoff; meshgate-dp keeps running."""
    (tmp_path / "dp.yaml").write_text(DATAPLANE)
    async with zone() as z:
        z.refuse = True
        async with dp(tmp_path, z, "--dataplane-file", str(tmp_path / "dp.yaml")) as p:
            await eventually(lambda: len(z.opened) >= 2, timeout=30, what="Envoy retrying the refused stream")
            assert z.opened[0].authorization == []  # no token given, none sent
            assert p.proc.poll() is None
            assert p.events("dp.token.missing")


def _networking() -> dict[str, Any]:
    return {"networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "e"}}}}


def test_envoy_itself_accepts_the_bootstrap(tmp_path: Path) -> None:
    """`envoy --mode validate` on what meshgate-dp writes: plaintext and TLS (with a CA and a token), to an
    address and to a host name."""
    ca = tmp_path / "ca.crt"
    ca.write_bytes(generate_authority("test").cert_pem)
    cps = ("grpc://127.0.0.1:5678", "grpc://localhost:5678", "https://127.0.0.1:5678", "https://localhost:5678")
    for i, cp in enumerate(cps):
        bootstrap = tmp_path / f"bootstrap-{i}.json"
        doc = render_bootstrap("default.gw-1", parse_cp_address(cp), admin_port=0, token="a.b.c", ca_pem=ca.read_text())
        bootstrap.write_text(json.dumps(doc))
        argv = envoy_argv(require(ENVOY), bootstrap, base_id=unique_base_id(), extra=("--mode", "validate"))
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_envoy_itself_accepts_the_bootstrap_that_reads_a_token_file(tmp_path: Path) -> None:
    """Kuma's reloadable tokens: the google_grpc client with file_based_metadata call credentials, which this
    Envoy build has; the bootstrap holds the file's name, never the token."""
    ca = tmp_path / "ca.crt"
    ca.write_bytes(generate_authority("test").cert_pem)
    token = tmp_path / "token"
    token.write_text("a.b.c")
    for i, cp in enumerate(("https://127.0.0.1:5678", "https://localhost:5678", "https://[::1]:5678")):
        bootstrap = tmp_path / f"bootstrap-{i}.json"
        doc = render_bootstrap(
            "default.gw-1", parse_cp_address(cp), admin_port=0, token_file=str(token), ca_pem=ca.read_text()
        )
        bootstrap.write_text(json.dumps(doc))
        assert "a.b.c" not in bootstrap.read_text()
        argv = envoy_argv(require(ENVOY), bootstrap, base_id=unique_base_id(), extra=("--mode", "validate"))
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
