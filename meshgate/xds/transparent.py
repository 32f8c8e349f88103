"""The transparent proxy's listeners and clusters (Kuma 2.7's `TransparentProxyGenerator`). Pure: no I/O.

For a Dataplane with `networking.transparentProxying` (its `redirectPortOutbound` non-zero; Kuma generates
nothing otherwise, `pkg/xds/generator/transparent_proxy_generator.go:35-38` at v2.7.29):

- listener `outbound:passthrough:ipv4` on `0.0.0.0:<redirectPortOutbound>`, `use_original_dst: true`
  (`envoy/listeners/v3/original_dst_forwarder_configurer.go:13-16`), where `meshgatectl install
  transparent-proxy` redirects the namespace's outbound TCP. Envoy hands each connection to the listener bound
  to its original destination (an `outbound:<address>:<port>`, e.g. a `.mesh` VIP); one with no listener
  takes this listener's only filter chain, a TCP proxy to cluster `outbound:passthrough:ipv4`;
- cluster `outbound:passthrough:ipv4`, ORIGINAL_DST with CLUSTER_PROVIDED load balancing
  (`envoy/clusters/v3/pass_through_cluster_configurer.go:11-14`) and Kuma's 5 s connect timeout
  (`timeout_configurer.go:22`, `policies/core/defaults/consts.go:9`): connections to addresses outside the
  mesh go where they were going. Only when the Mesh allows passthrough: `networking.outbound.passthrough`,
  true when unset (`api/mesh/v1alpha1/mesh_helpers.go:3-9`). With it off the listener still names the
  cluster (generator.go:83-96), so Envoy closes such connections;
- listener `inbound:passthrough:ipv4` on `0.0.0.0:<redirectPortInbound>`, `use_original_dst`, where inbound
  TCP is redirected: a connection to a sidecar inbound's `address:port` is handed to `inbound:<address>:<port>`;
  any other goes through cluster `inbound:passthrough:ipv4` (ORIGINAL_DST) to the port it was sent to, from
  source address 127.0.0.6 (generator.go:24 and 101-105), which the iptables rules let through to the
  application (`meshgate.transparentproxy.rules`).

IPv6 (`outbound:passthrough:ipv6`, `inbound:passthrough:ipv6` on `::`, source `::6`) follows Kuma's
`GetIPv6InboundRedirectPort` (generator.go:146-168): none in `IPv4` mode, none when the mode is unspecified and
`redirectPortInboundV6` is 0, else on `redirectPortInboundV6` when explicitly set (not 15010, not the IPv4
port), else on `redirectPortInbound`.

Under transparent proxying (both redirect ports set) the Dataplane's own outbound and inbound listeners are
built with `bind_to_port: false` (`envoy/listeners/listener_configurers.go:42-48`,
`v3/transparent_proxying_configurer.go:11-13`; applied in `outbound_proxy_generator.go:183` and
`inbound_proxy_generator.go:133`): they bind nothing, and are reached only through the hand-off above. This is
what makes a VIP of `--vip-cidr 240.0.0.0/4`, which no interface holds, usable: `unbind` does it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import listener_pb2
from google.protobuf import duration_pb2

from meshgate.resources.model import Resource
from meshgate.xds import listeners

__all__ = [
    "INBOUND_NAME_IPV4",
    "INBOUND_NAME_IPV6",
    "OUTBOUND_NAME_IPV4",
    "OUTBOUND_NAME_IPV6",
    "Passthrough",
    "is_transparent",
    "passthrough",
    "unbind",
]

OUTBOUND_NAME_IPV4 = "outbound:passthrough:ipv4"
OUTBOUND_NAME_IPV6 = "outbound:passthrough:ipv6"
INBOUND_NAME_IPV4 = "inbound:passthrough:ipv4"
INBOUND_NAME_IPV6 = "inbound:passthrough:ipv6"
_IN_PASSTHROUGH_IPV4 = "127.0.0.6"
_IN_PASSTHROUGH_IPV6 = "::6"
_ALL_IPV4 = "0.0.0.0"
_ALL_IPV6 = "::"
_DEFAULT_INBOUND_PORT_V6 = 15010
_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=5)
# Dataplane.Networking.TransparentProxying.IpFamilyMode
_UNSPECIFIED = 0
_IPV4_ONLY = 2

Passthrough = tuple[dict[str, listener_pb2.Listener], dict[str, cluster_pb2.Cluster]]


def _tp(proxy: Resource) -> Any | None:
    networking: Any = proxy.spec.networking  # type: ignore[attr-defined]
    return networking.transparent_proxying if networking.HasField("transparent_proxying") else None


def is_transparent(proxy: Resource) -> bool:
    """Kuma's `TransparentProxying` configurer condition: both redirect ports set (listener_configurers.go:43)."""
    tp = _tp(proxy)
    return tp is not None and tp.redirect_port_outbound != 0 and tp.redirect_port_inbound != 0


def ipv6_inbound_port(tp: Any) -> int:
    """Kuma's `GetIPv6InboundRedirectPort`: 0 means no IPv6 passthrough."""
    mode = tp.ip_family_mode
    if mode == _IPV4_ONLY:
        return 0
    v6 = int(tp.redirect_port_inbound_v6)
    if mode == _UNSPECIFIED and v6 == 0:
        return 0
    if v6 > 0 and v6 != _DEFAULT_INBOUND_PORT_V6 and v6 != tp.redirect_port_inbound:
        return v6
    return int(tp.redirect_port_inbound)


def _cluster(name: str, source: str | None) -> cluster_pb2.Cluster:
    out = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=_CONNECT_TIMEOUT,
    )
    stat_name = listeners.stat_prefix(name)
    if stat_name != name:  # Kuma's AltStatNameConfigurer
        out.alt_stat_name = stat_name
    if source is not None:
        out.upstream_bind_config.source_address.address = source
        out.upstream_bind_config.source_address.port_value = 0
    return out


def _listener(name: str, address: str, port: int, direction: int) -> listener_pb2.Listener:
    chain = listeners.filter_chain([listeners.tcp_proxy(name, [(name, 1)])])
    out = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(address=address, port_value=port)),
        filter_chains=[chain],
        traffic_direction=direction,
    )
    out.use_original_dst.value = True
    out.enable_reuse_port.value = False  # Kuma's In/OutboundListenerConfigurer: reuse_port for UDP only
    return out


def passthrough(proxy: Resource, mesh: Resource | None) -> Passthrough:
    """The capture listeners and passthrough clusters of `proxy` (none without a redirectPortOutbound)."""
    found: Passthrough = ({}, {})
    tp = _tp(proxy)
    if tp is None or tp.redirect_port_outbound == 0:
        return found
    out_port = int(tp.redirect_port_outbound)
    families = [(OUTBOUND_NAME_IPV4, INBOUND_NAME_IPV4, _ALL_IPV4, _IN_PASSTHROUGH_IPV4, int(tp.redirect_port_inbound))]
    if v6 := ipv6_inbound_port(tp):
        families.append((OUTBOUND_NAME_IPV6, INBOUND_NAME_IPV6, _ALL_IPV6, _IN_PASSTHROUGH_IPV6, v6))
    allowed = _mesh_passthrough(mesh)
    found_listeners, found_clusters = found
    for outbound, inbound, everywhere, source, in_port in families:
        found_listeners[outbound] = _listener(outbound, everywhere, out_port, base_pb2.OUTBOUND)
        if allowed:
            found_clusters[outbound] = _cluster(outbound, None)
        found_listeners[inbound] = _listener(inbound, everywhere, in_port, base_pb2.INBOUND)
        found_clusters[inbound] = _cluster(inbound, source)
    return found


def _mesh_passthrough(mesh: Resource | None) -> bool:
    """`Mesh.IsPassthrough`: `networking.outbound.passthrough`, true when unset (or no Mesh resource known)."""
    if mesh is None:
        return True
    spec: Any = mesh.spec
    outbound = spec.networking.outbound
    return not outbound.HasField("passthrough") or bool(outbound.passthrough.value)


def unbind(found: Iterable[listener_pb2.Listener]) -> None:
    """`bind_to_port: false` on each listener (Kuma's TransparentProxyingConfigurer)."""
    for listener in found:
        listener.bind_to_port.value = False
