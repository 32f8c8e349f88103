"""A gateway and a sidecar in a mesh with mTLS, through two real Envoys (issue 14, Deliver 1 and 2).

    httpx --HTTP--> gateway Envoy `edge` (builtin, 127.0.0.1:listen)
          --mTLS (SNI app{mesh=default}, SDS certificates)--> sidecar Envoy `app-1` (inbound 127.0.0.1:inbound)
          --HTTP--> the application (127.0.0.1:servicePort)

Both configs come from `generate` with one real CA (meshgate.mtls) and are served by the real delta ADS server,
certificates as SDS `Secret`s on the same stream. The sidecar refuses plaintext and clients without a mesh
certificate; a gateway the TrafficPermission does not name gets the sidecar's 403; a new leaf and a new CA
reach both Envoys over SDS without a restart and without touching a listener or a cluster.
"""

from __future__ import annotations

import json
import ssl
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshgate.mtls import CertificateAuthority, LeafCache, generate_ca
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
    to,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio

EDGE = ProxyId("default", "edge-1")
APP = ProxyId("default", "app-1")


def sidecar_dataplane(inbound: int, service_port: int) -> dict[str, Any]:
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
                    "tags": {"kuma.io/service": "app", "kuma.io/protocol": "http", "version": "v1"},
                }
            ],
        },
    }


TO_APP = rule({"path": {"match": "PREFIX", "value": "/"}}, backends=to("app"))


def push(
    ads: AdsServer, *, ca: CertificateAuthority, leaves: LeafCache, listen: int, inbound: int, app: int, source: str
) -> None:
    """Both proxies' snapshots; the TrafficPermission to `app` names `source` as its only source."""
    dataplanes = [load(builtin_gateway_dataplane("edge-1", "edge")), load(sidecar_dataplane(inbound, app))]
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=factory.resource(factory.mtls_mesh()),
        gateways=[load(gateway("edge", "edge", [{"port": listen, "protocol": "HTTP"}]))],
        routes=[
            load(
                http_route(
                    "r",
                    [TO_APP],
                    selector={"kuma.io/service": "edge"},
                )
            )
        ],
        dataplanes=dataplanes,
        cross_mesh=CrossMesh({"default": ca}, zone="zone-1", leaves=leaves),
        policies={
            "TrafficPermission": [
                factory.resource(factory.traffic_permission("to-app", source=source, destination="app"))
            ]
        },
    )
    for proxy_id, dp in zip((EDGE, APP), dataplanes, strict=True):
        snapshot = generate(dp, ctx)
        assert not snapshot.problems, snapshot.problems
        ads.store.set(proxy_id, snapshot)


async def certs(envoy: Envoy) -> dict[str, Any]:
    resp = await envoy.client.get("/certs")
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


async def serials(envoy: Envoy) -> tuple[set[str], set[str]]:
    """(serial numbers of the certificates Envoy presents, of the CAs it trusts), from its admin `/certs`."""
    mine: set[str] = set()
    cas: set[str] = set()
    for context in (await certs(envoy)).get("certificates", []):
        mine.update(c["serial_number"] for c in context.get("cert_chain", []))
        cas.update(c["serial_number"] for c in context.get("ca_cert", []))
    return mine, cas


async def no_inline_keys(envoy: Envoy) -> None:
    """Listeners and clusters in the config dump carry no certificate or key: only SDS names."""
    for section in ("ListenersConfigDump", "ClustersConfigDump"):
        text = json.dumps(await envoy.dump_section(section))
        assert "PRIVATE KEY" not in text, section
        assert "private_key" not in text, section
        assert "BEGIN CERTIFICATE" not in text, section
    assert "identity_cert:secret:default" in json.dumps(await envoy.dump_section("SecretsConfigDump"))


async def test_gateway_to_sidecar_over_mtls_with_sds_rbac_and_rotation(tmp_path: Path) -> None:
    listen, inbound = free_port(), free_port()
    ca = generate_ca("default")
    # Every leaf is due at once (issued 5 minutes in the past with a 1 minute life): each push issues new ones.
    leaves = LeafCache(validity=timedelta(minutes=1))
    async with ads_server() as ads, recording_backend("app") as app:

        def publish(*, ca: CertificateAuthority = ca, source: str = "edge") -> None:
            push(ads, ca=ca, leaves=leaves, listen=listen, inbound=inbound, app=app.port, source=source)

        publish()
        async with (
            running_envoy(tmp_path, str(APP), ads.port, name="sidecar") as sidecar,
            running_envoy(tmp_path, str(EDGE), ads.port, name="edge") as edge,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}", timeout=10.0) as http,
        ):

            async def through(status: int) -> bool:
                try:
                    return (await http.get("/hello")).status_code == status
                except httpx.TransportError:
                    return False

            try:
                await eventually(lambda: through(200), what="gateway -> sidecar -> app over mTLS")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{edge.logs()}\n{sidecar.logs()}") from None
            resp = await http.get("/hello")
            assert resp.text == "app /hello"
            assert app.requests, "the application saw nothing"

            # The gateway's endpoint is the sidecar's inbound, never the application's port.
            hosts = [
                h["address"]["socket_address"]["port_value"]
                for c in (await edge.clusters())["cluster_statuses"]
                if c["name"].startswith("app-")
                for h in c.get("host_statuses", [])
            ]
            assert hosts == [inbound]
            # The application was reached by the sidecar: its local cluster counted the requests, over mTLS.
            stats = (await sidecar.client.get("/stats", params={"filter": "localhost_"})).text
            assert f"cluster.localhost_{app.port}.upstream_rq_total: 0" not in stats
            assert f"cluster.localhost_{app.port}.upstream_rq_total" in stats
            edge_stats = (await edge.client.get("/stats", params={"filter": r"ssl\.handshake"})).text
            assert any(int(line.rsplit(": ", 1)[1]) > 0 for line in edge_stats.splitlines() if "app-" in line)

            # Plaintext straight to the inbound: no filter chain speaks it, the connection is closed.
            with pytest.raises(httpx.TransportError):
                async with httpx.AsyncClient(timeout=5.0) as plain:
                    await plain.get(f"http://127.0.0.1:{inbound}/hello")
            # TLS without a mesh client certificate: the handshake is refused.
            no_cert = ssl.create_default_context()
            no_cert.check_hostname = False
            no_cert.verify_mode = ssl.CERT_NONE
            with pytest.raises((httpx.TransportError, ssl.SSLError)):
                async with httpx.AsyncClient(timeout=5.0, verify=no_cert) as tls_client:
                    await tls_client.get(f"https://127.0.0.1:{inbound}/hello")
            before = len(app.requests)

            # No key or certificate inline in listeners or clusters: Envoy holds them as SDS secrets.
            await no_inline_keys(edge)
            await no_inline_keys(sidecar)

            # Rotation: new leaves (same CA), then a new CA; each reaches Envoy over SDS, with no restart.
            pids = (edge.proc.pid, sidecar.proc.pid)
            versions = {p: ads.types(p) for p in (EDGE, APP)}
            old_leaf, old_ca = await serials(sidecar)
            assert old_leaf
            assert old_ca
            publish()

            async def new_leaf() -> bool:
                leaf, trusted = await serials(sidecar)
                return bool(leaf) and not leaf & old_leaf and trusted == old_ca

            await eventually(new_leaf, what="the sidecar's new leaf over SDS")
            await eventually(lambda: through(200), what="traffic on the new leaves")

            new_ca = generate_ca("default")
            publish(ca=new_ca)

            async def ca_changed(envoy: Envoy) -> bool:
                _, trusted = await serials(envoy)
                return bool(trusted) and not trusted & old_ca

            await eventually(lambda: ca_changed(sidecar), what="the sidecar trusts the new CA")
            await eventually(lambda: ca_changed(edge), what="the gateway trusts the new CA")
            await eventually(lambda: through(200), what="traffic under the new CA")
            assert (edge.proc.pid, sidecar.proc.pid) == pids
            assert edge.proc.poll() is None
            assert sidecar.proc.poll() is None
            for proxy in (EDGE, APP):
                # Listeners and clusters were not re-sent: only the Secrets changed.
                now = ads.types(proxy)
                for kind in ("Listener", "Cluster"):
                    assert now[kind]["sent"] == versions[proxy][kind]["sent"], (proxy, kind)
                assert now["Secret"]["sent"] > versions[proxy]["Secret"]["sent"], proxy

            # TrafficPermission at the destination: the sidecar refuses a gateway it does not name.
            publish(ca=new_ca, source="someone-else")
            await eventually(lambda: through(403), what="the sidecar's 403 for a gateway not permitted")
            served = len(app.requests)
            denied = await http.get("/hello")
            assert denied.status_code == 403
            assert denied.text == "RBAC: access denied"
            assert len(app.requests) == served
            assert before <= served
