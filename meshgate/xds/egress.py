"""A zone's egress: the Envoy config of a ZoneEgress proxy, and how sidecars and gateways reach it. Pure.

**The egress proxy** (`egress_snapshot`, Kuma 2.7.29's `pkg/xds/generator/egress/generator.go` and
`external_services_generator.go`, with the meshes `pkg/xds/sync/egress_proxy_builder.go` picks):

- one listener `inbound:<address>:<port>` (`networking` of the ZoneEgress) with the TLS inspector;
- for every Mesh with `routing.zoneEgress` (which Kuma's validator only allows with mTLS) whose CA the zone has,
  and every ExternalService of that mesh, one filter chain per service (Kuma's `sniUsed`) matching TLS with the
  SNI the mesh's proxies send, `<service>{mesh=<mesh>}` (`tls.SNIFromTags`), named `<service>_<mesh>`
  (`names.GetEgressFilterChainName`);
- that chain terminates the mesh mTLS (`ServerSideMTLS`): it presents the egress's identity in that mesh,
  `spiffe://<mesh>/zone-egress` (Kuma's `ZoneEgressServiceName`, `secrets.GetForZoneEgress`), over SDS
  (`identity_cert:secret:<mesh>`, `mesh_ca:secret:<mesh>`, `sds.MeshTls`), and requires a client certificate of
  the mesh; TrafficPermission for the ExternalService is enforced there (`NetworkRBAC`, the permission whose
  destinations match the ExternalService's tags; none: denied, as on a sidecar inbound);
- then an HTTP connection manager (the ExternalService speaks http, http2 or grpc) or a TCP proxy to the cluster
  `<mesh>:<service>` (`names.GetMeshClusterName`), which reaches the ExternalService's `networking.address` with
  its own TLS settings (`external_services.external_cluster`, as a gateway reaches it directly);
- no chain at all: no listener (Envoy refuses a listener without filter chains; Kuma sends none either).

**Sidecars and gateways** (`egress_endpoints`, `routes_through_egress`; Kuma's
`topology.fillExternalServicesOutboundsThroughEgress` and the `ClientSideMTLS` branch of the outbound cluster
generator): when their Mesh has `routing.zoneEgress` and mTLS, a cluster to an ExternalService has the zone's
ZoneEgresses as endpoints instead of the ExternalService's address, and speaks mTLS to them as the proxy's own
identity, with SNI `<service>{mesh=<mesh>}` and `spiffe://<mesh>/zone-egress` the only SAN accepted
(`builder.Builder`). A zone holds only its own ZoneEgresses (the kind never goes down from the global).

Not built (meshgate simplifications, said here so nobody assumes them): egress chains for services of other
zones behind their ingresses (Kuma's `InternalServicesGenerator`: cross-zone traffic through an egress), the
SNIs of TrafficRoute destinations with tag subsets (a through-egress cluster sends the service's SNI only), and
FaultInjection/RateLimit on the egress's HTTP chains.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.zone_egress_pb2 import ZoneEgress
from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_SERVICE
from meshgate.xds import clusters, listeners
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.external_services import ExternalServiceError, external_cluster, protocol_of
from meshgate.xds.inbound import rbac_rules, service_filters
from meshgate.xds.sds import MeshTls, mtls_enabled, sni
from meshgate.xds.snapshot import CLUSTER, LISTENER, SECRET, Snapshot

__all__ = [
    "ZONE_EGRESS_SERVICE",
    "EgressMesh",
    "egress_endpoints",
    "egress_snapshot",
    "routes_through_egress",
]

# Kuma's `mesh_proto.ZoneEgressServiceName`: the service in the egress's SPIFFE id.
ZONE_EGRESS_SERVICE = "zone-egress"


@dataclass(frozen=True, slots=True)
class EgressMesh:
    """What the egress needs of one mesh: the Mesh, its ExternalServices, its Secrets (for ExternalService TLS
    given as `secret`) and its TrafficPermissions."""

    mesh: Resource
    external_services: tuple[Resource, ...] = ()
    secrets: Mapping[str, bytes] = field(default_factory=dict)
    permissions: tuple[Resource, ...] = ()


def routes_through_egress(mesh: Resource | None) -> bool:
    """Kuma's `MeshResource.ZoneEgressEnabled`, with mTLS on (the egress routes by the mesh's SNI)."""
    return mesh is not None and bool(mesh.spec.routing.zoneEgress) and mtls_enabled(mesh)  # type: ignore[attr-defined]


def egress_endpoints(egresses: Iterable[Resource], zone: str) -> list[clusters.Endpoint]:
    """The zone's ZoneEgresses as endpoints of a cluster to an ExternalService (each at `address:port`, weight 1:
    balancing between the ExternalService's instances is the egress's job)."""
    out = []
    for egress in egresses:
        spec = egress.spec
        if not isinstance(spec, ZoneEgress) or spec.zone not in ("", zone) or not spec.networking.address:
            continue
        out.append(clusters.Endpoint(spec.networking.address, spec.networking.port, zone, {}, healthy=True))
    return sorted(out, key=lambda e: (e.address, e.port))


def _by_service(services: Iterable[Resource]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for es in sorted(services, key=lambda r: r.meta.name):
        spec: Any = es.spec
        name = spec.tags.get(TAG_SERVICE, "")
        if name:
            out.setdefault(name, []).append(es)
    return out


def _mesh_chains(
    mesh: EgressMesh, tls: MeshTls, listener_name: str, out: dict[str, dict[str, Message]], problems: list[str]
) -> list[Any]:
    name = mesh.mesh.meta.name
    chains = []
    for service, services in sorted(_by_service(mesh.external_services).items()):
        cluster = f"{name}:{service}"
        tags = {TAG_SERVICE: service}
        protocol = protocol_of(tags, services)
        try:
            out[CLUSTER][cluster] = external_cluster(cluster, services, protocol, secrets=mesh.secrets)
        except ExternalServiceError as err:
            problems.append(f"{err}; egress filter chain {service}_{name} skipped")
            continue
        es_tags: Any = services[0].spec
        rbac = rbac_rules(dict(es_tags.tags), mesh.permissions, name)
        filters = service_filters(listener_name, service, cluster, protocol, rbac)
        chain = listeners.filter_chain(filters, server_name=sni(tags, name), tls=tls.downstream())
        chain.name = f"{service}_{name}"
        chains.append(chain)
    return chains


def egress_snapshot(egress: Resource, meshes: Sequence[EgressMesh], cross: CrossMesh | None) -> Snapshot:
    """The Envoy config of `egress` for `meshes` (every Mesh of the zone; those without `routing.zoneEgress`
    are left out, those whose CA is not loaded (`cross`) too, as a problem)."""
    spec = egress.spec
    assert isinstance(spec, ZoneEgress)
    address, port = spec.networking.address, spec.networking.port
    listener_name = f"inbound:{address}:{port}"
    out: dict[str, dict[str, Message]] = {LISTENER: {}, CLUSTER: {}, SECRET: {}}
    problems: list[str] = []
    chains = []
    for mesh in sorted(meshes, key=lambda m: m.mesh.meta.name):
        if not routes_through_egress(mesh.mesh):
            continue
        name = mesh.mesh.meta.name
        if cross is None or not cross.enabled(name):
            problems.append(f"mesh {name}: routing.zoneEgress is on but its CA is not available (yet); skipped")
            continue
        services = [ZONE_EGRESS_SERVICE]
        tls = MeshTls(name, cross.cas[name], cross.leaves, services, {TAG_SERVICE: services})
        chains.extend(_mesh_chains(mesh, tls, listener_name, out, problems))
        out[SECRET].update(tls.secrets())
    if chains:
        out[LISTENER][listener_name] = listeners.listener(listener_name, address, port, chains, gateway=True)
    return Snapshot.of(out, tuple(problems))
