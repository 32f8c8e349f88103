"""ExternalService clusters as Kuma's gateway builds them (meshgate.xds.external_services), on generated messages."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import MeshContext, generate
from meshgate.xds.snapshot import CLUSTER, ROUTE


def _world(*services: dict[str, Any], secrets: dict[str, bytes] | None = None) -> tuple[Resource, MeshContext]:
    proxy = factory.resource(factory.gateway_dataplane("edge-1"))
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        gateways=[factory.resource(factory.gateway("edge"))],
        routes=[factory.resource(factory.http_route(backends=[factory.backend("httpbin")]))],
        dataplanes=[factory.resource(factory.dataplane("httpbin-1", "httpbin"))],
        secrets=secrets,
        resources={"ExternalService": [factory.resource(s) for s in services]},
    )
    return proxy, ctx


def _only_cluster(ctx_proxy: tuple[Resource, MeshContext]) -> tuple[cluster_pb2.Cluster, tuple[str, ...]]:
    proxy, ctx = ctx_proxy
    snap = generate(proxy, ctx)
    (cluster,) = snap.resources[CLUSTER].values()
    assert isinstance(cluster, cluster_pb2.Cluster)
    return cluster, snap.problems


def _tls(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    (match,) = cluster.transport_socket_matches
    out = tls_pb2.UpstreamTlsContext()
    assert match.transport_socket.typed_config.Unpack(out)
    return out


def test_an_external_service_wins_over_dataplanes_of_its_service_with_an_inline_dns_cluster() -> None:
    cluster, problems = _only_cluster(_world(factory.external_service(address="httpbin.org:80")))
    assert problems == ()
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.dns_lookup_family == cluster_pb2.Cluster.V4_ONLY
    (lb,) = cluster.load_assignment.endpoints[0].lb_endpoints
    assert (lb.endpoint.address.socket_address.address, lb.endpoint.address.socket_address.port_value) == (
        "httpbin.org",
        80,
    )
    assert not cluster.transport_socket_matches  # no TLS


def test_tls_defaults_sni_to_the_host_and_checks_the_san_against_it() -> None:
    tls = {"enabled": True, "caCert": {"inlineString": "CA"}, "allowRenegotiation": True}
    cluster, _ = _only_cluster(_world(factory.external_service(tls=tls)))
    (match,) = cluster.transport_socket_matches
    assert match.name == "httpbin.org"
    assert match.match.fields["kuma.io/external-service-name"].string_value == "httpbin"
    context = _tls(cluster)
    assert context.sni == "httpbin.org"
    assert context.allow_renegotiation
    validation = context.common_tls_context.validation_context
    assert validation.trusted_ca.inline_bytes == b"CA"
    assert [(m.san_type, m.matcher.exact) for m in validation.match_typed_subject_alt_names] == [
        (common_pb2.SubjectAltNameMatcher.DNS, "httpbin.org"),
        (common_pb2.SubjectAltNameMatcher.IP_ADDRESS, "httpbin.org"),
    ]
    assert not context.common_tls_context.tls_certificates


def test_an_ip_address_gets_a_static_cluster_no_default_sni_and_skip_verification_drops_the_san() -> None:
    tls = {"enabled": True, "caCert": {"secret": "ca"}, "skipHostnameVerification": True,
           "clientCert": {"secret": "crt"}, "clientKey": {"inline": "a2V5"}}  # fmt: skip
    world = _world(factory.external_service(address="10.1.1.1:443", tls=tls), secrets={"ca": b"C", "crt": b"X"})
    cluster, _ = _only_cluster(world)
    assert cluster.type == cluster_pb2.Cluster.STATIC
    context = _tls(cluster)
    assert context.sni == ""
    assert not context.common_tls_context.validation_context.match_typed_subject_alt_names
    (cert,) = context.common_tls_context.tls_certificates
    assert (cert.certificate_chain.inline_bytes, cert.private_key.inline_bytes) == (b"X", b"key")


def test_a_missing_secret_is_a_problem_and_the_route_keeps_naming_the_cluster() -> None:
    proxy, ctx = _world(factory.external_service(tls={"enabled": True, "caCert": {"secret": "nope"}}))
    snap = generate(proxy, ctx)
    assert not snap.resources[CLUSTER]
    assert any("secret 'nope' not found" in p for p in snap.problems)
    assert "httpbin-" in str(next(iter(snap.resources[ROUTE].values())))
