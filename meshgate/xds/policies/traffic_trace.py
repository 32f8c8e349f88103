"""TrafficTrace (Kuma 2.7 Universal, a dataplane policy): spans of every HTTP connection manager of the proxies it
selects, sent to one of the Mesh's `tracing` backends.

Kuma selects one TrafficTrace per proxy (`xds/topology/traffictrace.go`, `SelectDataplanePolicy`: a selector
matches the gateway's tags, else any inbound's; `matching.best_for_dataplane`). Its backend is the one
`conf.backend` names, or the Mesh's `tracing.defaultBackend` when it names none (`xds/context/context.go:83-97`,
`mesh_helpers.go:60-69`); no TrafficTrace, or no such backend: no tracing at all. A Mesh's `tracing` alone
changes nothing, as in Kuma. OpenTelemetry is MeshTrace's only (`plugins/policies/meshtrace`): the legacy Mesh
backends are `zipkin` and `datadog` (`known_backends.go`), and so are these.

On each HCM (`xds/envoy/listeners/v3/tracing_configurer.go`), its `tracing`:

- `spawn_upstream_span`: true on a builtin gateway (`filter_chain_generator.go:245`), false on a sidecar;
- `overall_sampling`: the backend's `sampling`, when set (Envoy's default, 100%, otherwise);
- a `zipkin` backend: provider `envoy.tracers.zipkin`, `collector_cluster` `tracing:<backend>`,
  `collector_endpoint` the URL's path, `collector_hostname` its host (with the port), `trace_id_128bit` from
  `traceId128bit`, `shared_span_context` from `sharedSpanContext`, `collector_endpoint_version` `HTTP_PROTO`
  for `apiVersion: httpProto`, else `HTTP_JSON`;
- a `datadog` backend: provider `envoy.tracers.datadog`, `collector_cluster` `tracing:<backend>`,
  `service_name` the proxy's service; with `splitService`, `<service>_INBOUND` on an inbound and
  `<service>_OUTBOUND_<destination>` on an outbound.

Which HCMs (`DataplaneSite.connection_managers`): a builtin gateway's listeners (direction UNSPECIFIED, the
gateway's service), a sidecar's or delegated gateway's HTTP inbounds (INBOUND, the inbound's service) and HTTP
outbounds (OUTBOUND, the proxy's service, the outbound's as destination). Span names and tags are Envoy's:
Kuma sets no decorator and no custom tags.

The cluster `tracing:<backend>` (`xds/generator/tracing_proxy_generator.go`): Kuma's `ProvidedEndpointCluster`
to the URL's host and port (zipkin) or `address`/`port` (datadog), STATIC for an IP, else STRICT_DNS
(`V4_ONLY` unless the proxy's address is IPv6), connect timeout 5s; an `https` zipkin URL adds Kuma's TLS
outside the mesh: SNI the host when it is a DNS name, renegotiation allowed, the server not verified.
"""

from __future__ import annotations

from typing import TypeVar
from urllib.parse import urlsplit

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.trace.v3 import datadog_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import duration_pb2, json_format, struct_pb2
from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.mesh_pb2 import (
    DatadogTracingBackendConfig,
    TracingBackend,
    ZipkinTracingBackendConfig,
)
from meshgate.api.mesh.v1alpha1.traffic_trace_pb2 import TrafficTrace
from meshgate.resources.model import Resource
from meshgate.resources.proto_json import parse_dict
from meshgate.xds.clusters import is_ip, pack
from meshgate.xds.policies.matching import Match
from meshgate.xds.policies.module import (
    ConnectionManager,
    DataplaneSite,
    Direction,
    Matcher,
    PolicyModule,
    Resources,
    typed_conf,
)
from meshgate.xds.snapshot import CLUSTER, LISTENER

__all__ = ["KIND", "MODULE", "backend", "cluster", "cluster_name", "tracing"]

KIND = "TrafficTrace"
ZIPKIN = "zipkin"
DATADOG = "datadog"
_HCM = "envoy.filters.network.http_connection_manager"
_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=5)  # Kuma's `DefaultTimeout()`: policies' DefaultConnectTimeout
_ZIPKIN_PATH_V2 = "/api/v2/spans"


def cluster_name(backend_name: str) -> str:
    """Kuma's `names.GetTracingClusterName`."""
    return f"tracing:{backend_name}"


def backend(mesh: Resource | None, name: str) -> TracingBackend | None:
    """The Mesh's tracing backend `name`, or its default one when `name` is empty (Kuma's
    `MeshResource.GetTracingBackend`; its map keeps the last of a name)."""
    if mesh is None:
        return None
    tracing = mesh.spec.tracing  # type: ignore[attr-defined]
    wanted = name or tracing.defaultBackend
    found = [b for b in tracing.backends if b.name == wanted]
    return found[-1] if found else None


_Conf = TypeVar("_Conf", ZipkinTracingBackendConfig, DatadogTracingBackendConfig)


def _typed(found: TracingBackend, conf_type: type[_Conf]) -> _Conf:
    """The backend's `conf` Struct as its typed config (Kuma's `proto.ToTyped`); the Mesh validator has
    checked it parses."""
    doc = json_format.MessageToDict(found.conf) if found.HasField("conf") else {}
    out: _Conf = parse_dict(doc, conf_type(), ignore_unknown_fields=True)
    return out


def _zipkin(found: TracingBackend) -> zipkin_pb2.ZipkinConfig:
    conf = _typed(found, ZipkinTracingBackendConfig)
    url = urlsplit(conf.url)
    out = zipkin_pb2.ZipkinConfig(
        collector_cluster=cluster_name(found.name),
        collector_endpoint=url.path,
        trace_id_128bit=conf.traceId128bit,
        collector_hostname=url.netloc,
    )
    if conf.HasField("sharedSpanContext"):
        out.shared_span_context.CopyFrom(conf.sharedSpanContext)
    # Kuma's `apiVersion`: only `httpProto` differs from the JSON v2 default (`httpJsonV1` included).
    if conf.apiVersion == "httpProto":
        out.collector_endpoint_version = zipkin_pb2.ZipkinConfig.HTTP_PROTO
    else:
        out.collector_endpoint_version = zipkin_pb2.ZipkinConfig.HTTP_JSON
    return out


def _datadog_service(conf: DatadogTracingBackendConfig, cm: ConnectionManager) -> str:
    """Kuma's `createDatadogServiceName`."""
    if not conf.splitService:
        return cm.service
    if cm.direction == Direction.INBOUND:
        return f"{cm.service}_{cm.direction}"
    if cm.direction == Direction.OUTBOUND:
        return f"{cm.service}_{cm.direction}_{cm.destination}"
    return cm.service


def tracing(
    found: TracingBackend, cm: ConnectionManager, *, spawn_upstream_span: bool
) -> hcm_pb2.HttpConnectionManager.Tracing:
    """Kuma's `TracingConfigurer` for one HCM; a backend of an unknown type traces with no provider, as there."""
    out = hcm_pb2.HttpConnectionManager.Tracing()
    out.spawn_upstream_span.value = spawn_upstream_span
    if found.HasField("sampling"):
        out.overall_sampling.value = found.sampling.value
    provider: Message | None = None
    if found.type == ZIPKIN:
        provider = _zipkin(found)
        out.provider.name = "envoy.tracers.zipkin"
    elif found.type == DATADOG:
        conf = _typed(found, DatadogTracingBackendConfig)
        provider = datadog_pb2.DatadogConfig(
            collector_cluster=cluster_name(found.name), service_name=_datadog_service(conf, cm)
        )
        out.provider.name = "envoy.tracers.datadog"
    if provider is not None:
        out.provider.typed_config.CopyFrom(pack(provider))
    return out


def _endpoint(found: TracingBackend) -> tuple[str, int, bool] | None:
    """(host, port, TLS) of the collector, or None when the backend names none (the validator refuses that)."""
    if found.type == ZIPKIN:
        conf = _typed(found, ZipkinTracingBackendConfig)
        url = urlsplit(conf.url)
        try:
            port = url.port
        except ValueError:
            return None
        if not url.hostname or port is None:
            return None
        return url.hostname, port, url.scheme == "https"
    if found.type == DATADOG:
        conf = _typed(found, DatadogTracingBackendConfig)
        if not conf.address or not 1 <= conf.port <= 0xFFFF:
            return None
        return conf.address, conf.port, False
    return None


def cluster(found: TracingBackend, *, ipv6: bool = False) -> cluster_pb2.Cluster | None:
    """Kuma's tracing cluster for `found`, or None when it has no usable collector address."""
    endpoint = _endpoint(found)
    if endpoint is None:
        return None
    host, port, tls = endpoint
    name = cluster_name(found.name)
    out = cluster_pb2.Cluster(name=name, connect_timeout=_CONNECT_TIMEOUT)
    if is_ip(host):
        out.type = cluster_pb2.Cluster.STATIC
    else:
        out.type = cluster_pb2.Cluster.STRICT_DNS
        out.dns_lookup_family = cluster_pb2.Cluster.AUTO if ipv6 else cluster_pb2.Cluster.V4_ONLY
    out.load_assignment.cluster_name = name
    lb = out.load_assignment.endpoints.add().lb_endpoints.add()
    lb.endpoint.address.socket_address.address = host
    lb.endpoint.address.socket_address.port_value = port
    if tls:
        context = tls_pb2.UpstreamTlsContext(sni="" if is_ip(host) else host, allow_renegotiation=True)
        socket = base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(context))
        out.transport_socket_matches.append(
            cluster_pb2.Cluster.TransportSocketMatch(
                name=host,
                match=struct_pb2.Struct(),
                transport_socket=socket,
            )
        )
    return out


def _trace(match: Match, site: DataplaneSite, resources: Resources) -> list[str]:
    conf = typed_conf(match.winner, TrafficTrace.Conf)
    found = backend(site.mesh, conf.backend)
    if found is None:
        # Kuma logs "Tracing backend is not found. Ignoring." and traces nothing.
        wanted = conf.backend or "(the mesh's defaultBackend)"
        return [f"TrafficTrace {match.winner.meta.name}: tracing backend {wanted} not found; tracing off"]
    ipv6 = ":" in str(site.proxy.spec.networking.address)  # type: ignore[attr-defined]
    out = cluster(found, ipv6=ipv6)
    if out is None:
        return [f"TrafficTrace {match.winner.meta.name}: backend {found.name} has no collector address; tracing off"]
    listeners = resources.get(LISTENER, {})
    for cm in site.connection_managers:
        listener = listeners.get(cm.listener)
        if listener is None:
            continue
        config = tracing(found, cm, spawn_upstream_span=site.gateway)
        for chain in listener.filter_chains:  # type: ignore[attr-defined]
            for network_filter in chain.filters:
                if network_filter.name != _HCM:
                    continue
                hcm = hcm_pb2.HttpConnectionManager()
                network_filter.typed_config.Unpack(hcm)
                hcm.tracing.CopyFrom(config)
                network_filter.typed_config.CopyFrom(pack(hcm))
    resources.setdefault(CLUSTER, {})[out.name] = out
    return []


MODULE = PolicyModule(KIND, dataplane=_trace, matcher=Matcher.SELECTORS)
