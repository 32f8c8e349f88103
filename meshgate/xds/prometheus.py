"""The Prometheus endpoint of a proxy (Kuma 2.7's `PrometheusEndpointGenerator`): `Mesh.metrics` with an
enabled `prometheus` backend makes every Dataplane of the mesh, gateway or sidecar, serve its metrics. Pure.

    listener `kuma:metrics:prometheus`   on the Dataplane's `networking.address`, the backend's `port` (5670)
      HCM (inline routes)                 `<path>` (`/metrics`) prefix -> cluster `kuma:metrics:hijacker`,
                                          rewritten to `/?filter=<envoy.filterRegex>&usedonly`
                                          and the `aggregate` applications in `x-meshgate-aggregate`
    cluster `kuma:metrics:hijacker`       the Unix socket the proxy's meshgate-dp declared (`metricsSocketPath`),
                                          where it merges Envoy's `/stats?format=prometheus` with its own metrics
                                          and those applications' (meshgate.dp.metrics)

Why through Envoy, as Kuma: the control plane alone decides whether, where and how securely metrics are served
(a Mesh change reaches every proxy over xDS with no restart of meshgate-dp, which never reads the Mesh); Envoy
already binds the Dataplane's address, and the endpoint is a listener like the others (config dumps show it;
without the backend nothing listens at all). meshgate-dp only answers on a Unix socket in its own directory.

The backend's conf (`PrometheusMetricsBackendConfig`) is Kuma's defaulted one (`mesh_defaulter.go`: port 5670,
path `/metrics`), merged with the Dataplane's own `metrics` of type prometheus (`GetPrometheusConfig`: its
fields win, `aggregate` entries by name). TLS as Kuma's `secureMetricsWithMeshMtls`: with mesh mTLS on and
neither `skipMTLS: true` nor a `tls.mode` of `disabled`/`providedTLS`, scrapers need the mesh's client
certificate, except the Dataplane's own address (a Prometheus next to it). `providedTLS` needs certificate paths
a proxy sends in its metadata; meshgate-dp sends none, so it falls back to plaintext, as Kuma does then.

`aggregate` (an application's own metrics endpoint merged into the answer): kuma-dp reads the list once, from
its bootstrap response; meshgate-dp never reads the Mesh, so the route hands it over with every scrape, as JSON
in the request header `x-meshgate-aggregate` (`[{"name", "address", "port", "path"}]`, enabled entries only,
`address` the Dataplane's unless given, as Kuma's bootstrap generator fills it). The route sets the header
over whatever a scraper sent, or removes it when there is none: a scraper cannot choose what meshgate-dp fetches.

The endpoint is left out, with a problem, when it would take a port a listener of the proxy uses on that
address (Kuma's `UsesInterface`, which also counts the application's `servicePort`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import duration_pb2, json_format, wrappers_pb2

from meshgate.api.mesh.v1alpha1.metrics_pb2 import PrometheusMetricsBackendConfig, PrometheusTlsConfig
from meshgate.resources.model import Resource
from meshgate.resources.proto_json import parse_dict
from meshgate.xds import listeners
from meshgate.xds.clusters import is_ip, pack
from meshgate.xds.sds import MeshTls, mtls_enabled

__all__ = [
    "AGGREGATE_HEADER",
    "DEFAULT_PATH",
    "DEFAULT_PORT",
    "HIJACKER_CLUSTER",
    "PROMETHEUS_LISTENER",
    "PrometheusEndpoint",
    "aggregate_header",
    "prometheus_config",
    "prometheus_endpoint",
    "stats_path",
]

# Kuma's names (pkg/xds/envoy/names: GetPrometheusListenerName, GetMetricsHijackerClusterName).
PROMETHEUS_LISTENER = "kuma:metrics:prometheus"
HIJACKER_CLUSTER = "kuma:metrics:hijacker"
DEFAULT_PORT = 5670
AGGREGATE_HEADER = "x-meshgate-aggregate"
DEFAULT_PATH = "/metrics"
_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=5)  # Kuma's DefaultTimeout for clusters


@dataclass(frozen=True, slots=True)
class PrometheusEndpoint:
    listener: listener_pb2.Listener
    cluster: cluster_pb2.Cluster


def _typed(conf: Any) -> PrometheusMetricsBackendConfig:
    """A Struct conf read as Kuma's `ToTyped`; the validator has checked it, so unknown fields are ignored."""
    return parse_dict(json_format.MessageToDict(conf), PrometheusMetricsBackendConfig(), ignore_unknown_fields=True)


def prometheus_config(mesh: Resource | None, dataplane: Resource) -> PrometheusMetricsBackendConfig | None:
    """The proxy's Prometheus conf, or None when its Mesh enables no prometheus backend (Kuma's
    `DataplaneResource.GetPrometheusConfig` over the defaulted Mesh)."""
    if mesh is None or mesh.meta.name != dataplane.meta.mesh:
        return None
    metrics: Any = mesh.spec.metrics  # type: ignore[attr-defined]
    backend = next((b for b in metrics.backends if b.name == metrics.enabledBackend), None)
    if not metrics.enabledBackend or backend is None or backend.type != "prometheus":
        return None
    cfg = _typed(backend.conf)
    if not cfg.port:
        cfg.port = DEFAULT_PORT
    if not cfg.path:
        cfg.path = DEFAULT_PATH
    spec: Any = dataplane.spec
    if spec.HasField("metrics") and spec.metrics.type == "prometheus":
        own = _typed(spec.metrics.conf)
        # Kuma's mergeLists: one aggregate entry per name, the Dataplane's winning; then proto.Merge.
        aggregate = {a.name: a for a in cfg.aggregate}
        aggregate.update((a.name, a) for a in own.aggregate)
        del cfg.aggregate[:]
        del own.aggregate[:]
        cfg.aggregate.extend(aggregate[name] for name in sorted(aggregate))
        cfg.MergeFrom(own)
    return cfg


def stats_path(cfg: PrometheusMetricsBackendConfig) -> str:
    """Kuma's `"/" + buildEnvoyMetricsFilter(cfg)`: the query meshgate-dp passes on to Envoy's `/stats`. Written
    by hand, as Kuma does: Envoy takes `usedonly` without a value, and the regex unencoded."""
    query = ""
    if cfg.HasField("envoy"):
        if cfg.envoy.filterRegex:
            query += "filter=" + cfg.envoy.filterRegex
        if query:
            query += "&"
        if cfg.envoy.usedOnly.value:
            query += "usedonly"
    return "/" + ("?" + query if query else "")


def _secured(cfg: PrometheusMetricsBackendConfig, mesh: Resource | None) -> bool:
    """Kuma's `secureMetricsWithMeshMtls` after its defaulter: no `tls` reads as `activeMTLSBackend` unless
    `skipMTLS` is true."""
    if not mtls_enabled(mesh):
        return False
    if cfg.HasField("tls"):
        return bool(cfg.tls.mode == PrometheusTlsConfig.activeMTLSBackend)
    return not cfg.skipMTLS.value


def _overlap(a: str, b: str) -> bool:
    """Kuma's `overlap`: equal addresses, or either one unspecified (0.0.0.0, ::)."""
    try:
        ia, ib = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return a == b
    return ia == ib or ia.is_unspecified or ib.is_unspecified


def _taken(dataplane: Resource, taken: Iterable[listener_pb2.Listener], address: str, port: int) -> str | None:
    """What already uses `address:port`: a listener of the proxy, or an inbound's application."""
    for other in taken:
        sock = other.address.socket_address
        bound = not other.HasField("bind_to_port") or other.bind_to_port.value
        if bound and sock.port_value == port and _overlap(sock.address, address):
            return f"listener {other.name}"
    spec: Any = dataplane.spec
    for inbound in spec.networking.inbound:
        app = inbound.serviceAddress or inbound.address or spec.networking.address
        if (inbound.servicePort or inbound.port) == port and _overlap(app, address):
            return f"the application of inbound port {inbound.port}"
    return None


def aggregate_header(cfg: PrometheusMetricsBackendConfig, address: str) -> str:
    """The `x-meshgate-aggregate` value: the enabled `aggregate` entries, each with its address (the Dataplane's
    unless given), as Kuma's bootstrap generator hands them to kuma-dp; "" for none."""
    apps = [
        {"name": a.name, "address": a.address or address, "port": a.port, "path": a.path}
        for a in cfg.aggregate
        if not a.HasField("enabled") or a.enabled.value
    ]
    return json.dumps(apps, separators=(",", ":"), sort_keys=True) if apps else ""


def _connection_manager(cfg: PrometheusMetricsBackendConfig, address: str) -> Any:
    """Kuma's `StaticEndpoints`: inline routes, one prefix route to the hijacker with the stats query."""
    route = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix=cfg.path),
        route=route_components_pb2.RouteAction(cluster=HIJACKER_CLUSTER, prefix_rewrite=stats_path(cfg)),
    )
    if apps := aggregate_header(cfg, address):
        route.request_headers_to_add.add(
            header=base_pb2.HeaderValue(key=AGGREGATE_HEADER, value=apps),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    else:
        route.request_headers_to_remove.append(AGGREGATE_HEADER)
    config = hcm_pb2.HttpConnectionManager(
        stat_prefix=listeners.stat_prefix(PROMETHEUS_LISTENER),
        codec_type=hcm_pb2.HttpConnectionManager.AUTO,
        route_config=route_pb2.RouteConfiguration(
            virtual_hosts=[route_components_pb2.VirtualHost(name=PROMETHEUS_LISTENER, domains=["*"], routes=[route])],
            validate_clusters=wrappers_pb2.BoolValue(value=False),
        ),
    )
    config.http_filters.append(
        hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))
    )
    return listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=pack(config)
    )


def _hijacker(socket: str) -> cluster_pb2.Cluster:
    """Kuma's `ProvidedEndpointCluster` on the metrics socket."""
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=address_pb2.Address(pipe=address_pb2.Pipe(path=socket)))
    )
    return cluster_pb2.Cluster(
        name=HIJACKER_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=_CONNECT_TIMEOUT,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=HIJACKER_CLUSTER,
            endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])],
        ),
    )


def prometheus_endpoint(
    dataplane: Resource,
    mesh: Resource | None,
    *,
    socket: str,
    tls: MeshTls | None,
    taken: Iterable[listener_pb2.Listener],
) -> PrometheusEndpoint | str | None:
    """The endpoint of `dataplane` (None when its Mesh enables no prometheus backend), or the problem that
    keeps it out. `socket`: the proxy's metrics socket; `tls`: its mesh mTLS (None when off or unavailable);
    `taken`: the listeners generated for it so far."""
    cfg = prometheus_config(mesh, dataplane)
    if cfg is None:
        return None
    address: str = dataplane.spec.networking.address  # type: ignore[attr-defined]
    if (user := _taken(dataplane, taken, address, cfg.port)) is not None:
        return f"{PROMETHEUS_LISTENER}: port {cfg.port} on {address} is used by {user}; metrics endpoint skipped"
    chains: list[listener_components_pb2.FilterChain] = []
    if _secured(cfg, mesh):
        if tls is None:
            return f"{PROMETHEUS_LISTENER}: mesh mTLS is on but its CA is not available (yet); metrics endpoint skipped"
        chains.append(listeners.filter_chain([_connection_manager(cfg, address)], tls=tls.downstream()))
        if is_ip(address):
            # The Dataplane scraping itself (a Prometheus beside it) needs no certificate (Kuma's
            # MatchSourceAddress): the more specific match wins over the mTLS chain.
            own = listeners.filter_chain([_connection_manager(cfg, address)])
            bits = 32 if ipaddress.ip_address(address).version == 4 else 128
            own.filter_chain_match.source_prefix_ranges.add(
                address_prefix=address, prefix_len=wrappers_pb2.UInt32Value(value=bits)
            )
            chains.insert(0, own)
    else:
        chains.append(listeners.filter_chain([_connection_manager(cfg, address)]))
    out = listeners.listener(PROMETHEUS_LISTENER, address, cfg.port, chains, gateway=False)
    out.traffic_direction = base_pb2.INBOUND  # Kuma's NewInboundListenerBuilder
    return PrometheusEndpoint(out, _hijacker(socket))
