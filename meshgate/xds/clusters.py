"""Upstream clusters and their endpoints, from the Dataplanes of one mesh.

- **Endpoints** are `address:port` of every ready inbound of every Dataplane in the mesh (Kuma's
  `fillDataplaneOutbounds`): the address is the Dataplane's `advertisedAddress`, else the inbound's
  `address`, else `networking.address`; the port is the inbound's `port`.
- **Zones.** An inbound's zone is its `kuma.io/zone` tag, else its Dataplane's `kuma.io/zone` label (set on
  Dataplanes synced from another zone), else the local zone. A destination's `kuma.io/zone` is matched
  against that zone, so `kuma.io/zone: z` keeps only zone z's endpoints. Without it every zone serves; the
  local zone's endpoints get Envoy priority 0 and other zones priority 1, so traffic leaves the zone only
  when none is left in it (Kuma's locality-aware priorities, here always on).
- **Clusters** are EDS clusters named `<service>-<16 hex digits>`: Kuma's `DestinationClusterName` hash
  (SHA-256 over the sorted destination tags, key then value, first 8 bytes) without listener tags, since
  meshgate applies no per-listener connection policy; equal destinations share one cluster.
- A destination that no inbound matches (healthy or not) is **unresolved**: it gets no cluster, and routes
  name `UNRESOLVED_BACKEND` instead so that Envoy answers 500. A known service whose inbounds are all down
  keeps its cluster with no endpoints, and Envoy answers 503.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.resources.model import LABEL_ZONE, Resource
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE, TAG_ZONE
from meshgate.xds.gateway import selector_matches
from meshgate.xds.routes import UNRESOLVED_BACKEND, Destination

__all__ = [
    "HTTP2_PROTOCOLS",
    "HTTP_PROTOCOLS",
    "Endpoint",
    "EndpointIndex",
    "cluster",
    "cluster_name",
    "is_ip",
    "load_assignment",
    "needs_dns",
    "pack",
]

HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})
HTTP2_PROTOCOLS = frozenset({"http2", "grpc"})
# Kuma's gateway cluster defaults: 5 s to connect, 32 KiB of buffer per connection.
CONNECT_TIMEOUT_SECONDS = 5
CONNECTION_BUFFER_BYTES = 32 * 1024
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    zone: str
    tags: Mapping[str, str]  # the inbound's tags, plus kuma.io/zone: zone
    healthy: bool


def _ready(inbound: Any) -> bool:
    if inbound.state != Dataplane.Networking.Inbound.Ready:
        return False
    return not inbound.HasField("health") or bool(inbound.health.ready)


class EndpointIndex:
    """Every inbound of a mesh's Dataplanes, by service, for destination lookups."""

    def __init__(self, dataplanes: Iterable[Resource], *, mesh: str, zone: str) -> None:
        self.zone = zone
        by_service: dict[str, list[Endpoint]] = {}
        for dp in dataplanes:
            if dp.meta.mesh != mesh or dp.kind != "Dataplane":
                continue
            networking: Any = dp.spec.networking  # type: ignore[attr-defined]
            for inbound in networking.inbound:
                ep_zone = inbound.tags.get(TAG_ZONE) or dp.meta.labels.get(LABEL_ZONE) or zone
                address = networking.advertisedAddress or inbound.address or networking.address
                tags = {**inbound.tags, TAG_ZONE: ep_zone}
                endpoint = Endpoint(address, inbound.port, ep_zone, tags, _ready(inbound))
                by_service.setdefault(inbound.tags.get(TAG_SERVICE, ""), []).append(endpoint)
        self._by_service = {
            service: sorted(eps, key=lambda e: (e.zone, e.address, e.port)) for service, eps in by_service.items()
        }

    def matching(self, tags: Mapping[str, str]) -> list[Endpoint]:
        """Endpoints (healthy or not) whose tags, zone included, satisfy the destination tags."""
        return [e for e in self._by_service.get(tags.get(TAG_SERVICE, ""), []) if selector_matches(tags, e.tags)]

    def protocol(self, tags: Mapping[str, str]) -> str:
        """The destination's `kuma.io/protocol`, else the one its endpoints agree on, else tcp (Kuma)."""
        if tags.get(TAG_PROTOCOL):
            return tags[TAG_PROTOCOL]
        found = {e.tags.get(TAG_PROTOCOL, "tcp") for e in self.matching(tags)}
        return found.pop() if len(found) == 1 else "tcp"

    def resolve(self, dest: Destination) -> str:
        """The cluster name of a destination, or UNRESOLVED_BACKEND when nothing in the mesh matches it."""
        tags = dest.tag_map
        return cluster_name(tags) if self.matching(tags) else UNRESOLVED_BACKEND


def cluster_name(tags: Mapping[str, str]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tags):
        digest.update(key.encode())
        digest.update(tags[key].encode())
    return f"{tags.get(TAG_SERVICE, '')}-{digest.digest()[:8].hex()}"


def pack(message: Any) -> any_pb2.Any:
    """Any with a deterministic payload, so equal configs hash equal."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def cluster(
    name: str, protocol: str, *, dns_assignment: endpoint_pb2.ClusterLoadAssignment | None = None
) -> cluster_pb2.Cluster:
    """An EDS cluster; or, given `dns_assignment`, a STRICT_DNS cluster carrying its endpoints inline.

    Envoy takes only IP addresses over EDS, and a Dataplane address may be a DNS name. The control plane
    does no I/O, so Envoy resolves such names itself (see `needs_dns`).
    """
    out = cluster_pb2.Cluster(
        name=name,
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_SECONDS),
        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=CONNECTION_BUFFER_BYTES),
    )
    if dns_assignment is None:
        out.type = cluster_pb2.Cluster.EDS
        out.eds_cluster_config.eds_config.CopyFrom(
            config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
            )
        )
    else:
        out.type = cluster_pb2.Cluster.STRICT_DNS
        out.load_assignment.CopyFrom(dns_assignment)
    if protocol in HTTP2_PROTOCOLS:
        options = http_protocol_options_pb2.HttpProtocolOptions()
        options.explicit_http_config.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
        out.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].CopyFrom(pack(options))
    return out


def _socket_address(address: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port))


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def needs_dns(assignment: endpoint_pb2.ClusterLoadAssignment) -> bool:
    return any(
        not is_ip(lb.endpoint.address.socket_address.address)
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    )


def load_assignment(name: str, endpoints: Sequence[Endpoint], *, local_zone: str) -> endpoint_pb2.ClusterLoadAssignment:
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    healthy = [e for e in endpoints if e.healthy]
    has_local = any(e.zone == local_zone for e in healthy)
    zones = sorted({e.zone for e in healthy}, key=lambda z: (z != local_zone, z))
    for zone in zones:
        group = out.endpoints.add()
        group.locality.zone = zone
        # Priorities must be contiguous from 0: other zones are a fallback only behind local endpoints.
        group.priority = 1 if has_local and zone != local_zone else 0
        for e in healthy:
            if e.zone == zone:
                group.lb_endpoints.append(
                    endpoint_components_pb2.LbEndpoint(
                        endpoint=endpoint_components_pb2.Endpoint(address=_socket_address(e.address, e.port)),
                        health_status=health_check_pb2.HEALTHY,
                    )
                )
    return out
