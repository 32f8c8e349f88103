"""Sidecar inbounds: what an ordinary Dataplane's Envoy listens on for its application. Pure: no I/O.

Kuma 2.7 (`xds/generator/inbound_proxy_generator.go`, `api/mesh/v1alpha1/dataplane_helpers.go:209`
`ToInboundInterface`): for each `networking.inbound`,

- a listener `inbound:<address>:<port>` on the inbound's `address` (else `networking.address`) and `port`;
- a cluster `localhost:<servicePort>` (`names.GetLocalClusterName`) to the application at `serviceAddress`
  (else the same address) and `servicePort` (else `port`), HTTP/2 for http2 and grpc;
- an HTTP connection manager with one catch-all route to that cluster when the inbound's `kuma.io/protocol` is
  http, http2 or grpc (its route configuration inline, named `inbound:<service>`), else a TCP proxy;
- with the mesh's mTLS on in STRICT mode (Kuma's default), the one filter chain's TLS requires a client
  certificate of the mesh (`sds.MeshTls.downstream`) and **TrafficPermission** is enforced on it: of the
  TrafficPermissions whose `destinations` match the inbound's tags the most specific (then newest) one is selected
  (`SelectInboundConnectionPolicy`), and its `sources` become the allowed principals: a source's
  `kuma.io/service` is the peer's `spiffe://<mesh>/<service>`, each other tag a `kuma://<tag>/<value>`, all of
  one selector ANDed, the selectors ORed, `*` matching anything (`network_rbac_configurer.go`). No
  TrafficPermission selected: an RBAC filter with no policy, which denies every connection.

**PERMISSIVE** (the enabled mTLS backend's `mode`, `sds.MeshTls.permissive`; the generator's
`CertificateAuthorityBackend_PERMISSIVE` case, `listeners/v3/tls_inspector_configurer.go`,
`filter_chain_match_configurers.go`): the listener gets the TLS inspector (`envoy.filters.listener.tls_inspector`)
and Kuma's three anonymous filter chains, in its order:

1. `transport_protocol: raw_buffer`: plaintext, straight to the application, no TLS and no RBAC;
2. `transport_protocol: tls`: TLS that is not the mesh's (the application's own), passed on undecrypted
   as bytes, no RBAC;
3. `transport_protocol: tls` and `application_protocols: [kuma]` (the ALPN every mesh cluster offers,
   `sds.KUMA_ALPN`): the mesh mTLS chain of STRICT, client certificate required and TrafficPermission enforced.

Envoy picks the most specific match, so a mesh client lands on chain 3 and anyone else on 1 or 2: in
PERMISSIVE, TrafficPermission binds mesh mTLS clients only, as in Kuma. Outbounds speak mTLS in both modes.

Where RBAC sits: on a TCP inbound, Kuma's network RBAC filter first in the chain (a denied peer's connection is
closed once it sends its first bytes; a gateway answers its client 503). On an HTTP inbound the same rules go in
the HTTP RBAC filter before the router, as Kuma 2.7's MeshTrafficPermission does wherever a chain has an HTTP
connection manager (`meshtrafficpermission/xds/rbac_configurer.go:40`): the sidecar then answers a denied
request 403 `RBAC: access denied`, which a gateway in front passes on to its client unchanged.

Without a `servicePort` or `serviceAddress` the listener would bind the application's own address and port,
which only a transparent proxy makes work: such an inbound is skipped as a problem unless the Dataplane has
`transparentProxying`. Serviceless inbounds (no `kuma.io/service`) are skipped, as in Kuma.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_components_pb2 as route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from envoy.type.matcher.v3 import string_pb2

from meshgate.mtls import spiffe_id
from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE
from meshgate.xds import clusters, listeners
from meshgate.xds.policies.matching import Candidates, best_for_destination, index_of, selectors
from meshgate.xds.sds import KUMA_ALPN, MeshTls, kuma_id

__all__ = ["Inbounds", "inbound_identity", "rbac_rules", "service_filters", "sidecar_inbounds"]

_MATCH_ALL = "*"
_HTTP_RBAC = "envoy.filters.http.rbac"
_NETWORK_RBAC = "envoy.filters.network.rbac"
# What Envoy's TLS inspector reports as a connection's `transport_protocol`.
_RAW_BUFFER = "raw_buffer"
_TLS = "tls"


@dataclass(slots=True)
class Inbounds:
    listeners: dict[str, listener_pb2.Listener] = field(default_factory=dict)
    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def inbound_identity(proxy: Resource) -> tuple[list[str], dict[str, list[str]]]:
    """The services (in inbound order, no repeats) and tag values an ordinary Dataplane's certificate names."""
    services: list[str] = []
    tags: dict[str, list[str]] = {}
    for inbound in proxy.spec.networking.inbound:  # type: ignore[attr-defined]
        for key in sorted(inbound.tags):
            value = str(inbound.tags[key])
            if key == TAG_SERVICE and value not in services:
                services.append(value)
            tags.setdefault(key, []).append(value)
    return services, tags


def _principal(selector: Mapping[str, str], mesh: str) -> rbac_config_pb2.Principal:
    """Kuma's `principalFromSelector`."""
    ids = [
        rbac_config_pb2.Principal(
            authenticated=rbac_config_pb2.Principal.Authenticated(
                principal_name=string_pb2.StringMatcher(exact=kuma_id(tag, value))
            )
        )
        for tag, value in sorted(selector.items())
        if tag != TAG_SERVICE and value != _MATCH_ALL
    ]
    service = selector.get(TAG_SERVICE, "")
    if service not in ("", _MATCH_ALL):
        ids.append(
            rbac_config_pb2.Principal(
                authenticated=rbac_config_pb2.Principal.Authenticated(
                    principal_name=string_pb2.StringMatcher(exact=spiffe_id(mesh, service))
                )
            )
        )
    if not ids:
        return rbac_config_pb2.Principal(any=True)
    if len(ids) == 1:
        return ids[0]
    return rbac_config_pb2.Principal(and_ids=rbac_config_pb2.Principal.Set(ids=ids))


def rbac_rules(tags: Mapping[str, str], permissions: tuple[Resource, ...], mesh: str) -> rbac_config_pb2.RBAC:
    """ALLOW rules for an inbound with `tags`: the selected TrafficPermission's sources, or nothing (deny)."""
    rules = rbac_config_pb2.RBAC(action=rbac_config_pb2.RBAC.ALLOW)
    match = best_for_destination(Candidates.every(index_of(permissions)), tags) if permissions else None
    if match is not None:
        policy = rules.policies[match.winner.meta.name]
        policy.permissions.add(any=True)
        policy.principals.extend(_principal(s, mesh) for s in selectors(match.winner, "sources"))
    return rules


def _local_cluster(name: str, address: str, port: int, protocol: str) -> cluster_pb2.Cluster:
    """Kuma's `ProvidedEndpointCluster`: STATIC to an IP, STRICT_DNS to a name, the endpoint inline."""
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    socket = assignment.endpoints.add().lb_endpoints.add(health_status=health_check_pb2.HEALTHY)
    socket.endpoint.address.socket_address.address = address
    socket.endpoint.address.socket_address.port_value = port
    out = clusters.cluster(name, protocol, dns_assignment=assignment)
    if clusters.is_ip(address):
        out.type = cluster_pb2.Cluster.STATIC
    return out


def _hcm(prefix: str, service: str, cluster: str, rbac: rbac_config_pb2.RBAC | None) -> listener_components_pb2.Filter:
    config = hcm_pb2.HttpConnectionManager(stat_prefix=listeners.stat_prefix(prefix))
    routes = config.route_config
    routes.name = f"inbound:{service}"
    routes.validate_clusters.value = False
    vh = routes.virtual_hosts.add(name=service, domains=["*"])
    vh.routes.append(
        route_pb2.Route(match=route_pb2.RouteMatch(prefix="/"), route=route_pb2.RouteAction(cluster=cluster))
    )
    if rbac is not None:
        config.http_filters.add(name=_HTTP_RBAC, typed_config=clusters.pack(http_rbac_pb2.RBAC(rules=rbac)))
    config.http_filters.add(name="envoy.filters.http.router", typed_config=clusters.pack(router_pb2.Router()))
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=clusters.pack(config)
    )


def service_filters(
    name: str, service: str, cluster: str, protocol: str, rbac: rbac_config_pb2.RBAC | None
) -> list[listener_components_pb2.Filter]:
    """The filters that end a mesh connection at `service` and forward it to `cluster`: an HCM with the HTTP RBAC
    filter for http, http2 and grpc, else the network RBAC filter and a TCP proxy (a sidecar inbound; a zone
    egress's chain, `egress.py`). `rbac` None: no RBAC filter."""
    filters: list[listener_components_pb2.Filter] = []
    if protocol in clusters.HTTP_PROTOCOLS:
        filters.append(_hcm(cluster, service, cluster, rbac))
    else:
        if rbac is not None:
            network = network_rbac_pb2.RBAC(rules=rbac, stat_prefix=f"{listeners.stat_prefix(name)}.")
            filters.append(listener_components_pb2.Filter(name=_NETWORK_RBAC, typed_config=clusters.pack(network)))
        filters.append(listeners.tcp_proxy(cluster, [(cluster, 1)]))
    return filters


def _chains(
    name: str, service: str, cluster: str, protocol: str, tls: MeshTls | None, rbac: rbac_config_pb2.RBAC | None
) -> list[listener_components_pb2.FilterChain]:
    """No mTLS: one plaintext chain. STRICT: one mTLS chain with RBAC. PERMISSIVE: Kuma's three (above)."""
    mesh_chain = listeners.filter_chain(
        service_filters(name, service, cluster, protocol, rbac), tls=tls.downstream() if tls is not None else None
    )
    if tls is None or not tls.permissive:
        return [mesh_chain]
    plaintext = listeners.filter_chain(service_filters(name, service, cluster, protocol, None))
    plaintext.filter_chain_match.transport_protocol = _RAW_BUFFER
    app_tls = listeners.filter_chain(service_filters(name, service, cluster, protocol, None))
    app_tls.filter_chain_match.transport_protocol = _TLS
    mesh_chain.filter_chain_match.transport_protocol = _TLS
    mesh_chain.filter_chain_match.application_protocols.extend(KUMA_ALPN)
    return [plaintext, app_tls, mesh_chain]


def sidecar_inbounds(
    proxy: Resource,
    *,
    tls: MeshTls | None,
    permissions: tuple[Resource, ...] = (),
    taken: Collection[tuple[str, int]] = (),
) -> Inbounds:
    """The inbound listeners and local clusters of ordinary Dataplane `proxy`. `tls`: the mesh's mTLS (its
    `permissive` picks the chains), None when the mesh has none (plaintext, no RBAC). `permissions`: the mesh's
    TrafficPermissions. `taken`: the (address, port) pairs its outbounds bind (`0.0.0.0` for every address); an
    inbound on one of them is skipped."""
    out = Inbounds()
    spec: Any = proxy.spec
    networking = spec.networking
    mesh = proxy.meta.mesh
    for i, inbound in enumerate(networking.inbound):
        tags = {key: str(inbound.tags[key]) for key in inbound.tags}
        service = tags.get(TAG_SERVICE, "")
        if not service:
            continue
        address = inbound.address or networking.address
        workload_address = inbound.serviceAddress or address
        workload_port = inbound.servicePort or inbound.port
        name = f"inbound:{address}:{inbound.port}"
        where = f"networking.inbound[{i}]"
        if (workload_address, workload_port) == (address, inbound.port) and not networking.HasField(
            "transparent_proxying"
        ):
            out.problems.append(
                f"{where}: the application is on the inbound's own {address}:{inbound.port}; set servicePort "
                f"(or serviceAddress) to run a sidecar in front of it; {name} skipped"
            )
            continue
        if (address, inbound.port) in taken or (listeners.WILDCARD_ADDRESS, inbound.port) in taken:
            out.problems.append(f"{where}: port {inbound.port} is taken by an outbound; {name} skipped")
            continue
        protocol = tags.get(TAG_PROTOCOL, "tcp")
        cluster = f"localhost:{workload_port}"
        out.clusters[cluster] = _local_cluster(cluster, workload_address, workload_port, protocol)
        rbac = rbac_rules(tags, permissions, mesh) if tls is not None else None
        chains = _chains(name, service, cluster, protocol, tls, rbac)
        listener = listeners.listener(name, address, inbound.port, chains, gateway=False)
        listener.traffic_direction = base_pb2.INBOUND
        if tls is not None and tls.permissive:
            listener.listener_filters.append(listeners.tls_inspector())
        out.listeners[name] = listener
    return out
