"""Binding a builtin gateway Dataplane to its MeshGateway, and routes to the gateway's listeners.

Kuma 2.7 (`gateway/generator.go`):

- **Gateway selection** (which MeshGateway a Dataplane serves) is `meshgate.resources.selectors`, shared with
  the zone's gateway provisioning.
- **Route binding.** Each listener's tags are the Dataplane's gateway tags, overridden by the gateway's tags,
  overridden by the listener's. A route binds to a listener when any of its selectors matches those tags, and
  its protocol fits: HTTP routes to HTTP and HTTPS listeners, TCP routes to TCP and TLS listeners.
- **Ports.** Listeners sharing a port become one Envoy listener. HTTP and TCP listeners share one filter chain
  (hostname group `*`); HTTPS and TLS listeners get one filter chain per hostname, matched by SNI.
- **Virtual hosts.** Each listener hostname is a virtual host. A route's hostnames narrow a wildcard
  listener: `a.example.com` on a `*` or `*.example.com` listener becomes its own virtual host. A virtual host
  takes (1) the routes without hostnames of its owning listener, the most exact listener hostname that
  contains it, and (2) every route, bound to any listener containing it, with a hostname that contains it.
  So a route without hostnames applies to every virtual host of its listener, implicit ones included
  (Kuma leaves those out; meshgate follows the reference here), and never to another listener's virtual
  host; a route on `*` naming `foo.example.com` joins the `foo.example.com` listener's host, as in Kuma.

- **crossMesh.** A `crossMesh: true` listener binds routes as any HTTP listener does; `bind` marks its port
  `ListenerBinding.cross_mesh`, and `generate` serves it over mesh mTLS (`crossmesh.py`).

Problems that make a listener unusable (two protocols on one port) are reported, never raised: the rest of
the gateway still serves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources.model import Resource
from meshgate.resources.selectors import MATCH_ALL, selector_matches
from meshgate.resources.tags import TAG_SERVICE
from meshgate.xds import hostnames

__all__ = [
    "GatewayBinding",
    "HostnameGroup",
    "ListenerBinding",
    "VirtualHost",
    "bind",
    "is_builtin_gateway",
    "listener_name",
]

_Listener = MeshGateway.Listener
HTTP_PROTOCOLS = frozenset({_Listener.HTTP, _Listener.HTTPS})
TCP_PROTOCOLS = frozenset({_Listener.TCP, _Listener.TLS})
# Filter chains are per hostname for these; Envoy matches them on SNI.
SNI_PROTOCOLS = frozenset({_Listener.HTTPS, _Listener.TLS})


@dataclass(frozen=True, slots=True)
class VirtualHost:
    """One Envoy virtual host (HTTP) or the routes of one SNI filter chain (TCP/TLS)."""

    hostname: str
    routes: tuple[Resource, ...]  # MeshGatewayRoutes, by name
    # The merged tags of the MeshGateway listener that owns the hostname: what policies' sources match.
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HostnameGroup:
    """One Envoy filter chain: `*` for HTTP and TCP listeners, the listener hostname for HTTPS and TLS."""

    hostname: str
    tls: Any | None  # MeshGateway.TLS.Conf of the listener that owns the hostname
    virtual_hosts: tuple[VirtualHost, ...]  # Kuma's order: reverse hostname, so `*` comes last
    tags: Mapping[str, str] = field(default_factory=dict)  # the merged tags of the listener that owns the hostname


@dataclass(frozen=True, slots=True)
class ListenerBinding:
    """Every MeshGateway listener on one port, as one Envoy listener."""

    name: str  # "<gateway>:<PROTOCOL>:<port>", Kuma's listener name
    port: int
    protocol: int  # MeshGateway.Listener.Protocol
    connection_limit: int  # 0: unlimited
    groups: tuple[HostnameGroup, ...]  # most exact hostname first
    # `crossMesh: true` listeners: HTTP served over mesh mTLS to other meshes' proxies (see `crossmesh`).
    cross_mesh: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)  # the merged tags of the port's first listener


@dataclass(frozen=True, slots=True)
class GatewayBinding:
    gateway: Resource
    listeners: tuple[ListenerBinding, ...]  # by port
    problems: tuple[str, ...] = ()


def is_builtin_gateway(dataplane: Resource) -> bool:
    spec: Any = dataplane.spec
    return bool(
        spec.networking.HasField("gateway") and spec.networking.gateway.type == Dataplane.Networking.Gateway.BUILTIN
    )


def listener_name(gateway: str, protocol: int, port: int) -> str:
    return f"{gateway}:{_Listener.Protocol.Name(protocol)}:{port}"


@dataclass(frozen=True, slots=True)
class _ListenerHost:
    hostname: str
    plain: tuple[Resource, ...]  # bound routes without hostnames
    named: Mapping[str, tuple[Resource, ...]]  # route hostname -> bound routes naming it
    tags: Mapping[str, str]  # the listener's merged tags

    @classmethod
    def of(cls, hostname: str, routes: Iterable[Resource], tags: Mapping[str, str]) -> _ListenerHost:
        plain: list[Resource] = []
        named: dict[str, list[Resource]] = defaultdict(list)
        for route in routes:
            wanted = _route_hostnames(route)
            if not wanted:
                plain.append(route)
            for name in set(wanted):
                named[name].append(route)
        return cls(hostname, tuple(plain), {name: tuple(rs) for name, rs in named.items()}, tags)


def _route_hostnames(route: Resource) -> Sequence[str]:
    spec: Any = route.spec
    return [hostnames.normalize(h) for h in spec.conf.http.hostnames] if spec.conf.HasField("http") else []


def _route_fits(route: Resource, protocol: int) -> bool:
    conf: Any = route.spec.conf  # type: ignore[attr-defined]
    if conf.HasField("http"):
        return protocol in HTTP_PROTOCOLS
    if conf.HasField("tcp"):
        return protocol in TCP_PROTOCOLS
    return False


def _binds(route: Resource, tags: Mapping[str, str]) -> bool:
    spec: Any = route.spec
    return any(selector_matches(selector.match, tags) for selector in spec.selectors)


def _virtual_hosts(hosts: Sequence[_ListenerHost]) -> tuple[VirtualHost, ...]:
    names = {h.hostname for h in hosts}
    for host in hosts:
        if host.hostname == hostnames.WILDCARD:
            names.update(host.named)  # `*` contains every name
        else:
            names.update(n for n in host.named if hostnames.contains(host.hostname, n))
    out = []
    for name in names:
        if len(hosts) == 1:
            # The usual listener, alone on its port: it contains every name, and owns each.
            around: Sequence[_ListenerHost] = hosts
            owner = hosts[0].hostname
            owner_tags = hosts[0].tags
        else:
            around = [h for h in hosts if hostnames.contains(h.hostname, name)]
            # The listener that would serve this name if it had no virtual host of its own.
            owner = hostnames.most_exact(h.hostname for h in around)
            owner_tags = next(h.tags for h in around if h.hostname == owner)
        covering = hostnames.containers(name)
        routes: dict[str, Resource] = {}
        for host in around:
            if host.hostname == owner:
                routes.update((r.meta.name, r) for r in host.plain)
            for hostname in covering:
                for r in host.named.get(hostname, ()):
                    routes[r.meta.name] = r
        out.append(VirtualHost(name, tuple([routes[key] for key in sorted(routes)]), owner_tags))
    # Kuma sorts by reverse hostname: fully qualified names before wildcards, `*` last. Envoy picks a
    # virtual host by domain specificity, so the order only keeps the output stable.
    return tuple(sorted(out, key=lambda vh: vh.hostname, reverse=True))


def _merged_tags(*layers: Mapping[str, str]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for layer in layers:
        merged.update(layer)
    return merged


class RouteIndex:
    """A mesh's routes by the `kuma.io/service` their selectors require, built once per mesh.

    A selector matches only tags that hold each of its keys, so a route whose every selector names a service
    can only bind to a listener whose merged tags carry one of those services: binding a gateway checks those
    candidates (plus routes with a selector that names no service) instead of every route in the mesh.
    """

    def __init__(self, routes: Iterable[Resource]) -> None:
        self._by_service: dict[str, list[Resource]] = {}
        self._any_service: list[Resource] = []
        for route in sorted(routes, key=lambda r: (r.meta.mesh, r.meta.name)):
            services: set[str] = set()
            wildcard = False
            for selector in route.spec.selectors:  # type: ignore[attr-defined]
                service = selector.match.get(TAG_SERVICE)
                if service is None or service == MATCH_ALL:
                    wildcard = True
                else:
                    services.add(service)
            if wildcard:
                self._any_service.append(route)
            for service in services:
                self._by_service.setdefault(service, []).append(route)

    def candidates(self, tags: Mapping[str, str]) -> list[Resource]:
        """The routes that may bind to a listener with `tags`, sorted by (mesh, name)."""
        found = self._by_service.get(tags.get(TAG_SERVICE, ""), [])
        if not self._any_service:
            return found
        return sorted(
            {id(r): r for r in (*found, *self._any_service)}.values(), key=lambda r: (r.meta.mesh, r.meta.name)
        )


def bind(
    dataplane: Resource,
    gateway: Resource,
    routes: Iterable[Resource],
    *,
    route_index: RouteIndex | None = None,
) -> GatewayBinding:
    """The Envoy listeners of `gateway` on `dataplane`, with the routes bound to each virtual host.

    `route_index`: the mesh's routes indexed once (`RouteIndex`) by a caller binding many proxies; the
    result is the same as scanning `routes`, which is what happens without it. `crossMesh: true` listeners
    are marked `ListenerBinding.cross_mesh`, which the caller must serve over mesh mTLS (plaintext clients are
    refused). A port's first listener decides whether the port is crossMesh; a listener that disagrees is
    skipped, as a listener with another protocol is."""
    spec: Any = gateway.spec
    dp_tags: Mapping[str, str] = dataplane.spec.networking.gateway.tags  # type: ignore[attr-defined]
    # Sorting every route of the mesh is wasted on a caller with an index, which has done it once for all.
    mesh_routes = (
        sorted((r for r in routes if r.meta.mesh == gateway.meta.mesh), key=lambda r: r.meta.name)
        if route_index is None
        else []
    )
    by_port: dict[int, list[Any]] = defaultdict(list)
    for listener in spec.conf.listeners:
        by_port[listener.port].append(listener)

    problems: list[str] = []
    bindings: list[ListenerBinding] = []
    for port in sorted(by_port):
        listeners = by_port[port]
        protocol = listeners[0].protocol
        port_cross_mesh = bool(listeners[0].crossMesh)
        groups: dict[str, list[_ListenerHost]] = defaultdict(list)
        tls_by_group: dict[str, Any] = {}
        tags_by_group: dict[str, Mapping[str, str]] = {}
        limits: list[int] = []
        for listener in listeners:
            if listener.protocol != protocol:
                problems.append(
                    f"listener on port {port}: protocol {_Listener.Protocol.Name(listener.protocol)} conflicts "
                    f"with {_Listener.Protocol.Name(protocol)}; skipped"
                )
                continue
            if bool(listener.crossMesh) != port_cross_mesh:
                problems.append(
                    f"listener on port {port}: crossMesh {str(bool(listener.crossMesh)).lower()} conflicts with "
                    f"{str(port_cross_mesh).lower()}; skipped"
                )
                continue
            hostname = hostnames.normalize(listener.hostname)
            key = hostname if protocol in SNI_PROTOCOLS else hostnames.WILDCARD
            if key in tls_by_group and protocol in SNI_PROTOCOLS:
                problems.append(f"listener on port {port}: hostname {hostname!r} is repeated; skipped")
                continue
            tags = _merged_tags(dp_tags, spec.tags, listener.tags)
            pool = (
                [r for r in route_index.candidates(tags) if r.meta.mesh == gateway.meta.mesh]
                if route_index is not None
                else mesh_routes
            )
            bound = tuple(r for r in pool if _route_fits(r, protocol) and _binds(r, tags))
            groups[key].append(_ListenerHost.of(hostname, bound, tags))
            tls_by_group.setdefault(key, listener.tls if listener.HasField("tls") else None)
            tags_by_group.setdefault(key, tags)
            if listener.resources.connection_limit:
                limits.append(listener.resources.connection_limit)
        if not groups:
            continue
        bindings.append(
            ListenerBinding(
                name=listener_name(gateway.meta.display_name, protocol, port),
                port=port,
                protocol=protocol,
                # Kuma takes the first listener's limit; the smallest one honours every listener's promise.
                connection_limit=min(limits, default=0),
                groups=tuple(
                    HostnameGroup(key, tls_by_group[key], _virtual_hosts(groups[key]), tags_by_group[key])
                    for key in hostnames.by_exactness(groups)
                ),
                cross_mesh=port_cross_mesh,
                tags=next(iter(tags_by_group.values())),
            )
        )
    return GatewayBinding(gateway, tuple(bindings), tuple(problems))
