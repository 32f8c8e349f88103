"""Retry (Kuma 2.7 Universal, a connection policy): the retry policy of gateway routes, and the TCP proxy's
connect attempts.

Kuma 2.7 (`git show v2.7.29:<path>`):

- **Routes** (`gateway/route_table_generator.go:84-89,185-196`). A route whose backends a Retry wins
  (`BestConnectionPolicyForDestination`) gets Kuma's default policy for the route's forwarding protocol, then
  `RetryConfig(retry, protocol)` *replaces* it (`envoy/routes/route_configurers.go:323-365`). The protocol is
  `route.InferForwardingProtocol` (`gateway/route/util.go:27-37`), which folds the backends' protocols into
  `GetCommonProtocol` starting from "unknown", so it is always unknown and then HTTP: on a gateway only
  `conf.http` counts, `conf.grpc` never does, and a Retry without `http` leaves the route with no retries.
- **`conf.http`** (`envoy/routes/v3/retry_configurer.go:47-96`): `retry_on` is Kuma's default
  `gateway-error,connect-failure,refused-stream`, or `retryOn` joined with commas (`all_5xx` written `5xx`,
  underscores as hyphens); `num_retries`, `per_try_timeout`, `retry_back_off` (base and max interval) as
  given; `retriableStatusCodes` sets `retriable_status_codes` and adds `retriable-status-codes` to `retry_on`;
  `retriableMethods` become `:method` exact matchers in `retriable_request_headers` (`NONE` skipped).
- **TCP listeners** (`gateway/filter_chain_generator.go:353,396-400`;
  `envoy/listeners/filter_chain_configurers.go:257-265`, `listeners/v3/max_connect_attempts_configurer.go`):
  the Retry that wins over every backend of the listener sets `max_connect_attempts` on each TCP proxy
  when it has `conf.tcp`. A 0 is left out: Envoy refuses it (its minimum is 1).
"""

from __future__ import annotations

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshgate.api.mesh.v1alpha1.http_method_pb2 import HttpMethod
from meshgate.api.mesh.v1alpha1.retry_pb2 import HttpRetryOn, Retry
from meshgate.xds.clusters import pack
from meshgate.xds.policies.matching import CACHE, Match
from meshgate.xds.policies.module import PolicyModule, typed_conf

__all__ = ["HTTP_RETRY_ON_DEFAULT", "KIND", "MODULE", "http_retry_policy"]

KIND = "Retry"
HTTP_RETRY_ON_DEFAULT = "gateway-error,connect-failure,refused-stream"
_RETRIABLE_STATUS_CODES = "retriable-status-codes"
_TCP_PROXY = "envoy.filters.network.tcp_proxy"


def _retry_on(values: list[int]) -> str:
    names = [HttpRetryOn.Name(v) for v in values]
    return ",".join("5xx" if name == "all_5xx" else name.replace("_", "-") for name in names)


def http_retry_policy(conf: Retry.Conf.Http) -> route_components_pb2.RetryPolicy:
    """Kuma's `genHttpRetryPolicy`."""
    out = route_components_pb2.RetryPolicy(retry_on=HTTP_RETRY_ON_DEFAULT)
    if conf.HasField("per_try_timeout"):
        out.per_try_timeout.CopyFrom(conf.per_try_timeout)
    if conf.HasField("num_retries"):
        out.num_retries.value = conf.num_retries.value
    if conf.HasField("back_off"):
        if conf.back_off.HasField("base_interval"):
            out.retry_back_off.base_interval.CopyFrom(conf.back_off.base_interval)
        if conf.back_off.HasField("max_interval"):
            out.retry_back_off.max_interval.CopyFrom(conf.back_off.max_interval)
    if conf.retry_on:
        out.retry_on = _retry_on(list(conf.retry_on))
    if conf.retriable_status_codes:
        out.retriable_status_codes.extend(conf.retriable_status_codes)
        if _RETRIABLE_STATUS_CODES not in out.retry_on.split(","):
            out.retry_on = f"{out.retry_on},{_RETRIABLE_STATUS_CODES}"
    for method in conf.retriable_methods:
        if method == HttpMethod.NONE:
            continue
        header = out.retriable_request_headers.add(name=":method")
        header.string_match.exact = HttpMethod.Name(method)
    return out


def _route(match: Match, route: route_components_pb2.Route) -> None:
    if not route.HasField("route"):
        return  # a redirect: nothing to retry (Kuma's configurer looks at the route action only)
    conf = typed_conf(match.winner, Retry.Conf)
    if conf.HasField("http"):
        # Built once per policy object: one policy shapes many routes (callers copy, never edit, the message).
        found = CACHE.get(match.winner, "retry:http", http_retry_policy, conf.http)
        route.route.retry_policy.CopyFrom(found)
    else:
        route.route.ClearField("retry_policy")


def _listener(match: Match, listener: listener_pb2.Listener) -> None:
    conf = typed_conf(match.winner, Retry.Conf)
    attempts = conf.tcp.max_connect_attempts
    if not conf.HasField("tcp") or attempts == 0:
        return
    for chain in listener.filter_chains:
        for network_filter in chain.filters:
            if network_filter.name != _TCP_PROXY:
                continue
            proxy = tcp_proxy_pb2.TcpProxy()
            network_filter.typed_config.Unpack(proxy)
            proxy.max_connect_attempts.value = attempts
            network_filter.typed_config.CopyFrom(pack(proxy))


MODULE = PolicyModule(KIND, route=_route, listener=_listener)
