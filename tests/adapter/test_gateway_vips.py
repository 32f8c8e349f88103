"""VIP outbounds through a real Envoy (issue 6 item 4; gateway.md, "Delegated gateways", "DNS and VIPs").

The real pipeline minus processes (tests/support/gateway_harness.py): `generate` with the context's `vips` for a
DELEGATED Dataplane, the snapshot served by the real delta ADS server, a real Envoy. The VIPs are inside 127.0.0.0/8, so
Envoy binds them on loopback with no interface set-up (as tests may set the zone's `--vip-cidr`). A service VIP
listens on port 80, which needs root (or a low `ip_unprivileged_port_start`); the same paths are also covered
on high ports, which need nothing.

Each VIP is picked at run time among 127.64.0.0/16 as one where the port can be bound right now, so another
test's VIP listener on the same machine cannot make this one flaky.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from pathlib import Path

import anyio
import httpx
import pytest

from meshgate.xds import MeshContext, VipOutbound, generate
from meshgate.xds.ads import ProxyId
from tests.support.envoy import free_port, running_envoy
from tests.support.gateway_harness import (
    ads_server,
    backend_dataplane,
    load,
    ready_probe,
    recording_backend,
    tcp_echo_backend,
)

_VIP_RANGE = ipaddress.IPv4Network("127.64.0.0/16")
_UNPRIVILEGED_PORT_START = Path("/proc/sys/net/ipv4/ip_unprivileged_port_start")


def _can_bind(port: int) -> bool:
    """Root, or a port at or above the kernel's first unprivileged port."""
    if os.geteuid() == 0 or port >= 1024:
        return True
    try:
        return port >= int(_UNPRIVILEGED_PORT_START.read_text())
    except (OSError, ValueError):
        return False


def free_vip(port: int, *, avoid: set[str]) -> str:
    """An address in 127.64.0.0/16 where `port` is free right now (bound and released once to check)."""
    hosts = list(_VIP_RANGE.hosts())
    start = (os.getpid() * 7919 + port) % len(hosts)
    for i in range(len(hosts)):
        vip = str(hosts[(start + i) % len(hosts)])
        if vip in avoid:
            continue
        with socket.socket() as s:
            try:
                s.bind((vip, port))
            except OSError:
                continue
            return vip
    raise AssertionError(f"no free address in {_VIP_RANGE} for port {port}")


async def _tcp_roundtrip(host: str, port: int, line: bytes) -> bytes:
    with anyio.fail_after(10):  # deadlock guard
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(line)
            await writer.drain()
            return await reader.readline()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _through_vips(tmp_path: Path, http_port: int, tcp_port: int) -> None:
    """A delegated Dataplane with one explicit outbound and two VIP outbounds: `echo` (http) on
    `<vip1>:http_port` and `db` (tcp) on `<vip2>:tcp_port`. HTTP to the VIP reaches echo with the client's
    Host (the `.mesh` name); a line sent to the second VIP comes back from db through a TCP proxy."""
    http_vip = free_vip(http_port, avoid=set())
    tcp_vip = free_vip(tcp_port, avoid={http_vip})
    explicit_port = free_port()
    proxy = load(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "vip-gw",
            "networking": {
                "address": "127.0.0.1",
                "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": "vip-gw"}},
                "outbound": [{"port": explicit_port, "tags": {"kuma.io/service": "echo"}}],
            },
        }
    )
    vips = [VipOutbound(http_vip, http_port, "echo"), VipOutbound(tcp_vip, tcp_port, "db")]
    async with ads_server() as ads, recording_backend("echo") as echo, tcp_echo_backend("db") as db:
        dataplanes = [
            load(backend_dataplane("echo", echo.port, "echo", protocol="http")),
            load(backend_dataplane("db", db.port, "db")),
        ]
        snap = generate(proxy, MeshContext.build("default", dataplanes=dataplanes, zone="zone-1", vips=vips))
        assert not snap.problems, snap.problems
        ads.store.set(ProxyId("default", "vip-gw"), snap)
        async with (
            running_envoy(tmp_path, "default.vip-gw", ads.port, name="vips") as envoy,
            httpx.AsyncClient(timeout=5.0) as client,
        ):

            async def reached() -> bool:
                resp = await client.get(f"http://{http_vip}:{http_port}/", headers={"Host": "echo.mesh"})
                return resp.status_code == 200 and resp.text == "echo /"

            await ready_probe(reached, envoy, what=f"echo through the VIP {http_vip}:{http_port}")
            seen = echo.requests[-1].headers
            assert seen["host"] == "echo.mesh", "the .mesh name goes through"
            assert "x-request-id" in seen, "an HTTP connection manager, not a TCP proxy, carried the request"
            assert await envoy.active_listeners() == {
                f"outbound:127.0.0.1:{explicit_port}",
                f"outbound:{http_vip}:{http_port}",
                f"outbound:{tcp_vip}:{tcp_port}",
            }
            assert await _tcp_roundtrip(tcp_vip, tcp_port, b"hello\n") == b"db:hello\n"
            assert db.connections == 1
            # The explicit outbound to the same service still works beside the VIP.
            resp = await client.get(f"http://127.0.0.1:{explicit_port}/x", headers={"Host": "x"})
            assert resp.text == "echo /x"
            # A VIP listener binds its own address only, not the wildcard: another address on its port is free.
            other = free_vip(http_port, avoid={http_vip, tcp_vip})
            with pytest.raises(ConnectionRefusedError):
                await _tcp_roundtrip(other, http_port, b"nobody\n")


@pytest.mark.skipif(not _can_bind(80), reason="binding port 80 on a VIP needs root (or ip_unprivileged_port_start)")
async def test_service_vips_on_port_80_reach_the_http_and_tcp_services(tmp_path: Path) -> None:
    await _through_vips(tmp_path, 80, 80)


async def test_vips_on_high_ports_reach_the_http_and_tcp_services(tmp_path: Path) -> None:
    await _through_vips(tmp_path, free_port(), free_port())
