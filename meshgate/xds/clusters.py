"""Upstream clusters and their endpoints, from the Dataplanes of one mesh.

- **Endpoints** are `address:port` of every ready inbound of every Dataplane in the mesh (Kuma's
  `fillDataplaneOutbounds`): the address is the Dataplane's `advertisedAddress`, else the inbound's
  `address`, else `networking.address`; the port is the inbound's `port`.
- **Zones.** An inbound's zone is its `kuma.io/zone` tag, else its Dataplane's `kuma.io/zone` label (set on
  Dataplanes synced from another zone), else the local zone.
- **Other zones through their ingress.** In a mesh with mTLS (`ingresses` given), other zones' Dataplanes are
  never endpoints: each remote ZoneIngress with a public address (`advertisedAddress` and `advertisedPort`) is
  one endpoint per service it lists for the mesh, weighted by the service's `instances`, and one address:port
  counts once however many ingresses share it (Kuma 2.7.29's `fillIngressOutbounds`, pkg/xds/topology/
  outbound.go). The ingress routes by the SNI the mTLS session carries, so without mTLS Kuma ignores ingresses;
  meshgate then keeps its flat-network routing to remote Dataplanes' addresses, for meshes without mTLS only.
  A destination's `kuma.io/zone` is matched
  against that zone, so `kuma.io/zone: z` keeps only zone z's endpoints. Without it every zone serves; the
  local zone's endpoints get Envoy priority 0 and other zones priority 1, so traffic leaves the zone only
  when none is left in it (Kuma's locality-aware priorities, here always on).
- **Clusters** are EDS clusters named `<service>-<16 hex digits>`: Kuma's `DestinationClusterName` hash
  (SHA-256 over the sorted destination tags, key then value, first 8 bytes) without listener tags; equal
  destinations share one cluster. A cluster a connection policy shapes hashes the winning policies' kinds and
  names in too (`meshgate.xds.policies.shaper`), so listeners that differ in policy get clusters of their own.
- A destination that no inbound matches (healthy or not) is **unresolved**: it gets no cluster, and routes
  name `UNRESOLVED_BACKEND` instead so that Envoy answers 500. A known service whose inbounds are all down
  keeps its cluster with no endpoints, and Envoy answers 503.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from operator import attrgetter
from typing import Any, NamedTuple

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_ZONE, Resource
from meshgate.resources.selectors import selector_matches
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE, TAG_ZONE
from meshgate.xds.routes import UNRESOLVED_BACKEND, Destination

__all__ = [
    "HTTP2_PROTOCOLS",
    "HTTP_PROTOCOLS",
    "Endpoint",
    "EndpointIndex",
    "cluster",
    "cluster_name",
    "ingress_zone",
    "is_ip",
    "load_assignment",
    "needs_dns",
    "needs_dns_for",
    "pack",
    "protocol_of",
    "update_http_options",
]

HTTP_PROTOCOLS = frozenset({"http", "http2", "grpc"})
HTTP2_PROTOCOLS = frozenset({"http2", "grpc"})
# Kuma's gateway cluster defaults: 5 s to connect, 32 KiB of buffer per connection.
CONNECT_TIMEOUT_SECONDS = 5
CONNECTION_BUFFER_BYTES = 32 * 1024
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# A dotted quad exactly as `ipaddress` accepts it (no leading zeros): most addresses take this path, which is
# an order of magnitude cheaper than parsing them. Anything else is left to `ipaddress`.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


class Endpoint(NamedTuple):
    """One inbound of a Dataplane. A NamedTuple: the index makes one per inbound of the mesh, and a frozen
    dataclass costs three times as much to construct."""

    address: str
    port: int
    zone: str
    tags: Mapping[str, str]  # the inbound's tags, plus kuma.io/zone: zone
    healthy: bool
    weight: int = 1  # Envoy's load_balancing_weight: a remote ingress counts its service's instances


_ENDPOINT_ORDER = attrgetter("zone", "address", "port")
_INBOUND_READY = Dataplane.Networking.Inbound.Ready  # looked up once: a nested enum is slow to read


def _ready(inbound: Any) -> bool:
    if inbound.state != _INBOUND_READY:
        return False
    return not inbound.HasField("health") or bool(inbound.health.ready)


class EndpointIndex:
    """Every inbound of a mesh's Dataplanes, by service, for destination lookups."""

    def __init__(
        self,
        dataplanes: Iterable[Resource],
        *,
        mesh: str,
        zone: str,
        ingresses: Iterable[Resource] | None = None,
    ) -> None:
        """`ingresses`: the ZoneIngresses other zones are reached through, given for a mesh with mTLS; None keeps
        the flat network, other zones' Dataplanes reached at their own addresses (module docstring)."""
        self.zone = zone
        by_service: dict[str, list[Endpoint]] = {}
        for dp in dataplanes:
            if dp.meta.mesh != mesh or dp.kind != kinds.DATAPLANE:
                continue
            networking: Any = dp.spec.networking  # type: ignore[attr-defined]
            # Read once per Dataplane: every field read goes through upb, and a mesh has tens of thousands.
            dp_zone = dp.meta.labels.get(LABEL_ZONE) or zone
            if ingresses is not None and dp_zone != zone:
                continue  # reached through its zone's ingress
            advertised, dp_address = networking.advertisedAddress, networking.address
            for inbound in networking.inbound:
                inbound_tags = inbound.tags
                # Not dict(map): that walks a protobuf map through the Python Mapping mixin, twice as slow.
                tags = {key: inbound_tags[key] for key in inbound_tags}
                ep_zone = tags.get(TAG_ZONE) or dp_zone
                tags[TAG_ZONE] = ep_zone
                address = advertised or inbound.address or dp_address
                endpoint = Endpoint(address, inbound.port, ep_zone, tags, _ready(inbound))
                by_service.setdefault(tags.get(TAG_SERVICE, ""), []).append(endpoint)
        for endpoint in _through_ingresses(ingresses or (), mesh=mesh, zone=zone):
            by_service.setdefault(endpoint.tags.get(TAG_SERVICE, ""), []).append(endpoint)
        self._by_service = {service: sorted(eps, key=_ENDPOINT_ORDER) for service, eps in by_service.items()}

    def matching(self, tags: Mapping[str, str]) -> list[Endpoint]:
        """Endpoints (healthy or not) whose tags, zone included, satisfy the destination tags."""
        return [e for e in self._by_service.get(tags.get(TAG_SERVICE, ""), ()) if selector_matches(tags, e.tags)]

    def protocol(self, tags: Mapping[str, str]) -> str:
        """The destination's `kuma.io/protocol`, else the one its endpoints agree on, else tcp (Kuma)."""
        return protocol_of(tags, () if tags.get(TAG_PROTOCOL) else self.matching(tags))

    def resolve(self, dest: Destination) -> str:
        """The cluster name of a destination, or UNRESOLVED_BACKEND when nothing in the mesh matches it."""
        tags = dest.tag_map
        return cluster_name(tags) if self.matching(tags) else UNRESOLVED_BACKEND


def ingress_zone(ingress: Resource) -> str:
    """The zone a ZoneIngress serves: `spec.zone`, set by the global, else its `kuma.io/zone` label; empty in
    the zone that registered it."""
    return str(ingress.spec.zone) or ingress.meta.labels.get(LABEL_ZONE, "")  # type: ignore[attr-defined]


def _through_ingresses(ingresses: Iterable[Resource], *, mesh: str, zone: str) -> Iterator[Endpoint]:
    """The endpoints of other zones' services, at their zones' ingresses (Kuma's `fillIngressOutbounds`)."""
    seen: set[tuple[str, int]] = set()
    for ingress in sorted(ingresses, key=lambda r: r.meta.name):
        ingress_of = ingress_zone(ingress)
        if ingress.kind != kinds.ZONE_INGRESS or ingress_of in ("", zone):
            continue
        spec: Any = ingress.spec
        address, port = spec.networking.advertisedAddress, spec.networking.advertisedPort
        if not address or not port:
            continue  # not reachable from other zones yet (a LoadBalancer still pending, in Kuma's words)
        if (address, port) in seen:
            continue  # several instances behind one load balancer: one endpoint
        if spec.availableServices:
            seen.add((address, port))  # a new instance lists its services only after its first reconcile
        for service in spec.availableServices:
            if service.mesh != mesh or service.externalService:
                continue
            tags = dict(service.tags)
            tags[TAG_ZONE] = tags.get(TAG_ZONE) or ingress_of
            yield Endpoint(address, port, tags[TAG_ZONE], tags, True, max(1, service.instances))


def protocol_of(tags: Mapping[str, str], endpoints: Iterable[Endpoint]) -> str:
    """`EndpointIndex.protocol` given the destination's `matching` endpoints, for a caller that has them."""
    if tags.get(TAG_PROTOCOL):
        return tags[TAG_PROTOCOL]
    found = {e.tags.get(TAG_PROTOCOL, "tcp") for e in endpoints}
    return found.pop() if len(found) == 1 else "tcp"


def cluster_name(tags: Mapping[str, str]) -> str:
    # Hashing the concatenation in one update gives the digest of Kuma's update per key and value, cheaper.
    digest = hashlib.sha256("".join([key + tags[key] for key in sorted(tags)]).encode()).digest()
    return f"{tags.get(TAG_SERVICE, '')}-{digest[:8].hex()}"


def pack(message: Any) -> any_pb2.Any:
    """Any with a deterministic payload, so equal configs hash equal."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def _cluster_template(*, eds: bool) -> cluster_pb2.Cluster:
    out = cluster_pb2.Cluster(
        connect_timeout=duration_pb2.Duration(seconds=CONNECT_TIMEOUT_SECONDS),
        per_connection_buffer_limit_bytes=wrappers_pb2.UInt32Value(value=CONNECTION_BUFFER_BYTES),
    )
    if eds:
        out.type = cluster_pb2.Cluster.EDS
        out.eds_cluster_config.eds_config.CopyFrom(
            config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
            )
        )
    else:
        out.type = cluster_pb2.Cluster.STRICT_DNS
    return out


def _http2_options() -> any_pb2.Any:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    return pack(options)


# Every cluster starts as a copy of one of these: one CopyFrom costs a quarter of building the same fields
# anew, and a mesh has a cluster per destination. Never mutated; `cluster` copies them.
_EDS_CLUSTER = _cluster_template(eds=True)
_DNS_CLUSTER = _cluster_template(eds=False)
_HTTP2_OPTIONS = _http2_options()


def cluster(
    name: str, protocol: str, *, dns_assignment: endpoint_pb2.ClusterLoadAssignment | None = None
) -> cluster_pb2.Cluster:
    """An EDS cluster; or, given `dns_assignment`, a STRICT_DNS cluster carrying its endpoints inline.

    Envoy takes only IP addresses over EDS, and a Dataplane address may be a DNS name. The control plane
    does no I/O, so Envoy resolves such names itself (see `needs_dns`).
    """
    out = cluster_pb2.Cluster()
    if dns_assignment is None:
        out.CopyFrom(_EDS_CLUSTER)
    else:
        out.CopyFrom(_DNS_CLUSTER)
        out.load_assignment.CopyFrom(dns_assignment)
    out.name = name
    if protocol in HTTP2_PROTOCOLS:
        out.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].CopyFrom(_HTTP2_OPTIONS)
    return out


def update_http_options(
    out: cluster_pb2.Cluster, update: Callable[[http_protocol_options_pb2.HttpProtocolOptions], None]
) -> None:
    """Kuma's `UpdateCommonHttpProtocolOptions`: `update` the cluster's upstream HttpProtocolOptions in place
    (unpacked, or new), then pack them back. Options without an upstream protocol get HTTP/1.1's, as Kuma's
    `clusters.Http()` gives an HTTP cluster: Envoy refuses HttpProtocolOptions with none."""
    options = http_protocol_options_pb2.HttpProtocolOptions()
    if _HTTP_OPTIONS_KEY in out.typed_extension_protocol_options:
        out.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].Unpack(options)
    update(options)
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http_protocol_options.SetInParent()
    out.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].CopyFrom(pack(options))


def is_ip(address: str) -> bool:
    if _IPV4.fullmatch(address):
        return True
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


def needs_dns_for(endpoints: Iterable[Endpoint]) -> bool:
    """`needs_dns` of the `load_assignment` of `endpoints`, without building it or reading it back."""
    return any(e.healthy and not is_ip(e.address) for e in endpoints)


def load_assignment(name: str, endpoints: Sequence[Endpoint], *, local_zone: str) -> endpoint_pb2.ClusterLoadAssignment:
    out = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    by_zone: dict[str, list[Endpoint]] = {}
    for e in endpoints:
        if e.healthy:
            by_zone.setdefault(e.zone, []).append(e)
    has_local = local_zone in by_zone
    zones = sorted(by_zone, key=lambda z: (z != local_zone, z)) if len(by_zone) > 1 else by_zone
    for zone in zones:
        group = out.endpoints.add()
        group.locality.zone = zone
        # Priorities must be contiguous from 0: other zones are a fallback only behind local endpoints.
        if has_local and zone != local_zone:
            group.priority = 1
        lb_endpoints = group.lb_endpoints
        for e in by_zone[zone]:
            # Filled in place: a message built apart is copied again by `append`, which costs twice as much.
            lb_endpoint = lb_endpoints.add(health_status=health_check_pb2.HEALTHY)
            socket = lb_endpoint.endpoint.address.socket_address
            socket.address = e.address
            socket.port_value = e.port
            if e.weight != 1:
                lb_endpoint.load_balancing_weight.value = e.weight
    return out
