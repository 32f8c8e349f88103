"""mTLS PERMISSIVE mode on a sidecar's inbound, through real Envoys (the model: test_sidecar_mtls.py).

    httpx --HTTP--> gateway Envoy `edge` --mesh mTLS (ALPN kuma)--> sidecar Envoy `app-1` --> the application
    httpx --plaintext-----------------------------------------------^

With the mesh's mTLS backend in PERMISSIVE mode the sidecar's inbound takes both: the gateway's mTLS lands on
the mesh chain (where TrafficPermission is enforced), a plaintext client on the raw_buffer chain (where it is
not, as in Kuma), and TLS that is not the mesh's is passed to the application undecrypted. Switching the Mesh
to STRICT closes the plaintext door over LDS, with the same Envoy processes; switching back opens it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshgate.mtls import LeafCache, generate_ca
from meshgate.testing import factory
from meshgate.xds import MeshContext, generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.crossmesh import CrossMesh
from tests.support.envoy import Envoy, free_port, running_envoy
from tests.support.gateway_harness import (
    AdsServer,
    ads_server,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    load,
    recording_backend,
    rule,
    self_signed,
    tls_backend,
    to,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio

EDGE = ProxyId("default", "edge-1")
APP = ProxyId("default", "app-1")
TO_APP = rule({"path": {"match": "PREFIX", "value": "/"}}, backends=to("app"))


def sidecar_dataplane(inbound: int, service_port: int, protocol: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "default",
        "name": "app-1",
        "networking": {
            "address": "127.0.0.1",
            "inbound": [
                {
                    "port": inbound,
                    "servicePort": service_port,
                    "tags": {"kuma.io/service": "app", "kuma.io/protocol": protocol},
                }
            ],
        },
    }


class Mesh:
    """Publishes the gateway's and the sidecar's snapshots for a Mesh in `mode`, one CA and leaf cache."""

    def __init__(self, ads: AdsServer, *, listen: int, inbound: int, app: int, protocol: str = "http") -> None:
        self.ads = ads
        self.ca = generate_ca("default")
        self.leaves = LeafCache()
        self.listen, self.inbound, self.app, self.protocol = listen, inbound, app, protocol

    def publish(self, mode: str, *, source: str = "edge") -> None:
        """`mode` of the mesh's one mTLS backend; the TrafficPermission to `app` names `source` only."""
        dataplanes = [
            load(builtin_gateway_dataplane("edge-1", "edge")),
            load(sidecar_dataplane(self.inbound, self.app, self.protocol)),
        ]
        ctx = MeshContext.build(
            "default",
            zone="zone-1",
            mesh_resource=factory.resource(factory.mtls_mesh(mode=mode)),
            gateways=[load(gateway("edge", "edge", [{"port": self.listen, "protocol": "HTTP"}]))],
            routes=[load(http_route("r", [TO_APP], selector={"kuma.io/service": "edge"}))],
            dataplanes=dataplanes,
            cross_mesh=CrossMesh({"default": self.ca}, zone="zone-1", leaves=self.leaves),
            policies={
                "TrafficPermission": [
                    factory.resource(factory.traffic_permission("to-app", source=source, destination="app"))
                ]
            },
        )
        for proxy_id, dp in zip((EDGE, APP), dataplanes, strict=True):
            snapshot = generate(dp, ctx)
            assert not snapshot.problems, snapshot.problems
            self.ads.store.set(proxy_id, snapshot)


async def status(url: str) -> int | None:
    """One request on a new connection (never one kept alive from an older listener): its status, or None when
    the connection is refused or closed."""
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            return (await client.get(url)).status_code
    except httpx.TransportError:
        return None


async def inbound_chains(sidecar: Envoy, name: str) -> list[dict[str, Any]]:
    """The active inbound listener's filter chains as the sidecar runs them (its config dump)."""
    for entry in (await sidecar.dump_section("ListenersConfigDump")).get("dynamic_listeners", []):
        if entry["name"] == name and "active_state" in entry:
            chains: list[dict[str, Any]] = entry["active_state"]["listener"]["filter_chains"]
            return chains
    return []


async def stat(envoy: Envoy, name: str) -> int:
    text = (await envoy.client.get("/stats", params={"filter": f"^{name}$"})).text
    return sum(int(line.rsplit(": ", 1)[1]) for line in text.splitlines() if line.startswith(f"{name}: "))


async def test_permissive_takes_plaintext_and_mtls_and_strict_closes_plaintext_at_runtime(tmp_path: Path) -> None:
    listen, inbound = free_port(), free_port()
    async with ads_server() as ads, recording_backend("app") as app:
        mesh = Mesh(ads, listen=listen, inbound=inbound, app=app.port)
        mesh.publish("PERMISSIVE")
        async with (
            running_envoy(tmp_path, str(APP), ads.port, name="sidecar") as sidecar,
            running_envoy(tmp_path, str(EDGE), ads.port, name="edge") as edge,
        ):
            through_gateway = f"http://127.0.0.1:{listen}/hello"
            plaintext = f"http://127.0.0.1:{inbound}/hello"

            async def answers(url: str, expected: int | None) -> bool:
                return await status(url) == expected

            try:
                await eventually(lambda: answers(through_gateway, 200), what="gateway -> sidecar over mTLS")
                await eventually(lambda: answers(plaintext, 200), what="plaintext -> sidecar")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{edge.logs()}\n{sidecar.logs()}") from None
            async with httpx.AsyncClient(timeout=5.0) as client:
                assert (await client.get(plaintext)).text == "app /hello"
                assert (await client.get(through_gateway)).text == "app /hello"
            chains = await inbound_chains(sidecar, f"inbound:127.0.0.1:{inbound}")
            assert [c.get("filter_chain_match", {}) for c in chains] == [
                {"transport_protocol": "raw_buffer"},
                {"transport_protocol": "tls"},
                {"transport_protocol": "tls", "application_protocols": ["kuma"]},
            ]
            # The gateway's requests took the mesh chain: the only one with TLS and an RBAC filter.
            rbac_allowed = f"http.localhost_{app.port}.rbac.allowed"
            assert await stat(sidecar, rbac_allowed) > 0
            handshakes = await stat(sidecar, f"listener.127.0.0.1_{inbound}.ssl.handshake")
            assert handshakes > 0

            # TrafficPermission binds mesh clients only: a gateway it does not name gets 403, plaintext still 200.
            mesh.publish("PERMISSIVE", source="someone-else")
            await eventually(lambda: answers(through_gateway, 403), what="the sidecar's 403 for the gateway")
            assert await status(plaintext) == 200

            # STRICT at runtime: the plaintext door closes, mTLS still works, same processes, a new listener.
            pids = (edge.proc.pid, sidecar.proc.pid)
            listeners_sent = ads.types(APP)["Listener"]["sent"]
            mesh.publish("STRICT")
            await eventually(lambda: answers(plaintext, None), what="STRICT refuses plaintext")
            await eventually(lambda: answers(through_gateway, 200), what="mTLS under STRICT")
            assert await status(plaintext) is None
            served = len(app.requests)
            assert await status(plaintext) is None
            assert len(app.requests) == served, "plaintext reached the application under STRICT"
            chains = await inbound_chains(sidecar, f"inbound:127.0.0.1:{inbound}")
            assert len(chains) == 1
            assert "filter_chain_match" not in chains[0]
            assert chains[0]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
            assert ads.types(APP)["Listener"]["sent"] > listeners_sent
            assert (edge.proc.pid, sidecar.proc.pid) == pids
            assert edge.proc.poll() is None
            assert sidecar.proc.poll() is None

            # And back: PERMISSIVE opens it again.
            mesh.publish("PERMISSIVE")
            await eventually(lambda: answers(plaintext, 200), what="plaintext again under PERMISSIVE")
            assert await status(through_gateway) == 200
            assert (edge.proc.pid, sidecar.proc.pid) == pids


async def read_line_over_tls(port: int, context: ssl.SSLContext, hostname: str) -> str | None:
    """The first line a TLS server at 127.0.0.1:`port` sends; None when the handshake or connection fails."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname=hostname)
    except (OSError, ssl.SSLError):
        return None
    try:
        return (await reader.readline()).decode() or None
    except (OSError, ssl.SSLError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def test_permissive_passes_the_applications_own_tls_through(tmp_path: Path) -> None:
    """TLS without the mesh's ALPN takes Kuma's second chain: a TCP proxy, so the client's handshake is with the
    application (its own certificate, checked by the client), never with Envoy. STRICT has no such chain."""
    cert = self_signed(tmp_path / "certs", "app.local")
    inbound = free_port()
    async with ads_server() as ads, tls_backend("app", cert) as app:
        mesh = Mesh(ads, listen=free_port(), inbound=inbound, app=app.port, protocol="tcp")
        mesh.publish("PERMISSIVE")
        async with running_envoy(tmp_path, str(APP), ads.port, name="sidecar") as sidecar:

            async def app_tls(expected: str | None) -> bool:
                return await read_line_over_tls(inbound, cert.client_context(), cert.hostname) == expected

            try:
                await eventually(lambda: app_tls("app\n"), what="the application's TLS through the sidecar")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{sidecar.logs()}") from None
            assert await stat(sidecar, f"listener.127.0.0.1_{inbound}.ssl.handshake") == 0
            mesh.publish("STRICT")
            # Now the sidecar answers the handshake itself, with the mesh's certificate: the client refuses it.
            await eventually(lambda: app_tls(None), what="STRICT: no TLS passed through")
