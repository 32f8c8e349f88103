"""How a gate's denial (`PolicyModule.gate`, e.g. TrafficPermission) reaches Envoy: 403 for a backend's share.

A denied backend resolves to a cluster named `FORBIDDEN_PREFIX + <its cluster tags' service>`, which is never
generated. In an HTTP route that share of the `weighted_clusters` carries a per-filter RBAC config that denies
every request, and the listener's HTTP connection manager gets an RBAC filter (before the router) that, with no
rules of its own, allows everything else: the RBAC filter answers 403 before the router looks for the missing
cluster (Envoy resolves the weighted cluster first, and the chosen `ClusterWeight`'s `typed_per_filter_config`
is the most specific per-filter config). A TCP route's denied share has no cluster: the connection is closed.
Nothing here runs unless something was denied, so config without denials is unchanged byte for byte.
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.config.rbac.v3 import rbac_pb2 as rbac_config_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import any_pb2

__all__ = ["FORBIDDEN_PREFIX", "RBAC_FILTER", "forbid_shares", "forbidden_cluster", "install_rbac"]

FORBIDDEN_PREFIX = "meshgate.io/forbidden:"
RBAC_FILTER = "envoy.filters.http.rbac"
_HCM = "envoy.filters.network.http_connection_manager"


def forbidden_cluster(service: str) -> str:
    return FORBIDDEN_PREFIX + service


def _pack(message: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)  # type: ignore[arg-type]
    return out


def _deny_all() -> any_pb2.Any:
    deny = rbac_pb2.RBACPerRoute()
    deny.rbac.rules.action = rbac_config_pb2.RBAC.DENY
    policy = deny.rbac.rules.policies["meshgate-forbidden"]
    policy.permissions.add(any=True)
    policy.principals.add(any=True)
    return _pack(deny)


_DENY_ALL = _deny_all()


def forbid_shares(config: route_pb2.RouteConfiguration) -> bool:
    """Marks every forbidden share of `config`'s routes to be denied; whether there was one."""
    found = False
    for vh in config.virtual_hosts:
        for route in vh.routes:
            if not route.HasField("route") or not route.route.HasField("weighted_clusters"):
                continue
            for share in route.route.weighted_clusters.clusters:
                if share.name.startswith(FORBIDDEN_PREFIX):
                    share.typed_per_filter_config[RBAC_FILTER].CopyFrom(_DENY_ALL)
                    found = True
    return found


def install_rbac(listener: listener_pb2.Listener) -> None:
    """Puts an RBAC filter with no rules (allow) before the router of each HTTP connection manager."""
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            if network_filter.name != _HCM:
                continue
            hcm = hcm_pb2.HttpConnectionManager()
            network_filter.typed_config.Unpack(hcm)
            if any(f.name == RBAC_FILTER for f in hcm.http_filters):
                continue
            rbac = hcm_pb2.HttpFilter(name=RBAC_FILTER, typed_config=_pack(rbac_pb2.RBAC()))
            hcm.http_filters.insert(len(hcm.http_filters) - 1, rbac)  # before the router, which is last
            network_filter.typed_config.CopyFrom(_pack(hcm))
