"""RateLimit (Kuma 2.7 Universal, a connection policy): a local token bucket on each gateway route it matches.

Kuma's gateway (`plugins/runtime/gateway/route_table_generator.go:98-108`) gives a route whose backends a
RateLimit matches (`BestConnectionPolicyForDestination`) the per-route config of
`envoy.filters.http.local_ratelimit`, built by `xds/envoy/routes/v3/ratelimit.go:32-105`:

| RateLimit `conf.http` | Envoy `LocalRateLimit` (per route) |
|---|---|
| `requests`, `interval` | `token_bucket`: `max_tokens` = `tokens_per_fill` = requests, `fill_interval` = interval |
| `onRateLimit.status` | `status` (unset or 0: Envoy's 429) |
| `onRateLimit.headers[]` | `response_headers_to_add`: `append` true appends, otherwise overwrites |
| (always) | `stat_prefix: rate_limit`; `filter_enabled`, `filter_enforced`: 100%, runtime keys `local_rate_limit_*` |

The filter itself (`xds/envoy/listeners/v3/rate_limit_configurer.go:20-39`: a `LocalRateLimit` with only
`stat_prefix: rate_limit`, which limits nothing) sits in the gateway's HCM. Kuma puts it there on every
gateway HCM (`filter_chain_generator.go:240-242`); meshgate puts it only in front of routes a RateLimit
shaped, so config without a RateLimit keeps its bytes. A RateLimit without `conf.http` (Kuma would send an
empty bucket, which Envoy refuses) shapes nothing.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2

from meshgate.resources.duration import DurationError, parse_duration
from meshgate.xds.clusters import pack
from meshgate.xds.policies.matching import Match
from meshgate.xds.policies.module import PolicyModule, conf

__all__ = ["FILTER", "KIND", "MODULE", "STAT_PREFIX"]

KIND = "RateLimit"
FILTER = "envoy.filters.http.local_ratelimit"
STAT_PREFIX = "rate_limit"


def _all(runtime_key: str) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED),
        runtime_key=runtime_key,
    )


def local_rate_limit(http: dict[str, object]) -> local_rate_limit_pb2.LocalRateLimit | None:
    """Kuma's `NewRateLimitConfiguration` for a RateLimit's `conf.http` (Kuma's JSON), or None when unusable."""
    requests = http.get("requests")
    interval = http.get("interval")
    if not isinstance(requests, int) or requests <= 0 or not isinstance(interval, str):
        return None  # the validator refuses both; nothing to limit with
    try:
        nanoseconds = parse_duration(interval)
    except DurationError:
        return None
    out = local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=STAT_PREFIX,
        filter_enabled=_all("local_rate_limit_enabled"),
        filter_enforced=_all("local_rate_limit_enforced"),
    )
    out.token_bucket.max_tokens = requests
    out.token_bucket.tokens_per_fill.value = requests
    out.token_bucket.fill_interval.FromNanoseconds(nanoseconds)
    on_limit = http.get("onRateLimit")
    if isinstance(on_limit, dict):
        status = on_limit.get("status")
        if isinstance(status, int) and status:
            out.status.CopyFrom(http_status_pb2.HttpStatus(code=status))
        for header in on_limit.get("headers", []):
            action = (
                base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
                if header.get("append") is True
                else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
            )
            out.response_headers_to_add.append(
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=header.get("key", ""), value=header.get("value", "")),
                    append_action=action,
                )
            )
    return out


def _route(match: Match, route: route_components_pb2.Route) -> None:
    http = conf(match.winner).get("http")
    found = local_rate_limit(http) if isinstance(http, dict) else None
    if found is not None:
        route.typed_per_filter_config[FILTER].CopyFrom(pack(found))


def _http_filter() -> hcm_pb2.HttpFilter:
    config = local_rate_limit_pb2.LocalRateLimit(stat_prefix=STAT_PREFIX)
    return hcm_pb2.HttpFilter(name=FILTER, typed_config=pack(config))


MODULE = PolicyModule(KIND, route=_route, http_filter=_http_filter)
