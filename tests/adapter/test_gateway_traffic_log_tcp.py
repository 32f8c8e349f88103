"""TrafficLog to a Mesh's `tcp` logging backend, through a real Envoy run by a real `meshgate-dp`, against the
zone's own xDS pieces in process.

    zone (in this process): MemoryStore -> ZoneXds (zone_cp/xds.py) -> ADS server, gated by DpServer
                            (zone_cp/dp_server.py, --dp-server-authn none), plaintext on loopback
    meshgate-dp (a subprocess): its access log pipe, named as Kuma names it, in its temporary config directory;
                            that path in Envoy's node metadata (`accessLogSocketPath`) -> Envoy
    DpServer reads the path from the node, ZoneXds generates the gateway with it, Envoy writes each TrafficLog
    line `<address>;<line>` to the pipe, meshgate-dp's streamer sends `<line>\\n` to the collector (an asyncio
    server, tests/support/log_collector.py) at `<address>`.

The Mesh's default logging backend is `tcp` at the collector; TrafficLog `log-all` matches every source and
destination. One HTTP listener routes `/free` to a recording backend, one TCP listener to an echo backend, as in
tests/adapter/test_gateway_policies_traffic.py's file backend tests.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import pytest_asyncio

from meshgate.resources import codec
from meshgate.store import MemoryStore
from meshgate.testing import factory
from meshgate.transport.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, register_ads
from meshgate.transport.grpc_server import serve_grpc
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from tests.support.dp import DpProcess
from tests.support.envoy import free_port
from tests.support.gateway_harness import (
    RecordingBackend,
    StreamBackend,
    backend_dataplane,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    ready_probe,
    recording_backend,
    rig_in_one_task,
    rule,
    tcp_echo_backend,
    tcp_route,
    to,
)
from tests.support.log_collector import Collector, collector
from tests.support.wait import eventually
from zone_cp.dp_server import DpServer
from zone_cp.xds import ZoneXds

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDGE = ProxyId("default", "edge-1")
LOG_TIMEOUT = 30.0  # Envoy flushes its file access logs every second; a deadlock guard, not a speed bound


@dataclass
class Rig:
    dp: DpProcess
    dp_server: DpServer
    port: int
    tcp_port: int
    free: RecordingBackend
    echo: StreamBackend
    collector: Collector
    client: httpx.AsyncClient

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(f"http://127.0.0.1:{self.port}{path}", headers={"Host": "gw.example.com"})

    def lines(self, fragment: str) -> list[str]:
        """The collector's lines that contain `fragment`."""
        return [line for line in self.collector.text() if fragment in line]


@asynccontextmanager
async def zone(store: MemoryStore) -> AsyncIterator[tuple[int, DpServer]]:
    """The zone's xDS door and snapshots over `store`: (ADS port, its DpServer)."""
    dp_server = DpServer(store, "zone-1", None)
    xds = ZoneXds(store, "zone-1", access_log_socket=dp_server.access_log_socket)
    service = AggregatedDiscoveryService(xds, ProxyRegistry(), gate=dp_server)
    async with anyio.create_task_group() as tg:
        await tg.start(xds.run)
        port = await tg.start(
            lambda task_status: serve_grpc(
                [register_ads(service)], [ADS_SERVICE_NAME], "127.0.0.1", 0, grace=0, task_status=task_status
            )
        )
        try:
            yield int(port), dp_server
        finally:
            tg.cancel_scope.cancel()


def documents(port: int, tcp_port: int, free: int, echo: int, log_address: str) -> list[dict[str, Any]]:
    listeners = [
        {"port": port, "protocol": "HTTP", "hostname": "*", "tags": {"listener": "main"}},
        {"port": tcp_port, "protocol": "TCP", "tags": {"listener": "tcp"}},
    ]
    logging = {"defaultBackend": "collector", "backends": [{"name": "collector", "type": "tcp",
                                                            "conf": {"address": log_address}}]}  # fmt: skip
    return [
        factory.mesh(logging=logging),
        gateway("edge", "edge", listeners),
        http_route(
            "main",
            [rule({"path": {"match": "PREFIX", "value": "/free"}}, backends=to("free"))],
            selector={"kuma.io/service": "edge", "listener": "main"},
        ),
        tcp_route("tcp", "echo", selector={"kuma.io/service": "edge", "listener": "tcp"}),
        backend_dataplane("free", free, "free"),
        backend_dataplane("echo", echo, "echo"),
        factory.traffic_log("log-all"),
    ]


async def _build(stack: AsyncExitStack, workdir: Path) -> Rig:
    free = await stack.enter_async_context(recording_backend("free"))
    echo = await stack.enter_async_context(tcp_echo_backend("echo"))
    logs = await stack.enter_async_context(collector())
    port, tcp_port = free_port(), free_port()
    store = MemoryStore()
    for doc in documents(port, tcp_port, free.port, echo.port, logs.address):
        await store.create(codec.load(doc))
    xds_port, dp_server = await stack.enter_async_context(zone(store))
    edge = builtin_gateway_dataplane("edge-1", "edge")
    dp = DpProcess(workdir, xds_port, "--dataplane", json.dumps(edge))
    stack.callback(dp.stop)
    client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
    rig = Rig(dp, dp_server, port, tcp_port, free, echo, logs, client)

    async def ready() -> bool:
        return (await rig.get("/free")).status_code == 200

    await ready_probe(ready, dp, timeout=60, tail=6000, what="traffic through the gateway")
    return rig


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One zone, meshgate-dp and collector for the module, owned by one task (see `rig_in_one_task`)."""
    workdir = tmp_path_factory.mktemp("gateway-tlog-tcp")
    async with rig_in_one_task(lambda stack: _build(stack, workdir)) as rig:
        yield rig


async def test_meshgate_dp_declares_its_pipe_and_the_zone_uses_it(rig: Rig) -> None:
    path = rig.dp_server.access_log_socket(EDGE)
    assert Path(path).name == "kuma-al-edge-1-default.sock"  # Kuma's AccessLogSocketName
    assert Path(path).parent.name.startswith("meshgate-dp-")  # its temporary config directory, as kuma-dp's
    assert Path(path).is_fifo()
    (event,) = rig.dp.events("dp.access_logs.open")
    assert event["path"] == path


async def test_each_http_request_is_one_line_on_the_collector_in_kumas_default_format(rig: Rig) -> None:
    paths = [f"/free/tcp-logged-{i}" for i in range(5)]
    for path in paths:
        assert (await rig.get(path)).status_code == 200

    def logged() -> bool:
        return all(rig.lines(f" {p} ") for p in paths)

    await eventually(logged, timeout=LOG_TIMEOUT, what=f"the requests on the collector\n{rig.dp.logs()[-4000:]}")
    for path in paths:
        (line,) = rig.lines(f" {path} ")
        # The address and its ';' are gone; the line is Kuma's default HTTP format, newline-terminated:
        # [time] mesh "GET path protocol" status flags received sent duration upstream-time "xff" "ua" "trace"
        # "request id" "authority" "source service" "destination service" "source address" "upstream host"
        assert line.startswith("[")
        assert f'] default "GET {path} HTTP/1.1" 200 - ' in line
        assert '"gw.example.com" "edge" "*" "127.0.0.1"' in line
        assert line.endswith(f'"127.0.0.1:{rig.free.port}"\n')
    assert rig.collector.connections == 1  # one connection for every line to this address


async def test_each_tcp_connection_is_one_line_on_the_collector_in_kumas_default_format(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.tcp_port)
    writer.write(b"ping\n")
    assert await reader.readline() == b"echo:ping\n"
    writer.close()
    await writer.wait_closed()
    upstream = f"127.0.0.1:{rig.echo.port}"

    def logged() -> list[str]:
        return rig.lines(f"->{upstream}(*)")

    await eventually(logged, timeout=LOG_TIMEOUT, what="the TCP connection on the collector")
    (line,) = logged()
    assert line.startswith("[")
    assert f"] - default 127.0.0.1(edge)->{upstream}(*) took " in line
    assert line.endswith("sent 10 bytes, received: 5 bytes\n")  # "echo:ping\n" back, "ping\n" in


async def test_stopping_meshgate_dp_removes_its_pipe(rig: Rig) -> None:
    """Last in this module: it stops the rig's meshgate-dp."""
    path = Path(rig.dp_server.access_log_socket(EDGE))
    assert path.is_fifo()
    rig.dp.stop()
    assert rig.dp.proc.returncode == 0, rig.dp.logs()[-4000:]
    assert not os.path.lexists(path)
