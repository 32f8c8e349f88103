"""A gateway's Prometheus endpoint on a mesh with mTLS, through a real Envoy and meshgate-dp's metrics hijacker.

As Kuma's `secureMetricsWithMeshMtls`: a scraper needs the mesh's client certificate, except one on the
Dataplane's own address (a Prometheus beside it). The gateway Envoy's listener is on 127.0.0.1; a client that
connects from 127.0.0.1 is the Dataplane itself, one that binds 127.0.0.2 (still loopback) is another host.
The snapshot comes from `generate` with a real CA and is served by the real delta ADS server.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import anyio
import httpx
import pytest

from meshgate.dp.metrics import MetricsHijacker, dp_registry
from meshgate.mtls import LeafCache, generate_ca, issue_leaf
from meshgate.testing import factory
from meshgate.xds import MeshContext, generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.crossmesh import CrossMesh
from tests.support.envoy import free_port, running_envoy
from tests.support.gateway_harness import ads_server, builtin_gateway_dataplane, gateway, load
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio

EDGE = ProxyId("default", "edge-1")


async def test_scrapers_need_a_mesh_certificate_but_the_dataplanes_own_address(tmp_path: Path) -> None:
    ca = generate_ca("default")
    metrics_port = free_port()
    mesh = factory.mtls_mesh()
    mesh["metrics"] = {
        "enabledBackend": "prom",
        # Envoy's stats filter too: only server.* and cluster.* stats (a regex Envoy reads from the query).
        "backends": [
            {
                "name": "prom",
                "type": "prometheus",
                "conf": {"port": metrics_port, "envoy": {"filterRegex": "^(server|cluster)\\."}},
            }
        ],
    }
    socket = tmp_path / "kuma-mh-edge-1-default.sock"
    proxy = load(builtin_gateway_dataplane("edge-1", "edge"))
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=factory.resource(mesh),
        gateways=[load(gateway("edge", "edge", [{"port": free_port(), "protocol": "HTTP"}]))],
        dataplanes=[proxy],
        cross_mesh=CrossMesh({"default": ca}, zone="zone-1", leaves=LeafCache()),
    )
    snapshot = generate(proxy, ctx, metrics_socket=str(socket))
    assert not snapshot.problems, snapshot.problems

    leaf = issue_leaf(ca, "default", "prometheus")
    (tmp_path / "client.pem").write_bytes(leaf.cert_pem)
    (tmp_path / "client.key").write_bytes(leaf.key_pem)
    with_cert = ssl.create_default_context(cadata=ca.cert_pem.decode())
    with_cert.check_hostname = False  # the gateway presents a SPIFFE id, no host name
    with_cert.load_cert_chain(tmp_path / "client.pem", tmp_path / "client.key")
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    async with ads_server() as ads, running_envoy(tmp_path, str(EDGE), ads.port, name="edge") as envoy:
        registry, errors = dp_registry()
        hijacker = MetricsHijacker(socket, int(envoy.admin.rsplit(":", 1)[1]), registry, errors)
        async with anyio.create_task_group() as tg:
            await tg.start(hijacker.serve)
            ads.store.set(EDGE, snapshot)
            async with httpx.AsyncClient(timeout=5) as own:

                async def served() -> bool:
                    try:
                        return (await own.get(url)).status_code == 200
                    except httpx.TransportError:
                        return False

                await eventually(served, what=f"the metrics endpoint from the Dataplane's own address\n{envoy.logs()}")
                assert "envoy_server_live" in (await own.get(url)).text

            other = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
            async with httpx.AsyncClient(timeout=5, transport=other) as plaintext:
                with pytest.raises(httpx.TransportError):
                    await plaintext.get(url)

            # TLS, but no client certificate: refused in the handshake.
            no_cert = ssl.create_default_context(cadata=ca.cert_pem.decode())
            no_cert.check_hostname = False
            anonymous = httpx.AsyncHTTPTransport(local_address="127.0.0.2", verify=no_cert)
            async with httpx.AsyncClient(timeout=5, transport=anonymous) as tls_only:
                with pytest.raises((httpx.TransportError, ssl.SSLError)):
                    await tls_only.get(f"https://127.0.0.1:{metrics_port}/metrics")

            other_tls = httpx.AsyncHTTPTransport(local_address="127.0.0.2", verify=with_cert)
            async with httpx.AsyncClient(timeout=5, transport=other_tls) as scraper:
                resp = await scraper.get(f"https://127.0.0.1:{metrics_port}/metrics")
            assert resp.status_code == 200
            assert "envoy_server_live" in resp.text
            assert "envoy_cluster_upstream_cx_total" in resp.text
            assert "envoy_http_downstream_rq_total" not in resp.text  # filtered out (http.*)
            assert "process_resident_memory_bytes" in resp.text
            tg.cancel_scope.cancel()
