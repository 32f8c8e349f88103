"""The policy cases of `gateway_latency.py` (`--policies N`): the policies, and what each makes of the config.

(b') N source/destination policies over the build bench's routes, a mix of Timeout, Retry, CircuitBreaker and
HealthCheck: a wildcard Timeout, Retry and CircuitBreaker (every backend's fallback, as a mesh's default
policies are), and N - 3 policies whose destination names one `svc-<i>`, each service named by at most one,
spread evenly over the routes, the kinds in turn. Every policy is generated together with the Envoy values it
stands for (`*Shape`): the baseline builds its messages from those values, with the winners and the cluster
names worked out beforehand, outside the timing, so it constructs what `generate` constructs and decides
nothing. The model of who wins (a specific destination beats the wildcard, for a cluster and for a route whose
backends are one service) is checked by the bench: the two builds must be equal.

(a') the change that reaches traffic: a FaultInjection aborting every request of a route with 503, switched
between 100 % and 0 % (the fault filter stays in the HTTP connection manager, so only the route changes, as
in part (a)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, health_check_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.v3 import http_pb2, percent_pb2, range_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from meshgate.testing import factory
from meshgate.xds.policies.shaper import POLICY_TAG_PREFIX

__all__ = [
    "FAULT",
    "ClusterShape",
    "PolicySet",
    "RouteShape",
    "abort_doc",
    "fault_route",
    "http_dataplane",
    "route_action",
    "scale_policies",
    "shaped_cluster",
]

TIMEOUT, RETRY, CIRCUIT_BREAKER, HEALTH_CHECK = "Timeout", "Retry", "CircuitBreaker", "HealthCheck"
SPECIFIC_KINDS = (TIMEOUT, RETRY, CIRCUIT_BREAKER, HEALTH_CHECK)
WILDCARD_KINDS = (TIMEOUT, RETRY, CIRCUIT_BREAKER)
CLUSTER_KINDS = (CIRCUIT_BREAKER, HEALTH_CHECK, TIMEOUT)  # the kinds with a cluster hook
_ENFORCED = 100


@dataclass(frozen=True, slots=True)
class TimeoutShape:
    connect_s: int
    request_s: int


@dataclass(frozen=True, slots=True)
class RetryShape:
    retry_on: str
    retries: int
    per_try_s: int
    base_ms: int
    max_ms: int
    codes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BreakerShape:
    max_connections: int
    max_pending: int
    max_requests: int
    max_retries: int
    interval_s: int
    ejection_s: int
    max_ejection: int
    consecutive_5xx: int
    consecutive_gateway: int
    consecutive_local: int
    sr_volume: int
    sr_hosts: int
    sr_factor_milli: int
    fp_volume: int
    fp_hosts: int
    fp_threshold: int


@dataclass(frozen=True, slots=True)
class HealthShape:
    interval_s: int
    timeout_s: int
    unhealthy: int
    healthy: int
    panic: float
    path: str
    status: int


Shape = TimeoutShape | RetryShape | BreakerShape | HealthShape


@dataclass(frozen=True, slots=True)
class RouteShape:
    timeout: TimeoutShape | None
    retry: RetryShape | None


@dataclass(frozen=True, slots=True)
class ClusterShape:
    timeout: TimeoutShape | None
    breaker: BreakerShape | None
    health: HealthShape | None


# --- the policies, and the values each stands for -------------------------------------------------------------


def _timeout(name: str, dest: str, connect_s: int, request_s: int) -> tuple[dict[str, Any], Shape]:
    conf = {"connectTimeout": f"{connect_s}s", "http": {"requestTimeout": f"{request_s}s", "idleTimeout": "3600s"}}
    return factory.timeout(name, destination=dest, conf=conf), TimeoutShape(connect_s, request_s)


def _retry(name: str, dest: str, retries: int, per_try_s: int) -> tuple[dict[str, Any], Shape]:
    conf = {
        "http": {
            "numRetries": retries,
            "perTryTimeout": f"{per_try_s}s",
            "backOff": {"baseInterval": "0.025s", "maxInterval": "0.250s"},
            "retriableStatusCodes": [503],
        },
        "tcp": {"maxConnectAttempts": 5},
    }
    retry_on = "gateway-error,connect-failure,refused-stream,retriable-status-codes"
    return factory.retry(name, destination=dest, conf=conf), RetryShape(retry_on, retries, per_try_s, 25, 250, (503,))


def _breaker(name: str, dest: str, n: int) -> tuple[dict[str, Any], Shape]:
    shape = BreakerShape(
        max_connections=100 + n,
        max_pending=50 + n % 7,
        max_requests=200,
        max_retries=3,
        interval_s=5 + n % 3,
        ejection_s=30,
        max_ejection=20,
        consecutive_5xx=5 + n % 4,
        consecutive_gateway=3,
        consecutive_local=7,
        sr_volume=10,
        sr_hosts=5,
        sr_factor_milli=1500,
        fp_volume=10,
        fp_hosts=5,
        fp_threshold=85,
    )
    conf = {
        "thresholds": {
            "maxConnections": shape.max_connections,
            "maxPendingRequests": shape.max_pending,
            "maxRequests": shape.max_requests,
            "maxRetries": shape.max_retries,
        },
        "interval": f"{shape.interval_s}s",
        "baseEjectionTime": f"{shape.ejection_s}s",
        "maxEjectionPercent": shape.max_ejection,
        "splitExternalAndLocalErrors": False,
        "detectors": {
            "totalErrors": {"consecutive": shape.consecutive_5xx},
            "gatewayErrors": {"consecutive": shape.consecutive_gateway},
            "localErrors": {"consecutive": shape.consecutive_local},
            "standardDeviation": {"requestVolume": 10, "minimumHosts": 5, "factor": 1.5},
            "failure": {"requestVolume": 10, "minimumHosts": 5, "threshold": 85},
        },
    }
    return factory.circuit_breaker(name, destination=dest, conf=conf), shape


def _health(name: str, dest: str, n: int) -> tuple[dict[str, Any], Shape]:
    shape = HealthShape(5 + n % 5, 2, 3, 1, 50.0, "/health", 200)
    conf = {
        "interval": f"{shape.interval_s}s",
        "timeout": f"{shape.timeout_s}s",
        "unhealthyThreshold": shape.unhealthy,
        "healthyThreshold": shape.healthy,
        "healthyPanicThreshold": shape.panic,
        "http": {"path": shape.path, "expectedStatuses": [shape.status]},
    }
    return factory.health_check(name, destination=dest, conf=conf), shape


def _policy(kind: str, name: str, dest: str, n: int) -> tuple[dict[str, Any], Shape]:
    if kind == TIMEOUT:
        return _timeout(name, dest, 1 + n % 4, 10 + n % 5)
    if kind == RETRY:
        return _retry(name, dest, 1 + n % 5, 2)
    if kind == CIRCUIT_BREAKER:
        return _breaker(name, dest, n)
    return _health(name, dest, n)


@dataclass(frozen=True, slots=True)
class PolicySet:
    docs: list[dict[str, Any]]
    # kind -> service index -> (policy name, shape); and kind -> the wildcard's (name, shape)
    specific: dict[str, dict[int, tuple[str, Shape]]]
    wildcard: dict[str, tuple[str, Shape]]

    def winner(self, kind: str, service: int) -> tuple[str, Shape] | None:
        """The policy of `kind` that shapes svc-<service>'s clusters and routes: the one naming it, else the
        wildcard (a named destination ranks above `*`; each service is named by one policy at most)."""
        return self.specific[kind].get(service) or self.wildcard.get(kind)

    def by_kind(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for doc in self.docs:
            out[doc["type"]] = out.get(doc["type"], 0) + 1
        return out

    def cluster_identity(self, service: int) -> dict[str, str]:
        """The pseudo-tags `generate` hashes into a shaped cluster's name (`Shaper.identity`)."""
        out = {}
        for kind in CLUSTER_KINDS:
            found = self.winner(kind, service)
            if found is not None:
                out[POLICY_TAG_PREFIX + kind] = found[0]
        return out

    def cluster_shape(self, service: int) -> ClusterShape | None:
        t, b, h = (self.winner(kind, service) for kind in (TIMEOUT, CIRCUIT_BREAKER, HEALTH_CHECK))
        if t is None and b is None and h is None:
            return None
        return ClusterShape(
            t[1] if t else None,  # type: ignore[arg-type]
            b[1] if b else None,  # type: ignore[arg-type]
            h[1] if h else None,  # type: ignore[arg-type]
        )

    def route_shape(self, service: int) -> RouteShape | None:
        t, r = self.winner(TIMEOUT, service), self.winner(RETRY, service)
        if t is None and r is None:
            return None
        return RouteShape(t[1] if t else None, r[1] if r else None)  # type: ignore[arg-type]


def scale_policies(n: int, routes: int) -> PolicySet:
    """`n` policies over services svc-0 .. svc-<routes - 1> (n <= routes): three wildcards when n >= 4."""
    docs: list[dict[str, Any]] = []
    wildcard: dict[str, tuple[str, Shape]] = {}
    if n >= 4:
        for kind in WILDCARD_KINDS:
            name = f"{kind.lower()}-all"
            doc, shape = _policy(kind, name, "*", 0)
            docs.append(doc)
            wildcard[kind] = (name, shape)
    specific: dict[str, dict[int, tuple[str, Shape]]] = {kind: {} for kind in SPECIFIC_KINDS}
    count = n - len(docs)
    for j in range(count):
        kind, service = SPECIFIC_KINDS[j % len(SPECIFIC_KINDS)], j * routes // count
        name = f"{kind.lower()}-{j:05d}"
        doc, shape = _policy(kind, name, f"svc-{service}", j)
        docs.append(doc)
        specific[kind][service] = (name, shape)
    return PolicySet(docs, specific, wildcard)


# --- the baseline's construction of the shaped messages (timed) ------------------------------------------------


def _seconds(seconds: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=seconds)


def _millis(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(nanos=ms * 1_000_000)


def _u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def _retry_policy(r: RetryShape) -> route_components_pb2.RetryPolicy:
    return route_components_pb2.RetryPolicy(
        retry_on=r.retry_on,
        num_retries=_u32(r.retries),
        per_try_timeout=_seconds(r.per_try_s),
        retry_back_off=route_components_pb2.RetryPolicy.RetryBackOff(
            base_interval=_millis(r.base_ms), max_interval=_millis(r.max_ms)
        ),
        retriable_status_codes=r.codes,
    )


def route_action(weighted: route_components_pb2.WeightedCluster, shape: RouteShape) -> route_components_pb2.RouteAction:
    """The action of a route that policies shape: part (b)'s, plus the request timeout and the retry policy."""
    return route_components_pb2.RouteAction(
        weighted_clusters=weighted,
        cluster_not_found_response_code=route_components_pb2.RouteAction.INTERNAL_SERVER_ERROR,
        idle_timeout=_seconds(5),
        timeout=_seconds(shape.timeout.request_s) if shape.timeout else None,
        retry_policy=_retry_policy(shape.retry) if shape.retry else None,
    )


def _circuit_breakers(b: BreakerShape) -> circuit_breaker_pb2.CircuitBreakers:
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                priority=base_pb2.DEFAULT,
                max_connections=_u32(b.max_connections),
                max_pending_requests=_u32(b.max_pending),
                max_requests=_u32(b.max_requests),
                max_retries=_u32(b.max_retries),
            )
        ]
    )


def _outlier_detection(b: BreakerShape) -> outlier_detection_pb2.OutlierDetection:
    return outlier_detection_pb2.OutlierDetection(
        split_external_local_origin_errors=False,
        interval=_seconds(b.interval_s),
        base_ejection_time=_seconds(b.ejection_s),
        max_ejection_percent=_u32(b.max_ejection),
        consecutive_5xx=_u32(b.consecutive_5xx),
        enforcing_consecutive_5xx=_u32(_ENFORCED),
        consecutive_gateway_failure=_u32(b.consecutive_gateway),
        enforcing_consecutive_gateway_failure=_u32(_ENFORCED),
        consecutive_local_origin_failure=_u32(b.consecutive_local),
        enforcing_consecutive_local_origin_failure=_u32(_ENFORCED),
        success_rate_request_volume=_u32(b.sr_volume),
        success_rate_minimum_hosts=_u32(b.sr_hosts),
        success_rate_stdev_factor=_u32(b.sr_factor_milli),
        enforcing_success_rate=_u32(_ENFORCED),
        enforcing_local_origin_success_rate=_u32(_ENFORCED),
        failure_percentage_request_volume=_u32(b.fp_volume),
        failure_percentage_minimum_hosts=_u32(b.fp_hosts),
        failure_percentage_threshold=_u32(b.fp_threshold),
        enforcing_failure_percentage=_u32(_ENFORCED),
        enforcing_failure_percentage_local_origin=_u32(_ENFORCED),
    )


def _health_check(h: HealthShape) -> health_check_pb2.HealthCheck:
    return health_check_pb2.HealthCheck(
        interval=_seconds(h.interval_s),
        timeout=_seconds(h.timeout_s),
        unhealthy_threshold=_u32(h.unhealthy),
        healthy_threshold=_u32(h.healthy),
        http_health_check=health_check_pb2.HealthCheck.HttpHealthCheck(
            path=h.path,
            expected_statuses=[range_pb2.Int64Range(start=h.status, end=h.status + 1)],
            codec_client_type=http_pb2.HTTP1,
        ),
    )


def shaped_cluster(
    name: str, shape: ClusterShape, ads_source: Callable[[], config_source_pb2.ConfigSource]
) -> cluster_pb2.Cluster:
    """Part (b)'s EDS cluster, plus what its winning Timeout, CircuitBreaker and HealthCheck set."""
    t, b, h = shape.timeout, shape.breaker, shape.health
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_source()),
        connect_timeout=_seconds(t.connect_s if t else 5),
        per_connection_buffer_limit_bytes=_u32(32768),
        circuit_breakers=_circuit_breakers(b) if b else None,
        outlier_detection=_outlier_detection(b) if b else None,
        health_checks=[_health_check(h)] if h else [],
        common_lb_config=cluster_pb2.Cluster.CommonLbConfig(healthy_panic_threshold=percent_pb2.Percent(value=h.panic))
        if h
        else None,
    )


# --- (a') the fault that reaches traffic -------------------------------------------------------------------------

FAULT = "echo-http"  # the service of the route (a') changes: echo-a's backend, with kuma.io/protocol http


def http_dataplane(name: str, port: int) -> dict[str, Any]:
    """A Dataplane for a backend already running, under service `name` with kuma.io/protocol http, which
    Kuma's FaultInjection destinations must name."""
    return factory.dataplane(name, name, address="127.0.0.1", port=port, tags={"kuma.io/protocol": "http"})


def fault_route(gateway_service: str) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": "edge-faults",
        "selectors": [{"match": {"kuma.io/service": gateway_service}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": "/f"}}],
                        "backends": [
                            {"weight": 1, "destination": {"kuma.io/service": FAULT, "kuma.io/protocol": "http"}}
                        ],
                    }
                ]
            }
        },
    }


def abort_doc(percentage: int) -> dict[str, Any]:
    """Every request (100) or none (0) of the route to FAULT aborted with 503."""
    conf = {"abort": {"percentage": percentage, "httpStatus": 503}}
    return factory.fault_injection("edge-abort", destination=FAULT, conf=conf)
