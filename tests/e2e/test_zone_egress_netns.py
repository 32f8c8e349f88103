"""A zone egress across real network boundaries: the ExternalService is reachable from the egress only.

    root namespace   the global, zone-1's control plane (xDS also on R_IP), the sidecar `app` (meshgate-dp and its
                     Envoy) with an outbound to the ExternalService `ext`, and this test, which calls that outbound
    namespace `eg`   the egress (`meshgate-dp run --proxy-type egress`, its listener on EG_IP), linked to the root
                     (R_IP <-> EG_IP) and to `ext` (EG_OUT <-> EXT_IP); it forwards nothing
    namespace `ext`  the ExternalService, an HTTP server on EXT_IP: no route leads there from the root namespace

With the Mesh's `routing.zoneEgress` on, the sidecar's request reaches `ext` (mTLS to the egress with SNI
`ext{mesh=default}`, then the egress's own connection); with it off, the sidecar goes direct, has no route, and
the request fails; on again, it works again.

Needs root, iproute2 and Envoy: skipped on a developer machine without them, failing under CI
(meshgate.testing.tools).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from meshgate.testing import factory
from meshgate.testing.dp import DpProcess, dataplane_token, zone_ca, zone_dp
from meshgate.testing.processes import free_port
from meshgate.testing.tools import NETNS, require
from tests.e2e.test_zone_egress import EXT, egress_mesh, put, sidecar
from tests.support.netns import Netns, netns, veth
from tests.support.processes import ProcessGroup
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e]

_NET = f"10.{100 + os.getpid() % 50}"
R_IP, EG_IP = f"{_NET}.10.1", f"{_NET}.10.2"
EG_OUT, EXT_IP = f"{_NET}.20.1", f"{_NET}.20.2"


def connects(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


async def body(port: int) -> str:
    """What the sidecar's outbound answers: the ExternalService's text, or "" for anything else."""
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            r = await c.get(f"http://127.0.0.1:{port}/hello")
    except httpx.HTTPError:
        return ""
    return r.text if r.status_code == 200 else ""


@contextmanager
def root_link(eg: Netns) -> Iterator[None]:
    """A veth from the root namespace (R_IP) to `eg` (EG_IP); the root end is deleted by its name on exit."""
    ip = str(require(NETNS))
    host, peer = f"mger{os.getpid() % 100000}", f"mgeg{os.getpid() % 100000}"
    subprocess.run([ip, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", eg.name], check=True)
    try:
        subprocess.run([ip, "addr", "add", f"{R_IP}/24", "dev", host], check=True)
        subprocess.run([ip, "link", "set", host, "up"], check=True)
        eg.sh("ip", "addr", "add", f"{EG_IP}/24", "dev", peer)
        eg.sh("ip", "link", "set", peer, "up")
        yield
    finally:
        subprocess.run([ip, "link", "delete", host], check=False, capture_output=True)


async def test_the_external_service_is_reached_through_the_egress_and_not_without_it(procs: ProcessGroup) -> None:
    with netns("eg") as eg, netns("ext") as ext, root_link(eg), veth(eg, [f"{EG_OUT}/24"], ext, [f"{EXT_IP}/24"]):
        backend_port = free_port()
        ext.start("http-server", EXT_IP, str(backend_port), EXT)
        assert not connects(EXT_IP, backend_port), "the root namespace must not reach the ExternalService"
        assert eg.sh(sys.executable, "-c", PROBE.format(EXT_IP, backend_port), check=False).returncode == 0
        await through_egress_only(procs, eg, backend_port)


# A TCP connection from inside a namespace.
PROBE = "import socket; socket.create_connection(({!r}, {}), timeout=3).close()"


async def through_egress_only(procs: ProcessGroup, eg: Netns, backend_port: int) -> None:
    g = await procs.global_cp()
    for doc in (egress_mesh(on=True), factory.traffic_permission()):
        r = await put(g, doc)
        assert r.status_code in (200, 201), r.text
    es = factory.external_service(EXT, address=f"{EXT_IP}:{backend_port}", tags={"kuma.io/protocol": "http"})
    r = await put(g, es)
    assert r.status_code in (200, 201), r.text
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--bind-address", "0.0.0.0", "--dp-server-tls-san", R_IP)

    token_file = procs.workdir / "egress.token"
    token_file.write_text(await dataplane_token(z, {"mesh": "default", "name": "egress-1", "type": "egress"}))
    egress = DpProcess(
        procs.workdir,
        z.ports["xds"],
        "--proxy-type",
        "egress",
        "--dataplane",
        json.dumps(factory.zone_egress("egress-1", address=EG_IP, port=free_port())),
        ca_cert_file=zone_ca(procs, z),
        token_file=token_file,
        prefix=eg.command([]),
        log_name="egress.log",
        cp_host=R_IP,
    )
    outbound = free_port()
    app = await zone_dp(procs, z, json.dumps(sidecar(outbound)))
    answer = f"{EXT} /hello"

    async def reached() -> bool:
        return await body(outbound) == answer

    async def refused() -> bool:
        return await body(outbound) == ""

    try:
        try:
            await eventually(reached, timeout=60, what="ext through the egress")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{egress.logs()[-2000:]}\n{app.logs()[-2000:]}") from None

        r = await put(g, egress_mesh(on=False))
        assert r.status_code == 200, r.text
        await eventually(refused, timeout=60, what="the direct route failing")
        for _ in range(3):
            assert await refused()  # no route from the sidecar to the ExternalService

        r = await put(g, egress_mesh(on=True))
        assert r.status_code == 200, r.text
        await eventually(reached, timeout=60, what="ext through the egress again")
    finally:
        app.stop()
        egress.stop()
