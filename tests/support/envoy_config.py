"""Hand-built Envoy resources for ADS tests: an EDS cluster, its endpoints, an HTTP listener using RDS, routes.

Written as the JSON Envoy documents use, parsed into the real messages (so any unknown field fails here).
The ADS tests need a few resources only; the gateway generator (meshgate/xds) builds the real ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2

# Registers the typed configs the listener packs, so json_format can resolve their @type.
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from google.protobuf import json_format
from google.protobuf.message import Message

from meshgate.xds.ads import CLUSTER, ENDPOINT, LISTENER, ROUTE

__all__ = ["cluster", "endpoints", "http_listener", "route_config", "snapshot"]

_ADS = {"ads": {}, "resource_api_version": "V3"}


def cluster(name: str, *, connect_timeout: str = "1s") -> cluster_pb2.Cluster:
    return json_format.ParseDict(
        {
            "name": name,
            "type": "EDS",
            "connect_timeout": connect_timeout,
            "eds_cluster_config": {"eds_config": _ADS},
        },
        cluster_pb2.Cluster(),
    )


def endpoints(name: str, *ports: int) -> endpoint_pb2.ClusterLoadAssignment:
    lb = [{"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}} for p in ports]
    return json_format.ParseDict(
        {"cluster_name": name, "endpoints": [{"lb_endpoints": lb}]}, endpoint_pb2.ClusterLoadAssignment()
    )


def http_listener(name: str, port: int, route_name: str, *, address: str = "127.0.0.1") -> listener_pb2.Listener:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": name,
        "rds": {"route_config_name": route_name, "config_source": _ADS},
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
            }
        ],
    }
    return json_format.ParseDict(
        {
            "name": name,
            "address": {"socket_address": {"address": address, "port_value": port}},
            "filter_chains": [
                {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
            ],
        },
        listener_pb2.Listener(),
    )


def route_config(name: str, routes: Mapping[str, str | Mapping[str, int]]) -> route_pb2.RouteConfiguration:
    """`routes`: path prefix -> a cluster name, or {cluster: weight} for a weighted split."""
    out: list[dict[str, Any]] = []
    for prefix, target in routes.items():
        action: dict[str, Any] = (
            {"cluster": target}
            if isinstance(target, str)
            else {"weighted_clusters": {"clusters": [{"name": c, "weight": w} for c, w in target.items()]}}
        )
        out.append({"match": {"prefix": prefix}, "route": action})
    return json_format.ParseDict(
        {"name": name, "virtual_hosts": [{"name": "all", "domains": ["*"], "routes": out}]},
        route_pb2.RouteConfiguration(),
    )


def snapshot(
    clusters: Mapping[str, tuple[int, ...]],
    listeners: Mapping[str, listener_pb2.Listener],
    routes: Mapping[str, route_pb2.RouteConfiguration],
) -> dict[str, dict[str, Message]]:
    """clusters: name -> backend ports (an EDS cluster and its ClusterLoadAssignment each)."""
    return {
        CLUSTER: {n: cluster(n) for n in clusters},
        ENDPOINT: {n: endpoints(n, *ports) for n, ports in clusters.items()},
        LISTENER: dict(listeners),
        ROUTE: dict(routes),
    }
