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
| Prometheus endpoint, its cluster | `kuma:metrics:prometheus`, `kuma:metrics:hijacker` (Kuma; `prometheus.py`) |

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

from collections.abc import Iterable, Mapping
from typing import Any

from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources.model import Resource
from meshgate.resources.selectors import select_gateway_for
from meshgate.sockets import DEFAULT_SOCKET_DIR, access_log_socket_name, metrics_socket_name
from meshgate.xds import listeners
from meshgate.xds import routes as table
from meshgate.xds.builder import Builder, service_of
from meshgate.xds.context import MeshContext
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.external_services import ExternalServiceIndex
from meshgate.xds.gateway import GatewayBinding, ListenerBinding, bind, is_builtin_gateway
from meshgate.xds.inbound import inbound_identity, sidecar_inbounds
from meshgate.xds.outbounds import explicit_outbounds, vip_outbounds, vips_for
from meshgate.xds.policies import ConnectionManager, DataplaneSite, Direction, LogSite, Target, denial
from meshgate.xds.policies.shaper import Shaper, TagsKey
from meshgate.xds.prometheus import HIJACKER_CLUSTER, PROMETHEUS_LISTENER, prometheus_endpoint
from meshgate.xds.routes import UNRESOLVED_BACKEND
from meshgate.xds.sds import proxy_tls
from meshgate.xds.snapshot import CLUSTER, LISTENER, ROUTE, Snapshot
from meshgate.xds.transparent import is_transparent, passthrough, unbind
from meshgate.xds.vips import VipOutbound
from meshgate.xds.virtual_hosts import add_virtual_host, route_configuration

__all__ = ["MeshContext", "VipOutbound", "generate"]

_Listener = MeshGateway.Listener
_TLS = MeshGateway.TLS


def _http_listener(
    b: Builder,
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
    b: Builder, group_routes: Iterable[Resource], tags: Mapping[str, str], backends: list[TagsKey]
) -> list[tuple[str, int]]:
    destinations = table.tcp_destinations(group_routes)
    if b.shaper.shapes(Target.LISTENER):
        backends.extend(d.tags for d in destinations)
    found = table.weighted(destinations, b.resolver(tags))
    # No route at all: the proxy closes the connection, as it would for an unknown backend.
    return found or [(UNRESOLVED_BACKEND, 1)]


def _tcp_listener(
    b: Builder,
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
    b: Builder, proxy: Resource, binding: GatewayBinding, lb: ListenerBinding, cross: CrossMesh | None
) -> Any | None:
    """The mTLS of a crossMesh listener (over SDS: the gateway's identity, every mesh's CA), or None (and a
    problem) when its mesh has no mTLS."""
    mesh = proxy.meta.mesh
    if b.tls is None:
        b.problems.append(f"crossMesh listener on port {lb.port} needs mTLS enabled on mesh {mesh}; skipped")
        return None
    return b.tls.downstream_any_mesh()


def _gateway(
    b: Builder,
    proxy: Resource,
    binding: GatewayBinding,
    secrets: Mapping[str, bytes],
    cross: CrossMesh | None,
    mesh: Resource | None,
    access_log_socket: str,
) -> None:
    b.problems.extend(binding.problems)
    address: str = proxy.spec.networking.address  # type: ignore[attr-defined]
    prefix = service_of(proxy)
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


def _connection_managers(b: Builder, proxy: Resource, *, gateway: bool) -> tuple[ConnectionManager, ...]:
    """The proxy's HTTP connection managers as Kuma's generators configure them (TrafficTrace): a builtin
    gateway's listeners; a sidecar's `inbound:` listeners (their inbound's service) and `outbound:` ones (the
    proxy's identifying service, the destination's). Listeners without an HCM are left out by the hook."""
    service = service_of(proxy)
    if gateway:
        return tuple(ConnectionManager(name, Direction.UNSPECIFIED, service) for name in b.out[LISTENER])
    spec: Any = proxy.spec
    inbound_services = {
        f"inbound:{inbound.address or spec.networking.address}:{inbound.port}": inbound.tags["kuma.io/service"]
        for inbound in spec.networking.inbound
        if "kuma.io/service" in inbound.tags
    }
    out = []
    for name in b.out[LISTENER]:
        if name in inbound_services:
            out.append(ConnectionManager(name, Direction.INBOUND, str(inbound_services[name])))
        elif name in b.destinations:
            out.append(ConnectionManager(name, Direction.OUTBOUND, service, b.destinations[name]))
    return tuple(out)


def _trace(b: Builder, proxy: Resource, ctx: MeshContext, *, gateway: bool) -> None:
    """The dataplane-shaping policies (TrafficTrace), before `finish` runs the proxy-shaping ones."""
    if not b.shaper.shapes(Target.DATAPLANE):
        return
    spec: Any = proxy.spec
    if gateway or spec.networking.HasField("gateway"):
        tag_sets = [dict(spec.networking.gateway.tags)]
    else:
        tag_sets = [dict(inbound.tags) for inbound in spec.networking.inbound]
    site = DataplaneSite(proxy, ctx.mesh_resource, gateway, _connection_managers(b, proxy, gateway=gateway))
    b.problems.extend(b.shaper.shape_dataplane(site, tag_sets, b.out))


def _metrics(b: Builder, proxy: Resource, ctx: MeshContext, metrics_socket: str) -> None:
    """The Prometheus endpoint (`prometheus.py`), after the policies that shape HCMs: Kuma's TrafficTrace and
    access logs never touch it."""
    socket = metrics_socket or metrics_socket_name(DEFAULT_SOCKET_DIR, proxy.meta.name, proxy.meta.mesh)
    found = prometheus_endpoint(proxy, ctx.mesh_resource, socket=socket, tls=b.tls, taken=b.out[LISTENER].values())
    if isinstance(found, str):
        b.problems.append(found)
    elif found is not None:
        b.add(LISTENER, PROMETHEUS_LISTENER, found.listener)
        b.add(CLUSTER, HIJACKER_CLUSTER, found.cluster)


def generate(proxy: Resource, ctx: MeshContext, *, access_log_socket: str = "", metrics_socket: str = "") -> Snapshot:
    """The Envoy resources for `proxy` (a Dataplane of `ctx.mesh`), from its mesh's context (`MeshContext`).

    `access_log_socket`: the pipe the proxy's data plane process reads `tcp` TrafficLog lines from, as it sent
    it in its node metadata (`accessLogSocketPath`); "" names it as Kuma does for a proxy that sent none
    (`meshgate.sockets`). `metrics_socket`: where its data plane process serves the merged metrics the
    Prometheus endpoint forwards to (`metricsSocketPath`), "" for Kuma's name likewise.

    A builtin gateway gets its MeshGateway's listeners (the context's `vips` play no part); a delegated gateway
    or ordinary Dataplane gets its `networking.outbound` listeners and one per VIP outbound (`vips_for`).
    crossMesh listeners and VIP outbounds to other meshes' gateways need `ctx.cross_mesh`; without it both are
    skipped as problems.
    """
    shaper = Shaper(ctx.policies, ctx.modules, ctx.mesh_resource)
    services, tags = inbound_identity(proxy)
    tls, tls_problem = proxy_tls(
        proxy.meta.mesh, ctx.mesh_resource, ctx.cross_mesh, services or [service_of(proxy)], tags
    )
    b = Builder(ctx.index, shaper, ExternalServiceIndex(ctx.external_services), ctx.secrets, tls, ctx.egress)
    if tls_problem is not None:
        b.problems.append(tls_problem)
    if is_builtin_gateway(proxy):
        gateway = select_gateway_for(proxy, ctx.gateways)
        if gateway is None:
            b.problems.append(f"no MeshGateway in mesh {proxy.meta.mesh!r} matches Dataplane {proxy.meta.name!r}")
        else:
            binding = bind(proxy, gateway, ctx.routes, route_index=ctx.route_index)
            _gateway(b, proxy, binding, ctx.secrets, ctx.cross_mesh, ctx.mesh_resource, access_log_socket)
            _trace(b, proxy, ctx, gateway=True)
        _metrics(b, proxy, ctx, metrics_socket)
        return b.finish(proxy)
    taken = explicit_outbounds(b, proxy)
    vip_outbounds(b, proxy, vips_for(proxy, ctx.vips), taken, ctx.cross_mesh)
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
    _trace(b, proxy, ctx, gateway=False)
    _metrics(b, proxy, ctx, metrics_socket)
    return b.finish()
