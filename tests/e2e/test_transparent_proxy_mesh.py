"""A `.mesh` name on the default VIP range, through the transparent proxy, in a real network namespace (issue 14,
Deliver 3 and 5).

    root namespace: global and zone (API, xDS, DNS on 0.0.0.0), `backend` (127.0.0.1) behind its meshgate-dp
                    sidecar (inbound on HOST_IP), HOST_IP on one end of a veth
    namespace `client`: CLIENT_IP on the other end, default route to HOST_IP; `meshgatectl install
                    transparent-proxy --redirect-dns`; `meshgate-dp run --transparent-proxy` as uid 5678 (Envoy
                    and the DNS server on 15053); an application as uid 1234

The application resolves `backend.mesh` through resolv.conf's server, which the rules send to meshgate-dp's DNS
server, which asks the zone's DNS: a VIP in 240.0.0.0/4 (the zone's default --vip-cidr), held by no interface.
Its connection to VIP:80 is redirected to 15001, where Envoy's `outbound:passthrough:ipv4` (use_original_dst)
hands it to the unbound `outbound:<vip>:80`, which routes it to backend's sidecar across the veth. Before the
proxy's configuration arrives the same request fails; after `uninstall` too. The zone runs in the root namespace
for simplicity: only the client's namespace has the rules, and that is what is under test.

Needs root, iproute2, iptables and Envoy: skipped on a developer machine without them, failing under CI
(meshgate.testing.tools).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from meshgate.testing.tools import ENVOY, IPTABLES_RESTORE, NETNS, require
from tests.support.dp import dataplane_token, zone_ca, zone_dp
from tests.support.envoy import http_backend
from tests.support.netns import Netns, netns
from tests.support.processes import ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e]

DP_UID = 5678
APP_UID = 1234
_NET = f"10.{200 + os.getpid() % 50}.{os.getpid() % 250}"
HOST_IP = f"{_NET}.1"
CLIENT_IP = f"{_NET}.2"
CLIENT_INBOUND = 9000


@contextmanager
def root_veth(ns: Netns) -> Iterator[None]:
    """A veth pair from the root namespace (HOST_IP) to `ns` (CLIENT_IP, default route to HOST_IP); the root
    end is deleted by its name on exit (it would also go with the namespace)."""
    ip = str(require(NETNS))
    host, peer = f"mgtph{os.getpid() % 100000}", f"mgtpc{os.getpid() % 100000}"
    subprocess.run([ip, "link", "add", host, "type", "veth", "peer", "name", peer, "netns", ns.name], check=True)
    try:
        subprocess.run([ip, "addr", "add", f"{HOST_IP}/24", "dev", host], check=True)
        subprocess.run([ip, "link", "set", host, "up"], check=True)
        ns.sh("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", peer)
        ns.sh("ip", "link", "set", peer, "up")
        ns.sh("ip", "route", "add", "default", "via", HOST_IP)
        yield
    finally:
        subprocess.run([ip, "link", "delete", host], check=False, capture_output=True)


def dp_home(tmp_path: Path) -> Path:
    """A directory uid DP_UID owns, its token and CA in it: typer checks them with access(2), which ignores the
    CAP_DAC_READ_SEARCH the uid runs with, so they cannot sit under pytest's root-only (0700) tmp_path. A
    symlink from tmp_path makes it go with the test's directory; `_cleanup` removes it."""
    home = Path(tempfile.mkdtemp(prefix="mg-tp-dp-"))
    os.chown(home, DP_UID, DP_UID)
    _homes.append(home)
    (tmp_path / "client-dp-home").symlink_to(home)
    return home


_homes: list[Path] = []


@pytest.fixture(autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    while _homes:
        shutil.rmtree(_homes.pop(), ignore_errors=True)


def backend_dataplane(inbound: int, service_port: int) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": "backend-1",
        "networking": {
            "address": HOST_IP,
            "inbound": [
                {
                    "port": inbound,
                    "serviceAddress": "127.0.0.1",
                    "servicePort": service_port,
                    "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"},
                }
            ],
        },
    }


CLIENT = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "client-1",
    "networking": {
        "address": CLIENT_IP,
        "inbound": [{"port": CLIENT_INBOUND, "tags": {"kuma.io/service": "client", "kuma.io/protocol": "http"}}],
    },
}


async def get(client: Netns, path: str) -> str:
    """In a thread: the backend answers on this test's event loop."""
    done = await anyio.to_thread.run_sync(lambda: client.run("http-get", "backend.mesh", "80", path, uid=APP_UID))
    return done.stdout.strip()


async def test_backend_mesh_resolves_to_a_240_vip_and_is_captured_to_the_backend(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    require(IPTABLES_RESTORE)
    require(ENVOY)
    g = await procs.global_cp()
    z = await procs.zone_cp(
        "zone-1", g.ports["kds"], "--bind-address", "0.0.0.0", "--dp-server-tls-san", HOST_IP
    )  # the default --vip-cidr 240.0.0.0/4
    async with httpx.AsyncClient(base_url=g.url()) as c:
        r = await c.put("/meshes/default", json={"type": "Mesh", "name": "default"})
        assert r.status_code in (200, 201), r.text
    with netns("client") as client, root_veth(client):
        async with http_backend("backend") as app:
            backend_dp = await zone_dp(
                procs, z, json.dumps(backend_dataplane(free_port(), app.port)), workdir=tmp_path / "backend"
            )
            try:
                client.resolv_conf(f"nameserver {HOST_IP}\n")
                home = dp_home(tmp_path)
                token = home / "token"
                token.write_text(await dataplane_token(z, {"mesh": "default", "name": "client-1"}))
                ca = home / "xds-ca.crt"
                shutil.copyfile(zone_ca(procs, z), ca)
                for path in (token, ca):
                    os.chown(path, DP_UID, DP_UID)
                assert (await get(client, "/")).startswith("failed"), "nothing answers .mesh yet"

                done = client.run(
                    "meshgatectl", "install", "transparent-proxy", "--kuma-dp-uid", str(DP_UID), "--redirect-dns"
                )
                assert done.returncode == 0, done.stdout + done.stderr
                admin = free_port()
                dp = client.spawn(
                    [
                        sys.executable,
                        "-m",
                        "meshgate.dp",
                        "run",
                        "--cp-address",
                        f"https://{HOST_IP}:{z.ports['xds']}",
                        "--ca-cert-file",
                        str(ca),
                        "--dataplane-token-file",
                        str(token),
                        "--dataplane",
                        json.dumps(CLIENT),
                        "--transparent-proxy",
                        "--dns-zone-address",
                        f"{HOST_IP}:{z.ports['dns']}",
                        "--admin-port",
                        str(admin),
                        "--config-dir",
                        str(home),
                        "--concurrency",
                        "1",
                        "--log-format",
                        "json",
                    ],
                    uid=DP_UID,
                    log=tmp_path / "client-dp.log",
                )
                answer = ""

                async def through_the_proxy() -> bool:
                    nonlocal answer
                    answer = await get(client, "/hello")
                    return answer.endswith(" 200 backend /hello")

                try:
                    await eventually(through_the_proxy, timeout=60, what="http://backend.mesh/hello from the client")
                except AssertionError as exc:
                    logs = (tmp_path / "client-dp.log").read_text(errors="replace")[-4000:]
                    fetch = f"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{admin}/clusters').read().decode())"
                    logs += client.sh(sys.executable, "-c", fetch, check=False).stdout[-3000:]
                    logs += backend_dp.logs()[-3000:]
                    raise AssertionError(f"{exc}\nlast answer: {answer!r}\n{logs}\n{z.logs()}") from None
                vip = answer.split()[0]
                assert vip.startswith("240."), answer  # the default VIP range, on no interface
                hits = app.hits
                assert (await get(client, "/again")).endswith(" 200 backend /again")
                assert app.hits == hits + 1  # the backend itself answered, through its sidecar
                assert dp.poll() is None

                done = client.run("meshgatectl", "uninstall", "transparent-proxy")
                assert done.returncode == 0, done.stdout + done.stderr
                # Nothing redirects now: the resolver on HOST_IP does not exist, so .mesh no longer resolves.
                assert (await get(client, "/")).startswith("failed")
                assert "KUMA_" not in client.sh("iptables-save").stdout
            finally:
                backend_dp.stop()
