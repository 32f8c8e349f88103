"""FaultInjection (Kuma 2.7 Universal, a connection policy): delays, aborts and response bandwidth limits on
the gateway routes it matches, each for a percentage of requests.

Kuma 2.7 binds FaultInjection as a gateway connection policy (`plugins/runtime/gateway/generator.go:40-47`)
but leaves applying it as a TODO (`route_table_generator.go:56`); the gateway support table asks for it, so
meshgate applies it the way Kuma's sidecar does (`xds/envoy/listeners/v3/fault_injection_configurer.go:21-126`),
with the policy chosen per route as for RateLimit (`BestConnectionPolicyForDestination`):

| FaultInjection `conf` | Envoy `HTTPFault` |
|---|---|
| `delay {percentage, value}` | `delay`: `fixed_delay` = value, `percentage` |
| `abort {percentage, httpStatus}` | `abort`: `http_status`, `percentage` |
| `responseBandwidth {percentage, limit}` | `response_rate_limit`: `fixed_limit.limit_kbps`, `percentage` |

A limit in `Mbps` is 1000 kbps, in `Gbps` a million (`ConvertBandwidthToKbps`). Percentages as Kuma's
`ConvertPercentage` (`listeners/v3/util.go:84-110`, `routes.fractional_percent`). The
sidecar puts one `envoy.filters.http.fault` filter per policy in the inbound HCM, matching the caller by its
`x-kuma-tags` header; a gateway's callers are outside the mesh and carry none (the source selector already
matched the listener), so the config goes on the route (`typed_per_filter_config`, which Envoy's fault
filter reads in place of its own) and the HCM in front gets one empty fault filter, which injects nothing.
"""

from __future__ import annotations

import re
from typing import Any

from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2

from meshgate.resources.duration import DurationError, parse_duration
from meshgate.xds.clusters import pack
from meshgate.xds.policies.matching import Match
from meshgate.xds.policies.module import PolicyModule, conf
from meshgate.xds.routes import fractional_percent

__all__ = ["FILTER", "KIND", "MODULE", "http_fault", "kbps"]

KIND = "FaultInjection"
FILTER = "envoy.filters.http.fault"
# Kuma's validators.BandwidthRegex, and the factor of each unit to kbps (ConvertBandwidthToKbps).
_BANDWIDTH = re.compile(r"^(\d+)(kbps|Mbps|Gbps)$")
_KBPS = {"kbps": 1, "Mbps": 1000, "Gbps": 1_000_000}


def kbps(limit: str) -> int | None:
    found = _BANDWIDTH.match(limit)
    return int(found.group(1)) * _KBPS[found.group(2)] if found else None


def _percent(item: dict[str, Any]) -> float:
    value = item.get("percentage", 0)
    return float(value) if isinstance(value, int | float) else 0.0


def http_fault(fault: dict[str, Any]) -> fault_pb2.HTTPFault | None:
    """The `HTTPFault` of a FaultInjection's `conf` (Kuma's JSON), or None when it injects nothing."""
    out = fault_pb2.HTTPFault()
    delay = fault.get("delay")
    if isinstance(delay, dict) and isinstance(delay.get("value"), str):
        try:
            out.delay.fixed_delay.FromNanoseconds(parse_duration(delay["value"]))
            out.delay.percentage.CopyFrom(fractional_percent(_percent(delay)))
        except DurationError:
            out.ClearField("delay")
    abort = fault.get("abort")
    if isinstance(abort, dict) and isinstance(abort.get("httpStatus"), int):
        out.abort.http_status = abort["httpStatus"]
        out.abort.percentage.CopyFrom(fractional_percent(_percent(abort)))
    bandwidth = fault.get("responseBandwidth")
    if isinstance(bandwidth, dict) and (limit := kbps(str(bandwidth.get("limit", "")))) is not None:
        out.response_rate_limit.fixed_limit.limit_kbps = limit
        out.response_rate_limit.percentage.CopyFrom(fractional_percent(_percent(bandwidth)))
    return out if out.ListFields() else None


def _route(match: Match, route: route_components_pb2.Route) -> None:
    found = http_fault(dict(conf(match.winner)))
    if found is not None:
        route.typed_per_filter_config[FILTER].CopyFrom(pack(found))


def _http_filter() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=FILTER, typed_config=pack(fault_pb2.HTTPFault()))


MODULE = PolicyModule(KIND, route=_route, http_filter=_http_filter)
