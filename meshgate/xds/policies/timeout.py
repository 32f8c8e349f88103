"""Timeout (Kuma 2.7 Universal, a connection policy): the connect timeout of the clusters it matches.

Kuma's gateway (`gateway/cluster_generator.go` `newClusterBuilder`, `envoy/clusters/v3/timeout_configurer.go`)
sets a matched Timeout's `conf.connectTimeout` on the cluster. That is all this module does so far: it proves
the seam end to end. The rest of the Timeout row (HTTP idle timeout and max stream duration on the cluster's
HTTP options, the request timeout on routes, the listener's idle timeouts) is work for the same module.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2

from meshgate.resources.duration import DurationError, parse_duration
from meshgate.xds.policies.matching import Match
from meshgate.xds.policies.module import PolicyModule, conf

__all__ = ["KIND", "MODULE"]

KIND = "Timeout"


def _cluster(match: Match, cluster: cluster_pb2.Cluster) -> None:
    value = conf(match.winner).get("connectTimeout")
    if not isinstance(value, str):
        return  # unset: the cluster keeps Kuma's default (clusters.CONNECT_TIMEOUT_SECONDS)
    try:
        nanoseconds = parse_duration(value)
    except DurationError:
        return  # the validator refuses it; a policy written before validation existed changes nothing
    cluster.connect_timeout.FromNanoseconds(nanoseconds)


MODULE = PolicyModule(KIND, cluster=_cluster)
