"""A zone egress's Envoy config and the routing of sidecars and gateways through it (meshgate.xds.egress), as
Kuma 2.7.29's egress generator and `fillExternalServicesOutboundsThroughEgress` build them. Envoy accepts these
configs in tests/adapter/test_xds_envoy_validate.py; tests/e2e/test_zone_egress.py runs them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshgate.mtls import LeafCache, generate_ca
from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import CLUSTER, ENDPOINT, LISTENER, MeshContext, Snapshot, generate
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.egress import EgressMesh, egress_snapshot, routes_through_egress
from meshgate.xds.snapshot import SECRET

ZONE = "zone-1"


def egress_mesh(name: str = "default", *, zone_egress: bool = True, mtls: bool = True) -> Resource:
    doc = factory.mtls_mesh(name) if mtls else factory.mesh(name)
    if zone_egress:
        doc["routing"] = {"zoneEgress": True}
    return codec.load(doc)


def cross(*meshes: str) -> CrossMesh:
    return CrossMesh({m: generate_ca(m) for m in meshes}, zone=ZONE, leaves=LeafCache())


def of(snap: Snapshot, type_url: str) -> Mapping[str, Any]:
    """The snapshot's resources of one type, typed loosely: each test knows what it reads."""
    return snap[type_url]


def unpack(any_message: Any, message_type: type[Any]) -> Any:
    out = message_type()
    assert any_message.Unpack(out)
    return out


EGRESS = codec.load(factory.zone_egress("eg-1", address="10.0.0.8", port=10002))
HTTPBIN = codec.load(
    factory.external_service(
        "httpbin", address="httpbin.org:443", tls={"enabled": True}, tags={"kuma.io/protocol": "http"}
    )
)
DB = codec.load(factory.external_service("db", address="10.9.9.9:5432"))


def test_one_tls_inspected_chain_per_external_service_matched_by_kumas_sni() -> None:
    snap = egress_snapshot(
        EGRESS,
        [EgressMesh(egress_mesh(), (HTTPBIN, DB), permissions=(codec.load(factory.traffic_permission()),))],
        cross("default"),
    )
    assert snap.problems == ()
    (listener,) = of(snap, LISTENER).values()
    assert listener.name == "inbound:10.0.0.8:10002"
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = {c.name: c for c in listener.filter_chains}
    assert sorted(chains) == ["db_default", "httpbin_default"]  # names.GetEgressFilterChainName
    http = chains["httpbin_default"]
    assert list(http.filter_chain_match.server_names) == ["httpbin{mesh=default}"]
    assert http.filter_chain_match.transport_protocol == "tls"
    # The mesh mTLS ends here: the egress's identity over SDS, a client certificate of the mesh required.
    context = unpack(http.transport_socket.typed_config, tls_pb2.DownstreamTlsContext)
    assert context.require_client_certificate.value
    assert [s.name for s in context.common_tls_context.tls_certificate_sds_secret_configs] == [
        "identity_cert:secret:default"
    ]
    hcm = unpack(http.filters[0].typed_config, hcm_pb2.HttpConnectionManager)
    assert hcm.route_config.virtual_hosts[0].routes[0].route.cluster == "default:httpbin"
    assert "envoy.filters.http.rbac" in [f.name for f in hcm.http_filters]
    # TCP: network RBAC, then a TCP proxy.
    assert [f.name for f in chains["db_default"].filters] == [
        "envoy.filters.network.rbac",
        "envoy.filters.network.tcp_proxy",
    ]
    rbac = unpack(chains["db_default"].filters[0].typed_config, network_rbac_pb2.RBAC)
    assert list(rbac.rules.policies) == ["allow-all"]
    # Out to the ExternalService with its own TLS settings (external_services.external_cluster).
    upstream = of(snap, CLUSTER)["default:httpbin"]
    assert upstream.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address == (
        "httpbin.org"
    )
    assert [m.name for m in upstream.transport_socket_matches] == ["httpbin.org"]
    assert of(snap, CLUSTER)["default:db"].type == cluster_pb2.Cluster.STATIC
    # The egress's own certificate: spiffe://default/zone-egress.
    assert sorted(of(snap, SECRET)) == ["identity_cert:secret:default", "mesh_ca:secret:default"]


def test_meshes_without_routing_zone_egress_or_ca_get_nothing() -> None:
    meshes = [
        EgressMesh(egress_mesh("off", zone_egress=False), (codec.load(factory.external_service("x", "off")),)),
        EgressMesh(egress_mesh("noca"), (codec.load(factory.external_service("y", "noca")),)),
    ]
    snap = egress_snapshot(EGRESS, meshes, cross("off"))
    assert dict(of(snap, LISTENER)) == {}  # Envoy refuses a listener without chains; Kuma sends none
    assert snap.problems == ("mesh noca: routing.zoneEgress is on but its CA is not available (yet); skipped",)


def test_services_of_two_meshes_each_get_their_sni_cluster_and_identity() -> None:
    a = codec.load(factory.external_service("api", "a", address="10.1.1.1:80"))
    b = codec.load(factory.external_service("api", "b", address="10.2.2.2:80"))
    snap = egress_snapshot(
        EGRESS, [EgressMesh(egress_mesh("b"), (b,)), EgressMesh(egress_mesh("a"), (a,))], cross("a", "b")
    )
    (listener,) = of(snap, LISTENER).values()
    assert [list(c.filter_chain_match.server_names) for c in listener.filter_chains] == [
        ["api{mesh=a}"],
        ["api{mesh=b}"],
    ]
    assert sorted(of(snap, CLUSTER)) == ["a:api", "b:api"]
    assert "identity_cert:secret:b" in of(snap, SECRET)


def test_no_permission_means_denied_at_the_egress() -> None:
    snap = egress_snapshot(EGRESS, [EgressMesh(egress_mesh(), (DB,))], cross("default"))
    (listener,) = of(snap, LISTENER).values()
    rbac = unpack(listener.filter_chains[0].filters[0].typed_config, network_rbac_pb2.RBAC)
    assert dict(rbac.rules.policies) == {}


def sidecar() -> Resource:
    return codec.load(
        {
            "type": "Dataplane",
            "mesh": "default",
            "name": "web-1",
            "networking": {
                "address": "10.0.0.1",
                "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}],
                "outbound": [{"port": 9000, "tags": {"kuma.io/service": "httpbin"}}],
            },
        }
    )


def context(mesh: Resource, egresses: list[Resource]) -> MeshContext:
    return MeshContext.build(
        "default",
        zone=ZONE,
        mesh_resource=mesh,
        dataplanes=[sidecar()],
        cross_mesh=cross("default"),
        resources={"ExternalService": [HTTPBIN]},
        zone_egresses=egresses,
    )


def external_cluster(snap: Any) -> Any:
    (name,) = [n for n in of(snap, CLUSTER) if n.startswith("httpbin")]
    return of(snap, CLUSTER)[name]


def test_with_zone_egress_a_sidecar_reaches_the_external_service_through_the_egress_over_mtls() -> None:
    assert routes_through_egress(egress_mesh())
    snap = generate(sidecar(), context(egress_mesh(), [EGRESS]))
    cluster = external_cluster(snap)
    assert cluster.type == cluster_pb2.Cluster.EDS
    (assignment,) = [a for n, a in of(snap, ENDPOINT).items() if n == cluster.name]
    socket = assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("10.0.0.8", 10002)
    context_ = unpack(cluster.transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert context_.sni == "httpbin{mesh=default}"
    sans = context_.common_tls_context.combined_validation_context.default_validation_context
    assert [m.matcher.exact for m in sans.match_typed_subject_alt_names] == ["spiffe://default/zone-egress"]
    assert list(cluster.transport_socket_matches) == []  # the egress speaks TLS to the ExternalService


def test_without_zone_egress_the_sidecar_goes_direct() -> None:
    mesh = egress_mesh(zone_egress=False)
    assert not routes_through_egress(mesh)
    cluster = external_cluster(generate(sidecar(), context(mesh, [EGRESS])))
    assert cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address == (
        "httpbin.org"
    )
    assert not cluster.HasField("transport_socket")


def test_zone_egress_on_but_none_registered_is_a_problem_not_a_direct_route() -> None:
    snap = generate(sidecar(), context(egress_mesh(), []))
    cluster = external_cluster(snap)
    assert any("this zone has none" in p for p in snap.problems)
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert not of(snap, ENDPOINT)[cluster.name].endpoints


def test_another_zones_egress_is_not_used() -> None:
    other = codec.load(factory.zone_egress("eg-2", address="10.7.7.7"))
    other.spec.zone = "zone-2"  # type: ignore[attr-defined]
    snap = generate(sidecar(), context(egress_mesh(), [other]))
    assert not of(snap, ENDPOINT)[external_cluster(snap).name].endpoints


def test_a_builtin_gateways_route_to_an_external_service_goes_through_the_egress_too() -> None:
    """Kuma's gateway cluster generator takes the same through-egress endpoints and mTLS."""
    proxy = factory.resource(factory.gateway_dataplane("edge-1"))
    ctx = MeshContext.build(
        "default",
        zone=ZONE,
        mesh_resource=egress_mesh(),
        gateways=[factory.resource(factory.gateway("edge"))],
        routes=[factory.resource(factory.http_route(backends=[factory.backend("httpbin")]))],
        cross_mesh=cross("default"),
        policies={"TrafficPermission": [codec.load(factory.traffic_permission())]},
        resources={"ExternalService": [HTTPBIN]},
        zone_egresses=[EGRESS],
    )
    snap = generate(proxy, ctx)
    cluster = external_cluster(snap)
    socket = of(snap, ENDPOINT)[cluster.name].endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (socket.address, socket.port_value) == ("10.0.0.8", 10002)
    tls = unpack(cluster.transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert tls.sni == "httpbin{mesh=default}"
    assert "identity_cert:secret:default" in of(snap, SECRET)


def test_zone_egress_on_without_the_mesh_ca_is_no_endpoints_never_direct() -> None:
    ctx = MeshContext.build(
        "default",
        zone=ZONE,
        mesh_resource=egress_mesh(),
        dataplanes=[sidecar()],
        cross_mesh=cross(),  # the mesh's CA not loaded
        resources={"ExternalService": [HTTPBIN]},
        zone_egresses=[EGRESS],
    )
    snap = generate(sidecar(), ctx)
    cluster = external_cluster(snap)
    assert any("no CA yet" in p for p in snap.problems)
    assert not of(snap, ENDPOINT)[cluster.name].endpoints
    assert not cluster.transport_socket_matches
