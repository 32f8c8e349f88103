"""Timeout (Kuma 2.7 Universal, a connection policy): where Kuma's builtin gateway puts each of its timeouts.

Kuma 2.7 (`git show v2.7.29:<path>`), field by field:

- `connectTimeout` -> cluster `connect_timeout`, 5 s when unset (`gateway/cluster_generator.go:195-196`
  `clusters.Timeout`; `envoy/clusters/v3/timeout_configurer.go:22`).
- `http.idleTimeout` -> the cluster's HttpProtocolOptions `common_http_protocol_options.idle_timeout`, on
  http, http2 and grpc clusters only; **0 s (no idle timeout) when unset**, as Kuma writes it
  (`timeout_configurer.go:23-35,38-40`).
- `http.maxStreamDuration`, else on a grpc cluster `grpc.maxStreamDuration` -> the same options'
  `max_stream_duration`, when not 0 (`timeout_configurer.go:42-54`).
- `http.requestTimeout` -> route `timeout`, when not 0, on every route whose backends the policy wins
  (`gateway/route_table_generator.go:91-95`; `envoy/routes/route_configurers.go:367-379`).
- `http.streamIdleTimeout`, `grpc.streamIdleTimeout`, `tcp.idleTimeout` -> nothing. Kuma's gateway listeners
  keep fixed edge defaults that no Timeout changes: stream idle 5 s, connection idle 5 min, request headers
  500 ms, and each route's 5 s idle timeout (`gateway/filter_chain_generator.go:217-225`,
  `route_table_generator.go:73`; `listeners.py`, `virtual_hosts.py` here). The TCP proxy keeps Envoy's 1 h.

The cluster winner is Kuma's `matchConnectionPolicy` per backend; the route winner its
`BestConnectionPolicyForDestination` over the route's backends (`matching.py`). A Timeout that matches an
HTTP/1.1 cluster gives it explicit HTTP/1.1 protocol options, as Kuma's `clusters.Http()` does for every HTTP
cluster (meshgate's unshaped clusters keep their bytes).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf.duration_pb2 import Duration

from meshgate.api.mesh.v1alpha1.timeout_pb2 import Timeout
from meshgate.xds import clusters
from meshgate.xds.policies.matching import Match
from meshgate.xds.policies.module import PolicyModule, typed_conf

__all__ = ["KIND", "MODULE"]

KIND = "Timeout"


def _max_stream_duration(conf: Timeout.Conf, protocol: str) -> Duration | None:
    http: Duration = conf.http.max_stream_duration
    if http.ToNanoseconds():
        return http
    # Kuma's backwards compatibility: the grpc section counts on a grpc cluster only.
    grpc: Duration = conf.grpc.max_stream_duration
    if protocol == "grpc" and grpc.ToNanoseconds():
        return grpc
    return None


def _cluster(match: Match, cluster: cluster_pb2.Cluster, protocol: str) -> None:
    conf = typed_conf(match.winner, Timeout.Conf)
    if conf.HasField("connect_timeout"):
        cluster.connect_timeout.CopyFrom(conf.connect_timeout)
    else:
        cluster.connect_timeout.FromSeconds(clusters.CONNECT_TIMEOUT_SECONDS)
    if protocol not in clusters.HTTP_PROTOCOLS:
        return

    def update(options: http_protocol_options_pb2.HttpProtocolOptions) -> None:
        common = options.common_http_protocol_options
        common.idle_timeout.CopyFrom(conf.http.idle_timeout)  # set even when unset: Kuma writes 0s
        found = _max_stream_duration(conf, protocol)
        if found is not None:
            common.max_stream_duration.CopyFrom(found)

    clusters.update_http_options(cluster, update)


def _route(match: Match, route: route_components_pb2.Route) -> None:
    conf = typed_conf(match.winner, Timeout.Conf)
    if route.HasField("route") and conf.http.request_timeout.ToNanoseconds():
        route.route.timeout.CopyFrom(conf.http.request_timeout)


MODULE = PolicyModule(KIND, cluster=_cluster, route=_route)
