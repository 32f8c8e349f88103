"""Cross-mesh through two real Envoys (gateway.md, "Cross-mesh"): mesh `a`'s client reaches mesh `b`'s gateway
by its `.mesh` name, over mTLS with mesh certificates, and plaintext clients are refused.

The real pipeline minus processes (tests/support/gateway_harness.py): Universal resources loaded with
`codec.load`, real CAs (meshgate.mtls), `generate` for both proxies with one `CrossMesh`, both snapshots served
by the real delta ADS server, and two real Envoys:

    httpx --HTTP--> a's delegated gateway Envoy (VIP:port of internal.edge.b.mesh)
          --mTLS--> b's builtin gateway Envoy (crossMesh listener, 127.0.0.1:port)
          --mTLS--> echo's sidecar Envoy (mesh b) --HTTP--> echo

The VIP is inside 127.0.0.0/8, so Envoy binds it on loopback with no set-up, and it listens on the gateway
listener's port, as a cross-mesh VIP does. Every server and Envoy is stopped by its own handle.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import httpx
import pytest

from meshgate.mtls import LeafCache, generate_ca
from meshgate.testing import factory
from meshgate.xds import MeshContext, VipOutbound, generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.crossmesh import CrossMesh
from tests.adapter.test_gateway_vips import free_vip
from tests.support.cross_mesh import NAME, mesh_b, mtls_mesh
from tests.support.cross_mesh import kong as kong_doc
from tests.support.envoy import Envoy, free_port, running_envoy
from tests.support.gateway_harness import ads_server, load, recording_backend
from tests.support.wait import eventually


async def _stat(envoy: Envoy, pattern: str) -> int:
    """The sum of the counters whose name matches `pattern` (a regex), from the admin `/stats`."""
    resp = await envoy.client.get("/stats", params={"filter": pattern})
    resp.raise_for_status()
    return sum(int(m.group(1)) for m in re.finditer(r": (\d+)$", resp.text, re.MULTILINE))


async def test_a_client_in_mesh_a_reaches_mesh_bs_gateway_over_mtls_and_plaintext_is_refused(tmp_path: Path) -> None:
    cas = {"a": generate_ca("a"), "b": generate_ca("b")}
    gateway_port = free_port()
    vip_address = free_vip(gateway_port, avoid={"127.0.0.1"})
    vip = VipOutbound(vip_address, gateway_port, "edge", "gateway", "b", "edge", NAME)
    async with ads_server() as ads, recording_backend("echo") as echo:
        docs = mesh_b(
            gateway_port=gateway_port,
            gateway_address="127.0.0.1",
            echo_address="127.0.0.1",
            echo_port=free_port(),
            echo_service_port=echo.port,
        )
        b = [load(doc) for doc in docs]
        kong = load(kong_doc("127.0.0.1"))
        gateways = [r for r in b if r.kind == "MeshGateway"]
        routes = [r for r in b if r.kind == "MeshGatewayRoute"]
        dataplanes_b = [r for r in b if r.kind == "Dataplane"]
        cross = CrossMesh(cas, gateways=gateways, dataplanes=dataplanes_b, zone="zone-1", leaves=LeafCache())
        (edge,) = [d for d in dataplanes_b if d.meta.name == "edge-1"]
        (echo_dp,) = [d for d in dataplanes_b if d.meta.name == "echo-1"]
        # Mesh b has mTLS (crossMesh needs it), so its gateway reaches echo through echo's sidecar, over mTLS.
        gw_ctx = MeshContext.build(
            "b",
            mesh_resource=load(mtls_mesh("b")),
            gateways=gateways,
            routes=routes,
            dataplanes=dataplanes_b,
            zone="zone-1",
            cross_mesh=cross,
            policies={"TrafficPermission": [load(factory.traffic_permission(mesh="b"))]},
        )
        gw_snap = generate(edge, gw_ctx)
        echo_snap = generate(echo_dp, gw_ctx)
        client_ctx = MeshContext.build(
            "a", mesh_resource=load(mtls_mesh("a")), dataplanes=[kong], zone="zone-1", vips=[vip], cross_mesh=cross
        )
        client_snap = generate(kong, client_ctx)
        assert gw_snap.problems == ()
        assert echo_snap.problems == ()
        assert client_snap.problems == ()
        ads.store.set(ProxyId("b", "edge-1"), gw_snap)
        ads.store.set(ProxyId("b", "echo-1"), echo_snap)
        ads.store.set(ProxyId("a", "kong-1"), client_snap)
        async with (
            running_envoy(tmp_path, "b.echo-1", ads.port, name="echo-sidecar-b"),
            running_envoy(tmp_path, "b.edge-1", ads.port, name="gateway-b") as gateway_envoy,
            running_envoy(tmp_path, "a.kong-1", ads.port, name="client-a") as client_envoy,
            httpx.AsyncClient(timeout=5.0) as client,
        ):

            async def reached() -> bool:
                try:
                    resp = await client.get(f"http://{vip_address}:{gateway_port}/hello", headers={"Host": NAME})
                except httpx.TransportError:
                    return False
                return resp.status_code == 200 and resp.text == "echo /hello"

            try:
                await eventually(reached, what=f"echo through {NAME} at {vip_address}:{gateway_port}")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{client_envoy.logs()}\n{gateway_envoy.logs()}") from None
            assert echo.requests[-1].headers["host"] == NAME
            # The hop between the Envoys was TLS, with a client certificate the gateway verified.
            assert await _stat(gateway_envoy, rf"^listener\.127\.0\.0\.1_{gateway_port}\.ssl\.handshake$") >= 1
            assert await _stat(gateway_envoy, r"ssl\.no_certificate$") == 0
            assert await _stat(client_envoy, r"^cluster\.edge-.*\.ssl\.handshake$") >= 1

            # Plaintext HTTP straight to the crossMesh listener: no filter chain takes it, the connection closes.
            seen = len(echo.requests)
            with pytest.raises(httpx.TransportError):
                await client.get(f"http://127.0.0.1:{gateway_port}/plain", headers={"Host": NAME})

            # TLS without a client certificate is refused too.
            ca_file = tmp_path / "b-ca.pem"
            ca_file.write_bytes(cas["b"].cert_pem)
            no_cert = ssl.create_default_context(cafile=str(ca_file))
            no_cert.check_hostname = False
            # With TLS 1.3 the server checks the client's certificate after the client's handshake is done, so its
            # alert may surface on the first read as a bare ssl.SSLError rather than as httpx's ConnectError.
            refused = (httpx.TransportError, ssl.SSLError)
            async with httpx.AsyncClient(timeout=5.0, verify=no_cert) as tls_client:
                with pytest.raises(refused):
                    await tls_client.get(f"https://127.0.0.1:{gateway_port}/nocert", headers={"Host": NAME})

            # A certificate of another CA (not a mesh CA) is refused as well.
            stranger = generate_ca("stranger")
            leaf = LeafCache().leaf(stranger, "stranger", "x")
            (tmp_path / "stranger.crt").write_bytes(leaf.cert_pem)
            (tmp_path / "stranger.key").write_bytes(leaf.key_pem)
            no_cert.load_cert_chain(str(tmp_path / "stranger.crt"), str(tmp_path / "stranger.key"))
            async with httpx.AsyncClient(timeout=5.0, verify=no_cert) as tls_client:
                with pytest.raises(refused):
                    await tls_client.get(f"https://127.0.0.1:{gateway_port}/stranger", headers={"Host": NAME})
            assert len(echo.requests) == seen, "nothing refused reached the backend"

            # A mesh `a` certificate is accepted directly, and the gateway presents mesh `b`'s identity.
            mesh_a = LeafCache().leaf(cas["a"], "a", "other-client")
            (tmp_path / "a.crt").write_bytes(mesh_a.cert_pem)
            (tmp_path / "a.key").write_bytes(mesh_a.key_pem)
            good = ssl.create_default_context(cafile=str(ca_file))
            good.check_hostname = False
            good.load_cert_chain(str(tmp_path / "a.crt"), str(tmp_path / "a.key"))
            async with httpx.AsyncClient(timeout=5.0, verify=good) as tls_client:
                resp = await tls_client.get(f"https://127.0.0.1:{gateway_port}/direct", headers={"Host": NAME})
            assert resp.status_code == 200
            assert resp.text == "echo /direct"
