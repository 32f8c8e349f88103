"""meshgate-dp: runs Envoy against the zone's delta ADS server, which authenticates it with its data plane token
and registers its Dataplane (sent in Envoy's node metadata) for as long as the stream lives; and, beside Envoy,
the access log streamer that sends TrafficLog lines for `tcp` logging backends to their collectors, and the metrics
hijacker that answers the proxy's Prometheus endpoint (Envoy's stats merged with its own and the applications')."""

from __future__ import annotations

from meshgate.dp.access_logs import AccessLogStreamer
from meshgate.dp.app import DpConfig, run_dp
from meshgate.dp.bootstrap import ControlPlaneAddress, parse_cp_address, render_bootstrap
from meshgate.dp.envoy import EnvoyNotFoundError, envoy_argv, find_envoy, unique_base_id
from meshgate.dp.metrics import MetricsHijacker, dp_registry
from meshgate.dp.registration import TokenSourceError, node_metadata, read_token

__all__ = [
    "AccessLogStreamer",
    "ControlPlaneAddress",
    "DpConfig",
    "EnvoyNotFoundError",
    "MetricsHijacker",
    "TokenSourceError",
    "dp_registry",
    "envoy_argv",
    "find_envoy",
    "node_metadata",
    "parse_cp_address",
    "read_token",
    "render_bootstrap",
    "run_dp",
    "unique_base_id",
]
