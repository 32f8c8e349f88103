"""Sidecar inbounds, mesh mTLS over SDS and the `provided` CA, as generated (meshgate.xds.inbound, xds.sds,
meshgate.mtls): names, SNI, SANs and RBAC principals as Kuma 2.7 builds them. Envoy runs them in
tests/adapter/test_sidecar_mtls.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import json_format

from meshgate.mtls import LeafCache, MtlsError, generate_ca, issue_leaf, load_provided_ca, provided_ca_data
from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import MeshContext, Snapshot, generate
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.sds import mtls_permissive, sni
from meshgate.xds.snapshot import SECRET

HTTP_RBAC = "envoy.filters.http.rbac"


def dataplane(name: str, inbounds: list[dict[str, Any]], *, mesh: str = "default") -> Resource:
    return codec.load(
        {"type": "Dataplane", "mesh": mesh, "name": name, "networking": {"address": "10.0.0.1", "inbound": inbounds}}
    )


def gateway_dp() -> Resource:
    return codec.load(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "kong-1",
            "networking": {
                "address": "10.0.0.9",
                "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": "kong"}},
            },
        }
    )


def inbound(port: int, service: str, *, service_port: int | None = None, **tags: str) -> dict[str, Any]:
    out: dict[str, Any] = {"port": port, "tags": {"kuma.io/service": service, **tags}}
    if service_port is not None:
        out["servicePort"] = service_port
    return out


def context(
    dataplanes: list[Resource],
    *,
    mtls: bool,
    permissions: list[Resource] = (),  # type: ignore[assignment]
    mode: str | None = None,
) -> MeshContext:
    mesh = factory.resource(factory.mtls_mesh(mode=mode) if mtls else factory.mesh())
    return MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=mesh,
        dataplanes=dataplanes,
        cross_mesh=CrossMesh({"default": generate_ca("default")}, zone="zone-1", leaves=LeafCache()),
        policies={"TrafficPermission": permissions},
    )


def as_json(snapshot: Snapshot) -> str:
    return json.dumps(
        {t: {n: json_format.MessageToDict(m) for n, m in snapshot[t].items()} for t in snapshot if t != SECRET}
    )


def test_an_inbound_forwards_to_the_service_port_in_plaintext_without_mtls() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080, **{"kuma.io/protocol": "http"})])
    snap = generate(app, context([app], mtls=False))
    assert snap.problems == ()
    listener = snap.listeners["inbound:10.0.0.1:8080"]
    assert listener.address.socket_address.port_value == 8080  # type: ignore[attr-defined]
    (chain,) = listener.filter_chains  # type: ignore[attr-defined]
    assert not chain.HasField("transport_socket")
    hcm = hcm_pb2.HttpConnectionManager()
    chain.filters[0].typed_config.Unpack(hcm)
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.router"]
    assert hcm.route_config.virtual_hosts[0].routes[0].route.cluster == "localhost:18080"
    local = snap.clusters["localhost:18080"]
    assert isinstance(local, cluster_pb2.Cluster)
    assert local.type == cluster_pb2.Cluster.STATIC
    address = local.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("10.0.0.1", 18080)
    assert SECRET not in snap


def test_an_inbound_on_the_applications_own_port_is_a_problem() -> None:
    app = dataplane("app-1", [inbound(8080, "app")])
    snap = generate(app, context([app], mtls=False))
    assert snap.listeners == {}
    assert any("set servicePort" in p for p in snap.problems)


def test_with_mtls_the_inbound_requires_the_mesh_certificate_and_rbac_names_the_sources() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080, version="v1")])
    permit = factory.resource(factory.traffic_permission("kong-to-app", source="kong", destination="app"))
    snap = generate(app, context([app], mtls=True, permissions=[permit]))
    assert snap.problems == ()
    (chain,) = snap.listeners["inbound:10.0.0.1:8080"].filter_chains  # type: ignore[attr-defined]
    downstream = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(downstream)
    assert downstream.require_client_certificate.value
    common = downstream.common_tls_context
    assert [c.name for c in common.tls_certificate_sds_secret_configs] == ["identity_cert:secret:default"]
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "mesh_ca:secret:default"
    assert combined.default_validation_context.match_typed_subject_alt_names[0].matcher.prefix == "spiffe://default/"
    assert chain.filters[0].name == "envoy.filters.network.rbac"  # TCP: Kuma's network RBAC, first
    rbac = network_rbac_pb2.RBAC()
    chain.filters[0].typed_config.Unpack(rbac)
    principal = rbac.rules.policies["kong-to-app"].principals[0]
    assert principal.authenticated.principal_name.exact == "spiffe://default/kong"
    assert rbac.stat_prefix == "inbound_10.0.0.1_8080."
    # The identity: every inbound service and tag, as URI SANs; the key only in the Secret.
    identity = snap[SECRET]["identity_cert:secret:default"]
    assert isinstance(identity, secret_pb2.Secret)
    cert = x509.load_pem_x509_certificate(identity.tls_certificate.certificate_chain.inline_bytes)
    uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(uris.get_values_for_type(x509.UniformResourceIdentifier)) == {
        "spiffe://default/app",
        "kuma://kuma.io/service/app",
        "kuma://version/v1",
    }
    assert "PRIVATE KEY" not in as_json(snap)


def test_with_mtls_and_no_permission_the_inbound_denies_everyone() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080)])
    snap = generate(app, context([app], mtls=True))
    (chain,) = snap.listeners["inbound:10.0.0.1:8080"].filter_chains  # type: ignore[attr-defined]
    rbac = network_rbac_pb2.RBAC()
    chain.filters[0].typed_config.Unpack(rbac)
    assert dict(rbac.rules.policies) == {}


def _unpacked(chain: Any) -> tuple[list[str], Any]:
    """(the chain's filter names, its HCM or None)."""
    names = [f.name for f in chain.filters]
    hcm = None
    if names[-1] == "envoy.filters.network.http_connection_manager":
        hcm = hcm_pb2.HttpConnectionManager()
        chain.filters[-1].typed_config.Unpack(hcm)
    return names, hcm


def test_permissive_tcp_inbound_has_kumas_three_chains_and_the_tls_inspector() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080)])
    permit = factory.resource(factory.traffic_permission("kong-to-app", source="kong", destination="app"))
    snap = generate(app, context([app], mtls=True, permissions=[permit], mode="PERMISSIVE"))
    assert snap.problems == ()
    listener = snap.listeners["inbound:10.0.0.1:8080"]
    assert isinstance(listener, listener_pb2.Listener)
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    assert listener.listener_filters[0].typed_config.Is(tls_inspector_pb2.TlsInspector.DESCRIPTOR)
    plaintext, app_tls, mesh_tls = listener.filter_chains
    # Kuma's order and matches; the chains are anonymous, as Kuma builds them.
    assert [(c.name, c.filter_chain_match.transport_protocol) for c in listener.filter_chains] == [
        ("", "raw_buffer"),
        ("", "tls"),
        ("", "tls"),
    ]
    assert [list(c.filter_chain_match.application_protocols) for c in listener.filter_chains] == [[], [], ["kuma"]]
    # Plaintext and the application's own TLS: straight to the application, not terminated, no RBAC.
    for chain in (plaintext, app_tls):
        assert not chain.HasField("transport_socket")
        assert [f.name for f in chain.filters] == ["envoy.filters.network.tcp_proxy"]
    # The mesh's mTLS: STRICT's chain, client certificate required, RBAC first.
    downstream = tls_pb2.DownstreamTlsContext()
    mesh_tls.transport_socket.typed_config.Unpack(downstream)
    assert downstream.require_client_certificate.value
    assert [f.name for f in mesh_tls.filters] == ["envoy.filters.network.rbac", "envoy.filters.network.tcp_proxy"]
    rbac = network_rbac_pb2.RBAC()
    mesh_tls.filters[0].typed_config.Unpack(rbac)
    principal = rbac.rules.policies["kong-to-app"].principals[0]
    assert principal.authenticated.principal_name.exact == "spiffe://default/kong"
    assert set(snap[SECRET]) == {"identity_cert:secret:default", "mesh_ca:secret:default"}


def test_permissive_http_inbound_enforces_rbac_on_the_mesh_chain_only() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080, **{"kuma.io/protocol": "http"})])
    snap = generate(app, context([app], mtls=True, mode="PERMISSIVE"))
    listener = snap.listeners["inbound:10.0.0.1:8080"]
    chains = listener.filter_chains  # type: ignore[attr-defined]
    assert len(chains) == 3
    for chain, http_filters in zip(
        chains,
        (["envoy.filters.http.router"], ["envoy.filters.http.router"], [HTTP_RBAC, "envoy.filters.http.router"]),
        strict=True,
    ):
        names, hcm = _unpacked(chain)
        assert names == ["envoy.filters.network.http_connection_manager"]
        assert [f.name for f in hcm.http_filters] == http_filters
        assert hcm.route_config.virtual_hosts[0].routes[0].route.cluster == "localhost:18080"
    assert chains[2].HasField("transport_socket")


def test_strict_written_or_not_is_one_mtls_chain_without_the_tls_inspector() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080)])
    default = generate(app, context([app], mtls=True)).listeners["inbound:10.0.0.1:8080"]
    strict = generate(app, context([app], mtls=True, mode="STRICT")).listeners["inbound:10.0.0.1:8080"]
    assert strict == default
    assert list(strict.listener_filters) == []  # type: ignore[attr-defined]
    (chain,) = strict.filter_chains  # type: ignore[attr-defined]
    assert not chain.HasField("filter_chain_match")
    assert chain.HasField("transport_socket")


def test_permissive_on_a_backend_not_enabled_leaves_the_inbound_plaintext() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080)])
    mesh = factory.resource(factory.mtls_mesh(enabled=None, mode="PERMISSIVE"))
    assert not mtls_permissive(mesh)
    ctx = MeshContext.build("default", zone="zone-1", mesh_resource=mesh, dataplanes=[app])
    snap = generate(app, ctx)
    (chain,) = snap.listeners["inbound:10.0.0.1:8080"].filter_chains  # type: ignore[attr-defined]
    assert not chain.HasField("transport_socket")
    assert list(snap.listeners["inbound:10.0.0.1:8080"].listener_filters) == []  # type: ignore[attr-defined]


def test_permissive_clusters_still_originate_mtls() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080)])
    kong = dataplane("kong-1", [inbound(7070, "kong", service_port=17070)])
    kong.spec.networking.outbound.add(port=9000).tags.update({"kuma.io/service": "app"})  # type: ignore[attr-defined]
    strict = generate(kong, context([app, kong], mtls=True))
    permissive = generate(kong, context([app, kong], mtls=True, mode="PERMISSIVE"))
    assert permissive.clusters == strict.clusters
    (cluster,) = [c for name, c in permissive.clusters.items() if not name.startswith("localhost:")]
    upstream = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(upstream)  # type: ignore[attr-defined]
    assert upstream.sni == "app{mesh=default}"
    assert list(upstream.common_tls_context.alpn_protocols) == ["kuma"]


def test_a_gateways_cluster_speaks_mtls_with_kumas_sni_as_its_own_identity() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080, version="v1")])
    kong = codec.load(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "kong-1",
            "networking": {
                "address": "10.0.0.9",
                "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": "kong"}},
                "outbound": [{"port": 9000, "tags": {"kuma.io/service": "app", "version": "v1"}}],
            },
        }
    )
    snap = generate(kong, context([app, kong], mtls=True))
    assert snap.problems == ()
    (cluster,) = snap.clusters.values()
    upstream = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(upstream)  # type: ignore[attr-defined]
    assert upstream.sni == "app{mesh=default,version=v1}"
    assert list(upstream.common_tls_context.alpn_protocols) == ["kuma"]
    san = upstream.common_tls_context.combined_validation_context.default_validation_context
    assert san.match_typed_subject_alt_names[0].matcher.exact == "spiffe://default/app"
    identity = snap[SECRET]["identity_cert:secret:default"]
    cert = x509.load_pem_x509_certificate(identity.tls_certificate.certificate_chain.inline_bytes)  # type: ignore[attr-defined]
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.UniformResourceIdentifier) == ["spiffe://default/kong"]
    # The endpoint is the sidecar's inbound port, not the application's.
    (assignment,) = snap.endpoints.values()
    assert assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 8080  # type: ignore[attr-defined]


def test_without_mtls_clusters_stay_plaintext() -> None:
    app = dataplane("app-1", [inbound(8080, "app")])
    kong = gateway_dp()
    snap = generate(kong, context([app, kong], mtls=False))
    assert SECRET not in snap


def test_mtls_on_without_a_ca_skips_inbounds_never_plaintext() -> None:
    app = dataplane("app-1", [inbound(8080, "app", service_port=18080)])
    ctx = MeshContext.build(
        "default", zone="zone-1", mesh_resource=factory.resource(factory.mtls_mesh()), dataplanes=[app]
    )
    snap = generate(app, ctx)
    assert snap.listeners == {}
    assert any("CA is not available" in p for p in snap.problems)


def test_sni_is_kumas() -> None:
    assert sni({"kuma.io/service": "backend"}, "default") == "backend{mesh=default}"
    assert sni({"kuma.io/service": "backend", "version": "2", "region": "eu"}, "m") == (
        "backend{mesh=m,region=eu,version=2}"
    )


def _rsa_ca(*, ca: bool = True, cert_sign: bool = True) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "provided")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=cert_sign,
                crl_sign=cert_sign,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def test_a_provided_ca_from_secrets_signs_leaves() -> None:
    cert, key = _rsa_ca()
    conf = {"cert": {"secret": "my-ca-cert"}, "key": {"secret": "my-ca-key"}}
    ca = load_provided_ca(*provided_ca_data(conf, {"my-ca-cert": cert, "my-ca-key": key}))
    leaf = issue_leaf(ca, "default", "app")
    x509.load_pem_x509_certificate(leaf.cert_pem).verify_directly_issued_by(ca.certificate)


def test_a_provided_ca_is_checked_with_kumas_messages() -> None:
    with pytest.raises(MtlsError, match=r"cert\[0\]: basic constraint 'CA' must be set to 'true'"):
        load_provided_ca(*_rsa_ca(ca=False))
    with pytest.raises(MtlsError, match=r"cert\[0\]: key usage extension 'keyCertSign' must be set"):
        load_provided_ca(*_rsa_ca(cert_sign=False))
    with pytest.raises(MtlsError, match="cert: not a valid TLS key pair"):
        load_provided_ca(_rsa_ca()[0], _rsa_ca()[1])
    with pytest.raises(MtlsError, match='Resource not found: type="Secret" name="nope"'):
        provided_ca_data({"cert": {"secret": "nope"}, "key": {"inlineString": "x"}}, {})
