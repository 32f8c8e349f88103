"""`generate`: one proxy's Envoy configuration from its mesh's `MeshContext` (`context.py`). Pure: no I/O.

Naming (deterministic; equal inputs give byte-equal snapshots):

| resource | name |
|---|---|
| gateway listener | `<gateway>:<PROTOCOL>:<port>` (Kuma), one per port |
| gateway route configuration | `<listener>:<hostname>`: `<listener>:*` for HTTP, one per SNI hostname for HTTPS |
| outbound listener / its route configuration | `outbound:<address>:<port>` (Kuma's listener name) |
| VIP outbound listener / its route configuration | `outbound:<vip>:<port>` (the same scheme) |
| cluster and its ClusterLoadAssignment | `<service>-<16 hex>` (see `clusters.cluster_name`) |
| cross-mesh cluster | `<gateway service>-<16 hex>`, the same hash over service, mesh, gateway, name and port |

A builtin gateway Dataplane gets its MeshGateway's listeners; any other Dataplane gets one listener per
`networking.outbound` entry on `127.0.0.1:<port>` (or the outbound's address), HTTP through an HCM when the
service speaks http, http2 or grpc, a TCP proxy otherwise; plus one listener per `VipOutbound` of the context
(`MeshContext.vips`), routed the same way (a cross-mesh gateway name is always HTTP); plus, for an ordinary
Dataplane, one sidecar inbound `inbound:<address>:<port>` per `networking.inbound` (`inbound.py`). With
`networking.transparentProxying`, those listeners bind no port and the capture listeners
`outbound:passthrough:ipv4` / `inbound:passthrough:ipv4` hand connections to them (`transparent.py`).

Mesh mTLS (`sds.py`): when the proxy's Mesh has mTLS on, every cluster to the mesh's Dataplanes (a sidecar's
outbounds, a builtin or delegated gateway's routes) speaks mTLS to the destination's sidecar inbound, as the
proxy's own identity (`spiffe://<mesh>/<service>`: a gateway's service, a sidecar's inbound services), with
Kuma's SNI and the destination's SPIFFE id as the only SAN accepted; inbounds require the mesh's client
certificate and enforce TrafficPermission. Certificates are `Secret`s over SDS (`identity_cert:secret:<mesh>`,
`mesh_ca:secret:<mesh>`), never inline in listeners or clusters. A Dataplane with no sidecar running is not
reachable then: Kuma assumes every Dataplane has one. The gateway-side TrafficPermission gate
(`policies/trafficpermission.py`) then applies to ExternalServices only; without mesh mTLS it is not enforced.

Cross-mesh (gateway.md, "Cross-mesh"; `crossmesh.CrossMesh`): a builtin gateway's crossMesh listener is served
over mesh mTLS, and a VipOutbound for another mesh's gateway name becomes an HTTP connection manager whose
cluster speaks mTLS to that mesh's gateway Dataplanes. Both need mTLS on the proxy's mesh (and the client
side on the target mesh too); without it they are skipped as problems.

Errors: nothing raises for bad input. What cannot be generated (no matching gateway, conflicting
listeners, unusable certificates, outbounds without tags, VIP outbounds on a taken or ambiguous address) is
left out and listed in `Snapshot.problems`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources.model import Resource
from meshgate.resources.selectors import select_gateway_for
from meshgate.resources.tags import TAG_SERVICE
from meshgate.sockets import DEFAULT_SOCKET_DIR, access_log_socket_name
from meshgate.xds import clusters, listeners
from meshgate.xds import routes as table
from meshgate.xds.context import MeshContext
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.external_services import ExternalServiceError, ExternalServiceIndex, external_cluster
from meshgate.xds.external_services import protocol_of as protocol_of_external
from meshgate.xds.gateway import GatewayBinding, ListenerBinding, bind, is_builtin_gateway
from meshgate.xds.inbound import inbound_identity, sidecar_inbounds
from meshgate.xds.policies import LogSite, Target, denial
from meshgate.xds.policies.shaper import ClusterMatches, Shaper, TagsKey, tags_key
from meshgate.xds.routes import UNRESOLVED_BACKEND, Destination
from meshgate.xds.sds import MeshTls, proxy_tls
from meshgate.xds.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, Snapshot
from meshgate.xds.transparent import is_transparent, passthrough, unbind
from meshgate.xds.vips import VipOutbound
from meshgate.xds.virtual_hosts import add_virtual_host, route_configuration

__all__ = ["MeshContext", "VipOutbound", "generate"]

_Listener = MeshGateway.Listener
_TLS = MeshGateway.TLS
_OUTBOUND_ADDRESS = "127.0.0.1"
_WILDCARD_ADDRESS = "0.0.0.0"  # where listeners.listener binds an outbound whose address is a DNS name


class _Builder:
    """Collects resources for one proxy, and the clusters that routes and proxies name."""

    def __init__(
        self,
        index: clusters.EndpointIndex,
        shaper: Shaper,
        external: ExternalServiceIndex | None = None,
        secrets: Mapping[str, bytes] | None = None,
        tls: MeshTls | None = None,
    ) -> None:
        self.index = index
        self.tls = tls  # the mesh's mTLS: clusters to its Dataplanes use it
        self.shaper = shaper
        self.external = external if external is not None else ExternalServiceIndex(())
        self.secrets = secrets or {}
        self.out: dict[str, dict[str, Message]] = {LISTENER: {}, ROUTE: {}, CLUSTER: {}, ENDPOINT: {}}
        self.problems: list[str] = []
        # A gate denied a backend of the listener being built (`policies.denial`): it needs the RBAC filter.
        self.forbidding = False
        # cluster name -> (destination tags, their endpoints, the policies that shape it): looked up once, when a
        # route first names them.
        self._destinations: dict[str, tuple[dict[str, str], list[clusters.Endpoint], ClusterMatches]] = {}
        # The same for destinations an ExternalService serves (`external_services`): they win over Dataplanes.
        self._external: dict[str, tuple[dict[str, str], list[Resource], ClusterMatches]] = {}
        self._resolved: dict[table.Tags, str] = {}
        self._shaped: dict[tuple[TagsKey, table.Tags], str] = {}

    def resolve(self, dest: Destination) -> str:
        """`EndpointIndex.resolve`, remembering the endpoints so that `finish` need not look them up again."""
        name = self._resolved.get(dest.tags)  # the weight plays no part in the cluster
        if name is None:
            name = self._target(dest.tag_map, ())
            self._resolved[dest.tags] = name
        return name

    def _target(self, tags: dict[str, str], matches: ClusterMatches) -> str:
        """The cluster of destination `tags` shaped by `matches`, remembered for `finish`; an ExternalService
        that matches wins over the mesh's Dataplanes (Kuma's gateway cluster generator)."""
        external = self.external.matching(tags) if self.external else []
        found = [] if external else self.index.matching(tags)
        if not external and not found:
            return UNRESOLVED_BACKEND
        name = clusters.cluster_name({**tags, **self.shaper.identity(matches)} if matches else tags)
        if external:
            self._external.setdefault(name, (tags, external, matches))
        else:
            self._destinations.setdefault(name, (tags, found, matches))
        return name

    def resolver(self, listener_tags: Mapping[str, str]) -> table.Resolver:
        """`resolve` for the routes of a gateway listener with `listener_tags`: a backend whose cluster a policy
        shapes gets a cluster of its own (`policies.shaper`). Without cluster-shaping policies, `resolve`."""
        base = self.resolve if not self.shaper.shapes(Target.CLUSTER) else self._shaped_resolver(listener_tags)
        if not self.shaper.gates:
            return base

        def gated(dest: Destination) -> str:
            # With mesh mTLS the destination's sidecar enforces TrafficPermission (`inbound.py`); the gate stays
            # for what has no sidecar: ExternalServices, where Kuma's gateway enforces it too.
            sidecar = self.tls is not None and not self.external.matching(dest.tag_map)
            if not sidecar and self.shaper.denied(listener_tags, dest.tags):
                self.forbidding = True
                return denial.forbidden_cluster(dest.tag_map.get(TAG_SERVICE, ""))
            return base(dest)

        return gated

    def _shaped_resolver(self, listener_tags: Mapping[str, str]) -> table.Resolver:
        key = tags_key(listener_tags)

        def resolve(dest: Destination) -> str:
            name = self._shaped.get((key, dest.tags))
            if name is None:
                name = self._resolve_shaped(listener_tags, dest)
                self._shaped[(key, dest.tags)] = name
            return name

        return resolve

    def _resolve_shaped(self, listener_tags: Mapping[str, str], dest: Destination) -> str:
        matches = self.shaper.cluster_matches(listener_tags, dest.tags)
        if not matches:
            return self.resolve(dest)
        return self._target(dest.tag_map, matches)

    def add(self, type_url: str, name: str, message: Message) -> None:
        self.out[type_url][name] = message

    def finish(self, proxy: Resource | None = None) -> Snapshot:
        """The snapshot; `proxy` (a builtin gateway): the proxy-shaping policies edit its whole config last."""
        for name, (tags, found, matches) in self._destinations.items():
            assignment = clusters.load_assignment(name, found, local_zone=self.index.zone)
            protocol = clusters.protocol_of(tags, found)
            if clusters.needs_dns_for(found):
                out = clusters.cluster(name, protocol, dns_assignment=assignment)
            else:
                out = clusters.cluster(name, protocol)
                self.add(ENDPOINT, name, assignment)
            if self.tls is not None:
                out.transport_socket.CopyFrom(self.tls.upstream(tags))
            if matches:
                self.shaper.shape_cluster(name, out, matches, protocol)
            self.add(CLUSTER, name, out)
        for name, (tags, services, matches) in self._external.items():
            protocol = protocol_of_external(tags, services)
            try:
                out = external_cluster(name, services, protocol, secrets=self.secrets)
            except ExternalServiceError as err:
                # The routes name it: Envoy answers their share with the cluster-not-found status (500).
                self.problems.append(f"{err}; cluster {name} skipped")
                continue
            if matches:
                self.shaper.shape_cluster(name, out, matches, protocol)
            self.add(CLUSTER, name, out)
        if proxy is not None and self.shaper.shapes(Target.PROXY):
            tags = dict(proxy.spec.networking.gateway.tags)  # type: ignore[attr-defined]
            self.problems.extend(self.shaper.shape_proxy(tags, proxy.meta.name, self.out))
        if self.tls is not None and (secrets := self.tls.secrets()):
            self.out[SECRET] = dict(secrets)
        return Snapshot.of(self.out, tuple(self.problems), self.shaper.report())


def _service(proxy: Resource) -> str:
    spec: Any = proxy.spec
    tags = spec.networking.gateway.tags
    if TAG_SERVICE in tags:
        return str(tags[TAG_SERVICE])
    for inbound in spec.networking.inbound:
        if TAG_SERVICE in inbound.tags:
            return str(inbound.tags[TAG_SERVICE])
    return proxy.meta.name


def _http_listener(
    b: _Builder,
    lb: ListenerBinding,
    *,
    prefix: str,
    secrets: Mapping[str, bytes],
    backends: list[TagsKey],
    site: LogSite,
    mtls: Any | None = None,
) -> list[Any]:
    """`mtls`: the transport socket of a crossMesh listener; its chain then matches TLS connections only.
    `backends` collects every route backend, when a listener-shaping policy needs them. Each HCM is built
    after its routes, so that it carries the HTTP filters the policies that shaped them need."""
    tls = lb.protocol == _Listener.HTTPS
    chains: list[Any] = []
    for group in lb.groups:
        route_name = f"{lb.name}:{group.hostname}"
        server_name: str | None = None
        socket = mtls
        if tls:
            where = f"{lb.name}:{group.hostname}.tls"
            if group.tls is None or group.tls.mode != _TLS.TERMINATE:
                b.problems.append(f"{where}: HTTPS needs mode TERMINATE; filter chain skipped")
                continue
            try:
                socket = listeners.downstream_tls(group.tls, alpn=listeners.ALPN_HTTPS, where=where, secrets=secrets)
            except listeners.CertificateError as err:
                b.problems.append(f"{err}; filter chain skipped")
                continue
            server_name = group.hostname
        elif mtls is not None:
            # Any SNI, but TLS only: a plaintext client matches no filter chain and is disconnected.
            server_name = "*"
        config = route_configuration(route_name)
        shaped: set[str] = set()
        for vh in group.virtual_hosts:
            entries = table.entries(vh.routes)
            shape = b.shaper.route_shaper(vh.tags, f"{route_name}/{vh.hostname}", shaped)
            if b.shaper.shapes(Target.LISTENER):
                backends.extend(d.tags for entry in entries for d in entry.forward)
            resolve = b.resolver(vh.tags)
            add_virtual_host(config, vh.hostname, entries, listener_port=lb.port, tls=tls, resolve=resolve, shape=shape)
        logs = b.shaper.access_logs(group.tags, site, f"{lb.name}/{len(chains)}")
        hcm = listeners.http_connection_manager(
            prefix, route_name, edge=True, http_filters=b.shaper.http_filters(shaped), access_logs=logs
        )
        filters = [hcm]
        if lb.connection_limit:
            filters.insert(0, listeners.connection_limit(prefix, lb.connection_limit))
        chains.append(listeners.filter_chain(filters, server_name=server_name, tls=socket))
        if b.forbidding:
            denial.forbid_shares(config)
        b.add(ROUTE, route_name, config)
    return chains


def _tcp_clusters(
    b: _Builder, group_routes: Iterable[Resource], tags: Mapping[str, str], backends: list[TagsKey]
) -> list[tuple[str, int]]:
    destinations = table.tcp_destinations(group_routes)
    if b.shaper.shapes(Target.LISTENER):
        backends.extend(d.tags for d in destinations)
    found = table.weighted(destinations, b.resolver(tags))
    # No route at all: the proxy closes the connection, as it would for an unknown backend.
    return found or [(UNRESOLVED_BACKEND, 1)]


def _tcp_listener(
    b: _Builder,
    lb: ListenerBinding,
    *,
    prefix: str,
    secrets: Mapping[str, bytes],
    backends: list[TagsKey],
    site: LogSite,
) -> list[Any]:
    chains: list[Any] = []
    for group in lb.groups:
        group_routes = {r.meta.name: r for vh in group.virtual_hosts for r in vh.routes}
        routes = [group_routes[k] for k in sorted(group_routes)]
        logs = b.shaper.access_logs(group.tags, site, f"{lb.name}/{len(chains)}")
        filters = [listeners.tcp_proxy(prefix, _tcp_clusters(b, routes, group.tags, backends), access_logs=logs)]
        if lb.connection_limit:
            filters.insert(0, listeners.connection_limit(prefix, lb.connection_limit))
        if lb.protocol == _Listener.TCP:
            chains.append(listeners.filter_chain(filters))
            continue
        where = f"{lb.name}:{group.hostname}.tls"
        mode = listeners.tls_mode(group.tls)
        if mode == _TLS.PASSTHROUGH:
            chains.append(listeners.filter_chain(filters, server_name=group.hostname))
        elif mode == _TLS.TERMINATE:
            try:
                socket = listeners.downstream_tls(group.tls, alpn=(), where=where, secrets=secrets)
            except listeners.CertificateError as err:
                b.problems.append(f"{err}; filter chain skipped")
                continue
            chains.append(listeners.filter_chain(filters, server_name=group.hostname, tls=socket))
        else:
            b.problems.append(f"{where}: TLS needs mode TERMINATE or PASSTHROUGH; filter chain skipped")
    return chains


def _cross_mesh_socket(
    b: _Builder, proxy: Resource, binding: GatewayBinding, lb: ListenerBinding, cross: CrossMesh | None
) -> Any | None:
    """The mTLS of a crossMesh listener (over SDS: the gateway's identity, every mesh's CA), or None (and a
    problem) when its mesh has no mTLS."""
    mesh = proxy.meta.mesh
    if b.tls is None:
        b.problems.append(f"crossMesh listener on port {lb.port} needs mTLS enabled on mesh {mesh}; skipped")
        return None
    return b.tls.downstream_any_mesh()


def _gateway(
    b: _Builder,
    proxy: Resource,
    binding: GatewayBinding,
    secrets: Mapping[str, bytes],
    cross: CrossMesh | None,
    mesh: Resource | None,
    access_log_socket: str,
) -> None:
    b.problems.extend(binding.problems)
    address: str = proxy.spec.networking.address  # type: ignore[attr-defined]
    prefix = _service(proxy)
    socket = access_log_socket or access_log_socket_name(DEFAULT_SOCKET_DIR, proxy.meta.name, proxy.meta.mesh)
    for lb in binding.listeners:
        http = lb.protocol in (_Listener.HTTP, _Listener.HTTPS)
        site = LogSite(mesh, proxy.meta.mesh, address, prefix, http=http, access_log_socket=socket)
        backends: list[TagsKey] = []
        b.forbidding = False
        if lb.cross_mesh:
            mtls = _cross_mesh_socket(b, proxy, binding, lb, cross)
            if mtls is None:
                continue
            site = LogSite(mesh, proxy.meta.mesh, address, prefix, http=True, access_log_socket=socket)
            chains = _http_listener(b, lb, prefix=prefix, secrets=secrets, backends=backends, site=site, mtls=mtls)
        elif lb.protocol in (_Listener.HTTP, _Listener.HTTPS):
            chains = _http_listener(b, lb, prefix=prefix, secrets=secrets, backends=backends, site=site)
        else:
            chains = _tcp_listener(b, lb, prefix=prefix, secrets=secrets, backends=backends, site=site)
        if not chains:
            b.problems.append(f"{lb.name}: no usable filter chain; listener skipped")
            continue
        out = listeners.listener(lb.name, address, lb.port, chains, gateway=True)
        if b.forbidding:
            denial.install_rbac(out)
        b.shaper.shape_listener(out, lb.tags, backends)
        b.add(LISTENER, lb.name, out)


def _outbound_listener(
    b: _Builder,
    name: str,
    address: str,
    port: int,
    tags: dict[str, str],
    *,
    http: bool,
    resolve: table.Resolver | None = None,
) -> None:
    """A listener `name` on `address:port` to the destination `tags`: an HCM over RDS (route configuration `name`)
    when `http`, else a TCP proxy. `resolve`: names the cluster instead of the mesh's endpoint index."""
    dest = table.destination(tags, 1)
    if http:
        # One catch-all route; the virtual host answers any Host, as the API gateway in front sends its own.
        catch_all = table.Entry(route=name, match=table.Match(prefix="/"), forward=(dest,))
        config = route_configuration(name)
        add_virtual_host(config, "*", [catch_all], listener_port=port, tls=False, resolve=resolve or b.resolve)
        b.add(ROUTE, name, config)
        chain = listeners.filter_chain([listeners.http_connection_manager(name, name, edge=False)])
    else:
        chain = listeners.filter_chain([listeners.tcp_proxy(name, [(b.resolve(dest), 1)])])
    b.add(LISTENER, name, listeners.listener(name, address, port, [chain], gateway=False))


def _outbounds(b: _Builder, proxy: Resource) -> set[tuple[str, int]]:
    """The `networking.outbound` listeners; returns the (bound address, port) pairs they take."""
    spec: Any = proxy.spec
    taken: set[tuple[str, int]] = set()
    for i, outbound in enumerate(spec.networking.outbound):
        address = outbound.address or _OUTBOUND_ADDRESS
        name = f"outbound:{address}:{outbound.port}"
        tags = dict(outbound.tags)
        if TAG_SERVICE not in tags:
            b.problems.append(f"networking.outbound[{i}]: no {TAG_SERVICE} tag (backendRef is not supported)")
            continue
        http = b.index.protocol(tags) in clusters.HTTP_PROTOCOLS
        _outbound_listener(b, name, address, outbound.port, tags, http=http)
        taken.add((address if clusters.is_ip(address) else _WILDCARD_ADDRESS, outbound.port))
    return taken


def _cross_mesh_outbound(b: _Builder, proxy: Resource, vip: VipOutbound, cross: CrossMesh | None) -> None:
    """`vip` names another mesh's crossMesh gateway: HTTP over mTLS to its gateway Dataplanes."""
    name = vip.listener_name
    missing = [m for m in (proxy.meta.mesh, vip.mesh) if cross is None or not cross.enabled(m)]
    if cross is None or missing or b.tls is None:
        missing = missing or [proxy.meta.mesh]
        b.problems.append(f"{name}: cross-mesh name {vip.hostname} needs mTLS enabled on mesh {missing[0]}; skipped")
        return
    target = {TAG_SERVICE: vip.service, "kuma.io/mesh": vip.mesh, "gateway": vip.gateway, "hostname": vip.hostname}
    cluster = clusters.cluster_name({**target, "port": str(vip.port)})
    assignment = clusters.load_assignment(
        cluster, cross.endpoints(vip.mesh, vip.gateway, vip.port), local_zone=b.index.zone
    )
    tls = b.tls.upstream_cross_mesh(vip.mesh, vip.service, sni=vip.hostname)
    if clusters.needs_dns(assignment):
        out = clusters.cluster(cluster, "http", dns_assignment=assignment)
    else:
        out = clusters.cluster(cluster, "http")
        b.add(ENDPOINT, cluster, assignment)
    out.transport_socket.CopyFrom(tls)
    b.add(CLUSTER, cluster, out)
    _outbound_listener(b, name, vip.vip, vip.port, {TAG_SERVICE: vip.service}, http=True, resolve=lambda _: cluster)


def _vip_outbounds(
    b: _Builder,
    proxy: Resource,
    vips: Sequence[VipOutbound],
    taken: set[tuple[str, int]],
    cross: CrossMesh | None,
) -> None:
    """One listener per distinct VipOutbound, in address order. Skipped, as problems: one whose `vip:port` an
    explicit outbound binds (on that address or on the wildcard), and every one of several that share a
    `vip:port` but not their destination (ambiguous, so none is routed)."""
    by_address: dict[tuple[str, int], list[VipOutbound]] = {}
    for vip in sorted(set(vips), key=VipOutbound.sort_key):
        by_address.setdefault((vip.vip, vip.port), []).append(vip)
    for (address, port), group in by_address.items():
        name = f"outbound:{address}:{port}"
        if (address, port) in taken or (_WILDCARD_ADDRESS, port) in taken:
            service = group[0].service
            b.problems.append(f"{name}: VIP outbound for {service!r} collides with a networking.outbound; skipped")
            continue
        if len(group) > 1:
            targets = ", ".join(f"{v.kind} {v.service!r}" for v in group)
            b.problems.append(f"{name}: VIP outbounds disagree on the destination ({targets}); skipped")
            continue
        (vip,) = group
        if vip.cross_mesh and vip.mesh != proxy.meta.mesh:
            _cross_mesh_outbound(b, proxy, vip, cross)
            continue
        tags = {TAG_SERVICE: vip.service}
        # A cross-mesh listener is HTTP (gateway.md, "Cross-mesh"); a service speaks what its inbounds say.
        http = vip.kind == "gateway" or b.index.protocol(tags) in clusters.HTTP_PROTOCOLS
        _outbound_listener(b, name, address, port, tags, http=http)


def vips_for(proxy: Resource, vips: Sequence[VipOutbound]) -> Sequence[VipOutbound]:
    """The VIP outbounds `proxy` gets. Kuma gives them to transparent proxies only, whose capture listeners
    take the connections to a VIP that no interface holds; a proxy without one would be refused every such
    listener by the kernel ("cannot bind '240.0.0.1:80'") and NACK them all. meshgate also keeps those on a
    loopback VIP range (`--vip-cidr 127.x`), which any proxy can bind: the delegated-gateway setup without a
    transparent proxy."""
    if is_transparent(proxy):
        return vips
    return [v for v in vips if _is_loopback(v.vip)]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def generate(proxy: Resource, ctx: MeshContext, *, access_log_socket: str = "") -> Snapshot:
    """The Envoy resources for `proxy` (a Dataplane of `ctx.mesh`), from its mesh's context (`MeshContext`).

    `access_log_socket`: the pipe the proxy's data plane process reads `tcp` TrafficLog lines from, as it sent
    it in its node metadata (`accessLogSocketPath`); "" names it as Kuma does for a proxy that sent none
    (`meshgate.sockets`).

    A builtin gateway gets its MeshGateway's listeners (the context's `vips` play no part); a delegated gateway
    or ordinary Dataplane gets its `networking.outbound` listeners and one per VIP outbound (`vips_for`).
    crossMesh listeners and VIP outbounds to other meshes' gateways need `ctx.cross_mesh`; without it both are
    skipped as problems.
    """
    shaper = Shaper(ctx.policies, ctx.modules, ctx.mesh_resource)
    services, tags = inbound_identity(proxy)
    tls, tls_problem = proxy_tls(
        proxy.meta.mesh, ctx.mesh_resource, ctx.cross_mesh, services or [_service(proxy)], tags
    )
    b = _Builder(ctx.index, shaper, ExternalServiceIndex(ctx.external_services), ctx.secrets, tls)
    if tls_problem is not None:
        b.problems.append(tls_problem)
    if is_builtin_gateway(proxy):
        gateway = select_gateway_for(proxy, ctx.gateways)
        if gateway is None:
            b.problems.append(f"no MeshGateway in mesh {proxy.meta.mesh!r} matches Dataplane {proxy.meta.name!r}")
        else:
            binding = bind(proxy, gateway, ctx.routes, route_index=ctx.route_index)
            _gateway(b, proxy, binding, ctx.secrets, ctx.cross_mesh, ctx.mesh_resource, access_log_socket)
        return b.finish(proxy)
    taken = _outbounds(b, proxy)
    _vip_outbounds(b, proxy, vips_for(proxy, ctx.vips), taken, ctx.cross_mesh)
    if tls_problem is None:
        permissions = ctx.policies.get("TrafficPermission", ())
        inbounds = sidecar_inbounds(proxy, tls=tls, permissions=permissions, taken=taken)
        b.out[LISTENER].update(inbounds.listeners)
        b.out[CLUSTER].update(inbounds.clusters)
        b.problems.extend(inbounds.problems)
    if is_transparent(proxy):  # bound nowhere: reached through the capture listeners' original-dst hand-off
        unbind(b.out[LISTENER].values())
    captured, passthrough_clusters = passthrough(proxy, ctx.mesh_resource)
    b.out[LISTENER].update(captured)
    b.out[CLUSTER].update(passthrough_clusters)
    return b.finish()
