"""The outbound listeners of a delegated gateway or an ordinary Dataplane: one per `networking.outbound` entry, and
one per `.mesh` VIP the proxy gets (`vips_for`), a cross-mesh gateway name among them.

Each listens on `address:port` (an explicit outbound's address, else 127.0.0.1; a DNS-name address binds the
wildcard), named `outbound:<address>:<port>` as in Kuma, and routes to its destination: an HTTP connection
manager over RDS (one catch-all route) when the destination speaks http, http2 or grpc, a TCP proxy otherwise.
A VIP outbound is routed exactly as an explicit outbound on the same address and port. A cross-mesh name
(gateway.md, "Cross-mesh") is always HTTP, over mTLS to the target mesh's gateway Dataplanes (`crossmesh.py`,
`sds.MeshTls.upstream_cross_mesh`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_SERVICE
from meshgate.xds import clusters, listeners
from meshgate.xds import routes as table
from meshgate.xds.builder import Builder
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE
from meshgate.xds.transparent import is_transparent
from meshgate.xds.vips import VipOutbound
from meshgate.xds.virtual_hosts import add_virtual_host, route_configuration

__all__ = ["explicit_outbounds", "outbound_listener", "vip_outbounds", "vips_for"]

_OUTBOUND_ADDRESS = "127.0.0.1"
_WILDCARD_ADDRESS = "0.0.0.0"  # where listeners.listener binds an outbound whose address is a DNS name


def outbound_listener(
    b: Builder,
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
        b.destinations[name] = tags[TAG_SERVICE]
        chain = listeners.filter_chain([listeners.http_connection_manager(name, name, edge=False)])
    else:
        chain = listeners.filter_chain([listeners.tcp_proxy(name, [(b.resolve(dest), 1)])])
    b.add(LISTENER, name, listeners.listener(name, address, port, [chain], gateway=False))


def explicit_outbounds(b: Builder, proxy: Resource) -> set[tuple[str, int]]:
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
        outbound_listener(b, name, address, outbound.port, tags, http=http)
        taken.add((address if clusters.is_ip(address) else _WILDCARD_ADDRESS, outbound.port))
    return taken


def cross_mesh_outbound(b: Builder, proxy: Resource, vip: VipOutbound, cross: CrossMesh | None) -> None:
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
    outbound_listener(b, name, vip.vip, vip.port, {TAG_SERVICE: vip.service}, http=True, resolve=lambda _: cluster)


def vip_outbounds(
    b: Builder,
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
            cross_mesh_outbound(b, proxy, vip, cross)
            continue
        tags = {TAG_SERVICE: vip.service}
        # A cross-mesh listener is HTTP (gateway.md, "Cross-mesh"); a service speaks what its inbounds say.
        http = vip.kind == "gateway" or b.index.protocol(tags) in clusters.HTTP_PROTOCOLS
        outbound_listener(b, name, address, port, tags, http=http)


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
