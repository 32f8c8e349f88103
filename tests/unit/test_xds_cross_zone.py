"""Other zones through their ingress (meshgate.xds.clusters, Kuma 2.7.29's `fillIngressOutbounds`): with mesh mTLS
a remote service's endpoints are its zone's ZoneIngress, weighted by instances, never the remote Dataplanes;
without mTLS the flat network stays. The namespaced run through real Envoys is tests/e2e/test_cross_zone_netns.py."""

from __future__ import annotations

from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshgate.mtls import LeafCache, generate_ca
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import MeshContext, generate
from meshgate.xds.clusters import EndpointIndex, cluster_name, load_assignment
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.sds import sni
from meshgate.xds.snapshot import CLUSTER, ENDPOINT

REMOTE = {"kuma.io/zone": "zone-2"}


def ingress(
    name: str,
    *,
    zone: str = "zone-2",
    address: str | None = "203.0.113.7",
    port: int | None = 10001,
    services: list[tuple[str, int]] = (("backend", 3),),  # type: ignore[assignment]
    mesh: str = "default",
) -> Resource:
    doc: dict[str, Any] = factory.zone_ingress(name, advertised_address=address, advertised_port=port)
    doc["zone"] = zone
    doc["availableServices"] = [
        {"mesh": mesh, "instances": n, "tags": {"kuma.io/service": s, "version": "v1"}} for s, n in services
    ]
    return factory.resource(doc)


def dataplanes() -> list[Resource]:
    local = factory.dataplane("backend-1", "backend", address="10.0.0.1")
    remote = factory.dataplane("backend-2", "backend", address="172.16.0.1", labels=REMOTE)
    return [factory.resource(local), factory.resource(remote)]


def endpoints(index: EndpointIndex, **tags: str) -> list[tuple[str, str, int, int]]:
    return [(e.zone, e.address, e.port, e.weight) for e in index.matching({"kuma.io/service": "backend", **tags})]


def test_with_mtls_a_remote_service_is_reached_at_its_zones_ingress_weighted_by_instances() -> None:
    index = EndpointIndex(dataplanes(), mesh="default", zone="zone-1", ingresses=[ingress("zi-2")])
    assert endpoints(index) == [("zone-1", "10.0.0.1", 8080, 1), ("zone-2", "203.0.113.7", 10001, 3)]
    (remote,) = [e for e in index.matching({"kuma.io/service": "backend"}) if e.zone == "zone-2"]
    assert remote.tags == {"kuma.io/service": "backend", "version": "v1", "kuma.io/zone": "zone-2"}
    assignment = load_assignment("backend", index.matching({"kuma.io/service": "backend"}), local_zone="zone-1")
    groups = [
        (g.locality.zone, g.priority, [e.load_balancing_weight.value for e in g.lb_endpoints])
        for g in assignment.endpoints
    ]
    assert groups == [("zone-1", 0, [0]), ("zone-2", 1, [3])]  # 0: unset, Envoy's weight 1


def test_a_destination_pinned_to_a_zone_keeps_only_that_zones_ingress() -> None:
    index = EndpointIndex(dataplanes(), mesh="default", zone="zone-1", ingresses=[ingress("zi-2")])
    assert endpoints(index, **REMOTE) == [("zone-2", "203.0.113.7", 10001, 3)]
    assert endpoints(index, version="v1") == [("zone-2", "203.0.113.7", 10001, 3)]  # tags come from availableServices


def test_ingresses_that_cannot_serve_are_skipped_and_one_address_counts_once() -> None:
    skipped = [
        ingress("own", zone="zone-1", address="198.51.100.1"),  # this zone's own ingress
        ingress("registering", zone="", address="198.51.100.2"),  # spec.zone empty: registered here
        ingress("pending", address=None, port=None),  # no public address yet
        ingress("other-mesh", address="198.51.100.3", mesh="payments"),
    ]
    index = EndpointIndex([], mesh="default", zone="zone-1", ingresses=skipped)
    assert endpoints(index) == []
    # Two instances behind one load balancer: the first that lists services stands for both.
    fresh = ingress("a-fresh", services=[])
    index = EndpointIndex([], mesh="default", zone="zone-1", ingresses=[fresh, ingress("b"), ingress("c")])
    assert endpoints(index) == [("zone-2", "203.0.113.7", 10001, 3)]


def test_without_mtls_the_flat_network_stays_and_ingresses_are_ignored() -> None:
    index = EndpointIndex(dataplanes(), mesh="default", zone="zone-1")
    assert endpoints(index) == [("zone-1", "10.0.0.1", 8080, 1), ("zone-2", "172.16.0.1", 8080, 1)]
    flat = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=factory.resource(factory.mesh()),
        dataplanes=dataplanes(),
        zone_ingresses=[ingress("zi-2")],
    )
    assert endpoints(flat.index) == endpoints(index)


def test_a_gateway_in_an_mtls_mesh_sends_the_ingress_kumas_sni() -> None:
    gateway_dp = factory.resource(factory.gateway_dataplane("edge-1", address="10.0.0.9"))
    remote_only = factory.resource(factory.dataplane("backend-2", "backend", address="172.16.0.1", labels=REMOTE))
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=factory.resource(factory.mtls_mesh()),
        dataplanes=[gateway_dp, remote_only],
        gateways=[factory.resource(factory.gateway())],
        routes=[factory.resource(factory.http_route(backends=[factory.backend("backend")]))],
        cross_mesh=CrossMesh({"default": generate_ca("default")}, zone="zone-1", leaves=LeafCache()),
        zone_ingresses=[ingress("zi-2")],
    )
    snap = generate(gateway_dp, ctx)
    assert snap.problems == ()
    name = cluster_name({"kuma.io/service": "backend"})
    (group,) = snap[ENDPOINT][name].endpoints  # type: ignore[attr-defined]
    socket = group.lb_endpoints[0].endpoint.address.socket_address
    assert (group.locality.zone, socket.address, socket.port_value) == ("zone-2", "203.0.113.7", 10001)
    cluster: Any = snap[CLUSTER][name]
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.UpstreamTlsContext()
    assert cluster.transport_socket.typed_config.Unpack(context)
    assert context.sni == sni({"kuma.io/service": "backend"}, "default") == "backend{mesh=default}"
