"""What a zone's ingress offers other zones: its `availableServices`, computed from the zone's own Dataplanes.

Kuma 2.7.29's `pkg/xds/ingress/dataplane.go` (`GetIngressAvailableServices`, `toAvailableServices`), as its zone
control plane's tracker calls it (`pkg/zone/available_services.go`, `updateZoneIngresses`):
- one entry per distinct (mesh, tag set) of the healthy inbounds (state `Ready`, `health` unset or ready:
  `GetHealthyInbounds`), counting the inbounds that carry it as `instances`;
- ordered by mesh, then by the tag set written `k1=v1,k2=v2` with keys sorted (Kuma's `Tags.String`);
- only tags whose key starts with one of `tag_filters` when any are given (Kuma's `--ingress-tag-filters`,
  none by default);
- written into every ZoneIngress of the zone (`spec.zone` empty or the zone itself), and only when the list
  differs from what it holds.

The ingress's Envoy config (`ingress_snapshot`, Kuma's `IngressGenerator`, pkg/xds/generator/ingress_generator.go,
and `zoneproxy.AddFilterChains`, pkg/xds/generator/zoneproxy/generator.go:95): one listener
`inbound:<address>:<port>` with the TLS inspector and, per available service, one filter chain matching TLS with
the SNI Kuma's sidecars send (`<service>{mesh=<mesh>}`, for the destination of Kuma's default TrafficRoute, which
matches every instance; and, a meshgate addition, `<service>{kuma.io/zone=<zone>,mesh=<mesh>}` for a gateway
backend pinned to this zone), a TCP proxy to the EDS cluster `<mesh>:<service>` of the zone's own healthy endpoints
(the sidecars' inbound ports). Traffic is not decrypted: the mTLS session passes through to the sidecar, which
checks the client's identity. No service: one chain answering `{"proxy":...,"zone":...}` (Kuma's
`GenerateEmptyDirectResponseListener`). Not built: SNIs for TrafficRoute destinations with tag subsets and the
LB subsets they need.

Unlike Kuma, a meshgate zone also holds the Dataplanes of other zones (relayed for cross-zone gateways): only
the zone's own count, since the ingress forwards to local endpoints only. Not computed yet: Kuma's entries for
MeshGateway listeners served cross-mesh (`getIngressAvailableMeshGateways`) and ExternalServices behind a zone
egress (meshgate's ZoneEgress, `egress.py`, serves its own zone only).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.direct_response.v3 import config_pb2 as direct_response_pb2
from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.api.mesh.v1alpha1.zone_ingress_pb2 import ZoneIngress
from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_SERVICE, TAG_ZONE
from meshgate.xds import clusters, listeners
from meshgate.xds.sds import sni
from meshgate.xds.snapshot import CLUSTER, ENDPOINT, LISTENER, Snapshot

__all__ = ["available_services", "ingress_snapshot", "mesh_cluster_name", "serves_zone", "with_available_services"]

_Service: TypeAlias = ZoneIngress.AvailableService
_READY = Dataplane.Networking.Inbound.Ready


def _healthy_inbounds(spec: Dataplane) -> Iterable[Dataplane.Networking.Inbound]:
    for inbound in spec.networking.inbound:
        if inbound.state != _READY:
            continue
        if inbound.HasField("health") and not inbound.health.ready:
            continue
        yield inbound


def available_services(dataplanes: Iterable[Resource], tag_filters: Sequence[str] = ()) -> list[_Service]:
    """The ingress's `availableServices` for the zone's own `dataplanes` (Kuma's `GetIngressAvailableServices`)."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for dp in dataplanes:
        spec = dp.spec
        if not isinstance(spec, Dataplane):
            continue
        for inbound in _healthy_inbounds(spec):
            tags = tuple(
                sorted(
                    (key, value)
                    for key, value in inbound.tags.items()
                    if not tag_filters or any(key.startswith(f) for f in tag_filters)
                )
            )
            counts[(dp.meta.mesh, tags)] += 1

    def order(key: tuple[str, tuple[tuple[str, str], ...]]) -> tuple[str, str]:
        mesh, tags = key
        return mesh, ",".join(f"{k}={v}" for k, v in tags)

    return [
        _Service(tags=dict(tags), instances=counts[(mesh, tags)], mesh=mesh) for mesh, tags in sorted(counts, key=order)
    ]


def serves_zone(ingress: Resource, zone: str) -> bool:
    """Whether `ingress` is one of `zone`'s own: Kuma leaves `spec.zone` empty in the zone that registered it."""
    spec = ingress.spec
    return isinstance(spec, ZoneIngress) and spec.zone in ("", zone)


def with_available_services(ingress: Resource, services: Sequence[_Service]) -> Resource | None:
    """`ingress` listing `services`, or None when it already lists exactly those (nothing to write)."""
    spec = ingress.spec
    assert isinstance(spec, ZoneIngress)
    if list(spec.availableServices) == list(services):
        return None
    updated = ZoneIngress()
    updated.CopyFrom(spec)
    del updated.availableServices[:]
    updated.availableServices.extend(services)
    return Resource(ingress.kind, ingress.meta, updated)


def mesh_cluster_name(mesh: str, service: str) -> str:
    """Kuma's `names.GetMeshClusterName`."""
    return f"{mesh}:{service}"


def ingress_snapshot(ingress: Resource, dataplanes: Iterable[Resource], *, proxy_id: str, zone: str) -> Snapshot:
    """The Envoy config of `ingress`, forwarding to the zone's own `dataplanes` (module docstring)."""
    spec = ingress.spec
    assert isinstance(spec, ZoneIngress)
    address, port = spec.networking.address, spec.networking.port
    own = list(dataplanes)
    indexes: dict[str, clusters.EndpointIndex] = {}
    chains = []
    cds: dict[str, Message] = {}
    eds: dict[str, Message] = {}
    used: set[str] = set()
    for service in spec.availableServices:
        if service.externalService:
            continue  # behind another zone's egress: meshgate's egresses serve their own zone only
        name = service.tags.get(TAG_SERVICE, "")
        server_name = sni({TAG_SERVICE: name}, service.mesh)
        if not name or server_name in used:
            continue
        # A gateway whose backend pins `kuma.io/zone` sends that tag in its SNI too: same endpoints here.
        pinned = sni({TAG_SERVICE: name, TAG_ZONE: zone}, service.mesh)
        used.update((server_name, pinned))
        index = indexes.get(service.mesh)
        if index is None:
            index = indexes[service.mesh] = clusters.EndpointIndex(own, mesh=service.mesh, zone=zone)
        endpoints = [e for e in index.matching({TAG_SERVICE: name}) if e.zone == zone]
        cluster = mesh_cluster_name(service.mesh, name)
        assignment = clusters.load_assignment(cluster, endpoints, local_zone=zone)
        if clusters.needs_dns(assignment):
            cds[cluster] = clusters.cluster(cluster, "tcp", dns_assignment=assignment)
        else:
            cds[cluster] = clusters.cluster(cluster, "tcp")
            eds[cluster] = assignment
        chain = listeners.filter_chain([listeners.tcp_proxy(cluster, [(cluster, 1)])], server_name=server_name)
        chain.filter_chain_match.server_names.append(pinned)
        chains.append(chain)
    if not chains:
        body = json.dumps({"proxy": proxy_id, "zone": zone}, separators=(",", ":"))
        config = direct_response_pb2.Config()
        config.response.inline_string = body
        direct = listener_components_pb2.Filter(
            name="envoy.filters.network.direct_response", typed_config=clusters.pack(config)
        )
        chains.append(listeners.filter_chain([direct]))
    name = f"inbound:{address}:{port}"
    listener = listeners.listener(name, address, port, chains, gateway=True)
    return Snapshot.of({LISTENER: {name: listener}, CLUSTER: cds, ENDPOINT: eds})
