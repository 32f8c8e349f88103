"""Two zones that cannot reach each other except through their ingresses (issue 14, Deliver 4 and 5).

    root namespace   the global (KDS and API on ROOT_IP), and this test, which talks to every API and sends the
                     gateway's traffic; routes to both zones through `wan`
    namespace `wan`  the router: forwards root <-> zones, and between the zones only TCP to each zone's ingress
                     port (iptables FORWARD, policy DROP): the only route between zones is the ingress addresses
    namespace `z1`   zone-1's control plane, its ingress, the builtin gateway `edge` (Envoy, listener on Z1_IP)
                     and, in some phases, `echo` behind its sidecar
    namespace `z2`   zone-2's control plane, its ingress, and `echo` (127.0.0.1 in z2) behind its sidecar

The mesh has mTLS, so zone-1 reaches zone-2's `echo` at zone-2's ingress (its advertised address, Z2_IP), with
the SNI `echo{mesh=default}`; the ingress passes the mTLS session through to the sidecar, which checks the
gateway's certificate and forwards to the application. Plaintext to the sidecar is refused, and zone-1 cannot
open a connection to the sidecar at all. Locality stays as meshgate has it (local first): an `echo` in zone-1
takes the traffic while it lives, zone-2's through its ingress when it goes; killing zone-2's ingress (SIGKILL)
takes zone-2's endpoints away from zone-1 and zone-1's own keep answering.

Needs root, iproute2, iptables and Envoy: skipped on a developer machine without them, failing under CI
(meshgate.testing.tools).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx
import pytest

from meshgate.resources import registry
from meshgate.testing import factory
from meshgate.testing.dp import DpProcess, dataplane_token, zone_ca
from meshgate.testing.tools import ENVOY, IPTABLES_RESTORE, NETNS, require
from tests.support.netns import Netns, netns, veth
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e]

_NET = f"10.{150 + os.getpid() % 50}"
ROOT_IP, WAN_ROOT = f"{_NET}.0.1", f"{_NET}.0.2"
Z1_WAN, Z1_IP = f"{_NET}.1.1", f"{_NET}.1.2"
Z2_WAN, Z2_IP = f"{_NET}.2.1", f"{_NET}.2.2"


def rest_path(doc: dict[str, Any]) -> str:
    kind = registry.get(doc["type"])
    if kind.mesh_scoped:
        return f"/meshes/{doc['mesh']}/{kind.plural}/{doc['name']}"
    return f"/{kind.plural}/{doc['name']}"


async def api(cp: CPProcess, method: str, path: str, doc: dict[str, Any] | None = None) -> httpx.Response:
    """A call to `cp`'s API as its admin (a zone is reached from the root namespace, not from its localhost)."""
    async with httpx.AsyncClient(base_url=cp.url(), headers=cp.admin_headers(), timeout=10) as c:
        return await c.request(method, path, json=doc)


async def put(cp: CPProcess, doc: dict[str, Any]) -> None:
    r = await api(cp, "PUT", rest_path(doc), doc)
    assert r.status_code in (200, 201), r.text


@contextmanager
def root_link(wan: Netns) -> Iterator[None]:
    """A veth from the root namespace (ROOT_IP) to `wan` (WAN_ROOT), and the root's routes to both zones through
    it; the root end is deleted by its name on exit (it also goes with `wan`)."""
    ip = str(require(NETNS))
    host, peer = f"mgxr{os.getpid() % 100000}", f"mgxw{os.getpid() % 100000}"
    subprocess.run([ip, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", wan.name], check=True)
    try:
        subprocess.run([ip, "addr", "add", f"{ROOT_IP}/24", "dev", host], check=True)
        subprocess.run([ip, "link", "set", host, "up"], check=True)
        wan.sh("ip", "addr", "add", f"{WAN_ROOT}/24", "dev", peer)
        wan.sh("ip", "link", "set", peer, "up")
        for zone in (1, 2):
            subprocess.run([ip, "route", "add", f"{_NET}.{zone}.0/24", "via", WAN_ROOT], check=True)
        yield
    finally:
        subprocess.run([ip, "link", "delete", host], check=False, capture_output=True)


def route_only_ingresses(wan: Netns, ingress_1: int, ingress_2: int) -> None:
    """`wan` forwards everything to and from the root namespace, and between the zones only TCP to each zone's
    ingress port (and its replies); everything else between the zones is dropped."""
    wan.sh("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
    rules = "\n".join(
        [
            "*filter",
            ":INPUT ACCEPT [0:0]",
            ":FORWARD DROP [0:0]",
            ":OUTPUT ACCEPT [0:0]",
            f"-A FORWARD -s {_NET}.0.0/24 -j ACCEPT",
            f"-A FORWARD -d {_NET}.0.0/24 -j ACCEPT",
            f"-A FORWARD -s {_NET}.1.0/24 -d {Z2_IP}/32 -p tcp --dport {ingress_2} -j ACCEPT",
            f"-A FORWARD -s {Z2_IP}/32 -d {_NET}.1.0/24 -p tcp --sport {ingress_2} -j ACCEPT",
            f"-A FORWARD -s {_NET}.2.0/24 -d {Z1_IP}/32 -p tcp --dport {ingress_1} -j ACCEPT",
            f"-A FORWARD -s {Z1_IP}/32 -d {_NET}.2.0/24 -p tcp --sport {ingress_1} -j ACCEPT",
            "COMMIT",
            "",
        ]
    )
    done = subprocess.run(
        wan.command([str(require(IPTABLES_RESTORE))]), input=rules, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def can_connect(ns: Netns, host: str, port: int) -> bool:
    """Whether a TCP connection from inside `ns` to host:port opens within 3 s."""
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=3).close()"
    return ns.sh(sys.executable, "-c", probe, check=False).returncode == 0


class Zone:
    """One zone in its namespace: its control plane and the meshgate-dp processes the test starts in it."""

    def __init__(self, procs: ProcessGroup, ns: Netns, cp: CPProcess) -> None:
        self.procs, self.ns, self.cp = procs, ns, cp
        self.dps: list[DpProcess] = []

    async def dp(self, name: str, doc: dict[str, Any], *args: str, token_type: str | None = None) -> DpProcess:
        workdir = self.procs.workdir / f"{self.cp.name}-{name}"
        workdir.mkdir()
        body = {"mesh": "default", "name": doc["name"], **({"type": token_type} if token_type else {})}
        token = workdir / "token"
        token.write_text(await dataplane_token(self.cp, body))
        dp = DpProcess(
            workdir,
            self.cp.ports["xds"],
            "--dataplane",
            json.dumps(doc),
            *args,
            token_file=token,
            ca_cert_file=zone_ca(self.procs, self.cp),
            prefix=self.ns.command([]),
        )
        self.dps.append(dp)
        return dp

    async def ingress(self, address: str, port: int) -> DpProcess:
        doc = factory.zone_ingress(
            f"ingress-{self.cp.name}", address=address, port=port, advertised_address=address, advertised_port=port
        )
        return await self.dp("ingress", doc, "--proxy-type", "ingress", token_type="ingress")

    async def echo(self, address: str) -> tuple[DpProcess, int]:
        """`echo` on 127.0.0.1 in this zone's namespace, answering "echo <zone> PATH", behind a sidecar whose
        inbound is address:<a free port>; returns the sidecar and that port."""
        app, inbound = free_port(), free_port()
        self.ns.start("http-server", "127.0.0.1", str(app), f"echo {self.cp.name}")
        doc = {
            "type": "Dataplane",
            "mesh": "default",
            "name": f"echo-{self.cp.name}",
            "networking": {
                "address": address,
                "inbound": [
                    {
                        "port": inbound,
                        "serviceAddress": "127.0.0.1",
                        "servicePort": app,
                        "tags": {"kuma.io/service": "echo", "kuma.io/protocol": "http"},
                    }
                ],
            },
        }
        return await self.dp(f"echo-{len(self.dps)}", doc), inbound

    def stop(self) -> None:
        for dp in reversed(self.dps):
            dp.stop()


@asynccontextmanager
async def zone(procs: ProcessGroup, g: CPProcess, name: str, ns: Netns, address: str) -> AsyncIterator[Zone]:
    cp = await procs.zone_cp(
        name,
        g.ports["kds"],
        "--global-address",
        f"grpcs://{ROOT_IP}:{g.ports['kds']}",
        "--bind-address",
        "0.0.0.0",
        "--dp-server-tls-san",
        address,
        prefix=ns.command([]),
        host=address,
    )
    z = Zone(procs, ns, cp)
    try:
        yield z
    finally:
        z.stop()
        cp.stop()


async def zone_ingresses(cp: CPProcess) -> dict[str, list[str]]:
    """The ZoneIngresses `cp` knows of other zones: their zone -> the services they list (the global renames
    them, as Kuma does)."""
    r = await api(cp, "GET", "/zone-ingresses")
    r.raise_for_status()
    return {
        i["zone"]: sorted(s["tags"]["kuma.io/service"] for s in i.get("availableServices", []))
        for i in r.json()["items"]
        if i.get("zone")
    }


async def through_gateway(port: int, path: str = "/hello") -> str:
    """What the gateway in zone-1 answers, as "STATUS BODY" (or the error)."""
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            r = await c.get(f"http://{Z1_IP}:{port}{path}")
        return f"{r.status_code} {r.text}"
    except httpx.HTTPError as exc:
        return f"failed: {exc!r}"


async def test_a_gateway_in_zone_1_reaches_zone_2_only_through_its_ingress(procs: ProcessGroup) -> None:
    require(IPTABLES_RESTORE)
    require(ENVOY)
    ingress_1, ingress_2, gateway_port = free_port(), free_port(), free_port()
    with (
        netns("wan") as wan,
        netns("z1") as z1_ns,
        netns("z2") as z2_ns,
        root_link(wan),
        veth(z1_ns, [f"{Z1_IP}/24"], wan, [f"{Z1_WAN}/24"]),
        veth(z2_ns, [f"{Z2_IP}/24"], wan, [f"{Z2_WAN}/24"]),
    ):
        z1_ns.sh("ip", "route", "add", "default", "via", Z1_WAN)
        z2_ns.sh("ip", "route", "add", "default", "via", Z2_WAN)
        route_only_ingresses(wan, ingress_1, ingress_2)

        g = await procs.global_cp("global", "--bind-address", "0.0.0.0", "--kds-tls-san", ROOT_IP)
        for doc in (
            factory.mtls_mesh(),
            factory.traffic_permission(),
            factory.gateway(listeners=[factory.listener(gateway_port)]),
            factory.http_route("to-echo", backends=[factory.backend("echo")]),
        ):
            await put(g, doc)
        async with zone(procs, g, "zone-1", z1_ns, Z1_IP) as z1, zone(procs, g, "zone-2", z2_ns, Z2_IP) as z2:
            # The boundary is real: zone-1 reaches zone-2's ingress port and nothing else of zone-2.
            zone_2_api = z2.cp.ports["api"]
            assert not await anyio.to_thread.run_sync(can_connect, z1_ns, Z2_IP, zone_2_api)

            await z1.ingress(Z1_IP, ingress_1)
            await z2.ingress(Z2_IP, ingress_2)
            _, sidecar_port = await z2.echo(Z2_IP)
            await z1.dp("edge", factory.gateway_dataplane("edge-1", address=Z1_IP))

            async def zone_2_serves_echo_at_zone_1() -> bool:
                return (await zone_ingresses(z1.cp)).get("zone-2") == ["echo"]

            await eventually(zone_2_serves_echo_at_zone_1, timeout=60, what="zone-2's ingress listing echo, on zone-1")
            answer = ""

            async def answered(expected: str) -> bool:
                nonlocal answer
                answer = await through_gateway(gateway_port)
                return answer == f"200 {expected} /hello"

            await eventually(lambda: answered("echo zone-2"), timeout=60, what=f"echo in zone-2 ({answer})")

            # Zone-1 cannot reach the sidecar itself; the root namespace can, and plaintext is refused there.
            assert not await anyio.to_thread.run_sync(can_connect, z1_ns, Z2_IP, sidecar_port)
            assert await anyio.to_thread.run_sync(can_connect, z1_ns, Z2_IP, ingress_2)
            with pytest.raises(httpx.HTTPError):
                async with httpx.AsyncClient(timeout=5) as c:
                    await c.get(f"http://{Z2_IP}:{sidecar_port}/hello")

            # Local first: an echo in zone-1 takes the traffic; when it goes, zone-2's serves again.
            echo_1, _ = await z1.echo(Z1_IP)
            await eventually(lambda: answered("echo zone-1"), timeout=60, what=f"echo in zone-1 ({answer})")
            echo_1.stop()
            await eventually(lambda: answered("echo zone-2"), timeout=60, what=f"back to zone-2 ({answer})")

            # Zone-2's ingress killed: zone-1 drops it, and its own echo keeps answering.
            await z1.echo(Z1_IP)
            await eventually(lambda: answered("echo zone-1"), timeout=60, what=f"echo in zone-1 again ({answer})")
            ingress_2_dp = next(dp for dp in z2.dps if "ingress" in str(dp.log_path))
            ingress_2_dp.proc.send_signal(signal.SIGKILL)
            ingress_2_dp.proc.wait(10)

            async def gone_from_zone_1() -> bool:
                return "zone-2" not in await zone_ingresses(z1.cp)

            await eventually(gone_from_zone_1, timeout=60, what="zone-2's ingress gone from zone-1")
            for _ in range(5):
                assert await through_gateway(gateway_port) == "200 echo zone-1 /hello"
