"""The generated messages of the Timeout, Retry, CircuitBreaker and HealthCheck modules (issue 13), field by
field against Kuma 2.7's configurers (each module's docstring cites them). Their effect on traffic is
tests/adapter/test_gateway_policies_resilience.py."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import http_pb2
from google.protobuf import struct_pb2

from meshgate.resources.model import Meta, Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from meshgate.xds import CLUSTER, LISTENER, ROUTE, MeshContext, Snapshot, generate
from meshgate.xds.clusters import cluster_name
from meshgate.xds.policies import Target

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
PROXY = resource(factory.gateway_dataplane("edge-1", "edge", address="192.168.0.1"))
LISTENERS = [factory.listener(8080, "HTTP"), factory.listener(9000, "TCP")]
GATEWAYS = [resource(factory.gateway("edge", service="edge", listeners=LISTENERS))]
ROUTES = [
    resource(factory.http_route("web", prefix="/", backends=[factory.backend("web")])),
    resource(factory.http_route("h2", prefix="/h2", backends=[factory.backend("h2")])),
    resource(factory.http_route("rpc", prefix="/rpc", backends=[factory.backend("rpc")])),
    resource(factory.http_route("raw", prefix="/raw", backends=[factory.backend("raw")])),
    resource(factory.tcp_route("db", backends=[factory.backend("db")])),
]
DATAPLANES = [
    PROXY,
    resource(factory.dataplane("web-1", "web", address="10.0.0.1", tags={"kuma.io/protocol": "http"})),
    resource(factory.dataplane("h2-1", "h2", address="10.0.0.2", tags={"kuma.io/protocol": "http2"})),
    resource(factory.dataplane("rpc-1", "rpc", address="10.0.0.3", tags={"kuma.io/protocol": "grpc"})),
    resource(factory.dataplane("raw-1", "raw", address="10.0.0.4")),
    resource(factory.dataplane("db-1", "db", address="10.0.0.5", tags={"kuma.io/protocol": "tcp"})),
]


def snapshot(*policies: dict[str, Any]) -> Snapshot:
    by_kind: dict[str, list[Resource]] = {}
    for doc in policies:
        by_kind.setdefault(doc["type"], []).append(resource(doc))
    ctx = MeshContext.build(
        "default", zone="zone-1", gateways=GATEWAYS, routes=ROUTES, dataplanes=DATAPLANES, policies=by_kind
    )
    snap = generate(PROXY, ctx)
    assert not snap.problems, snap.problems
    return snap


def shaped_cluster(snap: Snapshot, service: str) -> Any:
    (found,) = (c for name, c in snap[CLUSTER].items() if name.startswith(f"{service}-"))
    return found


def route(snap: Snapshot, prefix: str) -> Any:
    config: Any = snap[ROUTE]["edge:HTTP:8080:*"]
    (vh,) = config.virtual_hosts
    return next(r for r in vh.routes if r.match.prefix == prefix or r.match.path == prefix)


def http_options(cluster: Any) -> http_protocol_options_pb2.HttpProtocolOptions:
    out = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_OPTIONS].Unpack(out)
    return out


def tcp_proxies(snap: Snapshot) -> list[tcp_proxy_pb2.TcpProxy]:
    listener: Any = snap[LISTENER]["edge:TCP:9000"]
    out = []
    for chain in listener.filter_chains:
        for f in chain.filters:
            if f.name == "envoy.filters.network.tcp_proxy":
                proxy = tcp_proxy_pb2.TcpProxy()
                f.typed_config.Unpack(proxy)
                out.append(proxy)
    return out


def wire(snap: Snapshot, type_url: str) -> dict[str, bytes]:
    return {name: m.SerializeToString(deterministic=True) for name, m in snap[type_url].items()}


def kinds_on(snap: Snapshot, target: Target) -> Sequence[str]:
    return sorted({a.kind for a in snap.policies.applied if a.target == target})


# --- Timeout -------------------------------------------------------------------------------------------------

FULL_TIMEOUT: Mapping[str, Any] = {
    "connectTimeout": "2s",
    "tcp": {"idleTimeout": "7s"},
    "http": {"requestTimeout": "3s", "idleTimeout": "4s", "streamIdleTimeout": "5s", "maxStreamDuration": "6s"},
    "grpc": {"streamIdleTimeout": "8s", "maxStreamDuration": "9s"},
}


def test_timeout_on_an_http_cluster_sets_connect_idle_and_max_stream_duration_with_http1_options() -> None:
    snap = snapshot(factory.timeout("t", destination="web", conf=dict(FULL_TIMEOUT)))
    cluster = shaped_cluster(snap, "web")
    assert cluster.connect_timeout.seconds == 2
    options = http_options(cluster)
    assert options.explicit_http_config.HasField("http_protocol_options")
    assert options.common_http_protocol_options.idle_timeout.seconds == 4
    assert options.common_http_protocol_options.max_stream_duration.seconds == 6
    assert route(snap, "/").route.timeout.seconds == 3


def test_timeout_keeps_http2_options_and_a_grpc_cluster_falls_back_to_grpc_max_stream_duration() -> None:
    conf = {"connectTimeout": "1s", "grpc": {"maxStreamDuration": "9s"}, "http": {"idleTimeout": "4s"}}
    snap = snapshot(factory.timeout("t", conf=conf))
    h2 = http_options(shaped_cluster(snap, "h2"))
    rpc = http_options(shaped_cluster(snap, "rpc"))
    for options in (h2, rpc):
        assert options.explicit_http_config.HasField("http2_protocol_options")
        assert options.common_http_protocol_options.idle_timeout.seconds == 4
    assert not h2.common_http_protocol_options.HasField("max_stream_duration")  # http2 ignores the grpc section
    assert rpc.common_http_protocol_options.max_stream_duration.seconds == 9


def test_timeout_without_http_writes_kumas_zero_idle_timeout_and_leaves_route_timeouts() -> None:
    plain = snapshot()
    snap = snapshot(factory.timeout("t", destination="web", conf={"connectTimeout": "1s"}))
    options = http_options(shaped_cluster(snap, "web"))
    assert options.common_http_protocol_options.HasField("idle_timeout")
    assert options.common_http_protocol_options.idle_timeout.ToNanoseconds() == 0
    assert route(snap, "/").route.timeout == route(plain, "/").route.timeout


def test_timeout_on_tcp_clusters_sets_the_connect_timeout_only_and_never_touches_listeners() -> None:
    plain = snapshot()
    snap = snapshot(factory.timeout("t", conf=dict(FULL_TIMEOUT)))
    for service in ("raw", "db"):  # raw: no protocol anywhere, so tcp
        cluster = shaped_cluster(snap, service)
        assert cluster.connect_timeout.seconds == 2
        assert HTTP_OPTIONS not in cluster.typed_extension_protocol_options
    # tcp.idleTimeout and the stream idle timeouts: Kuma's gateway keeps its fixed listener defaults.
    assert wire(snap, LISTENER)["edge:HTTP:8080"] == wire(plain, LISTENER)["edge:HTTP:8080"]
    ((shaped,), (unshaped,)) = (tcp_proxies(snap), tcp_proxies(plain))
    shaped.cluster = unshaped.cluster  # the TCP proxy names the shaped cluster, and differs in nothing else
    assert shaped == unshaped
    assert kinds_on(snap, Target.LISTENER) == []


def test_timeout_kept_as_a_struct_with_go_durations_shapes_clusters_and_routes() -> None:
    """A policy stored with a google.protobuf.Struct spec (the older path) keeps its durations as written
    ("1h", "30m"); the module reads them as Kuma's ToTyped does (jsonpb: time.ParseDuration)."""
    doc = factory.timeout(
        "t",
        destination="web",
        conf={
            "connectTimeout": "1m30s",
            "http": {"requestTimeout": "1.5s", "idleTimeout": "1h", "maxStreamDuration": "30m"},
        },
    )
    spec = struct_pb2.Struct()
    spec.update({key: value for key, value in doc.items() if key not in ("type", "mesh", "name")})
    policy = Resource(kind="Timeout", meta=Meta(name="t", mesh="default"), spec=spec)
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        gateways=GATEWAYS,
        routes=ROUTES,
        dataplanes=DATAPLANES,
        policies={"Timeout": [policy]},
    )
    snap = generate(PROXY, ctx)
    assert not snap.problems, snap.problems
    cluster = shaped_cluster(snap, "web")
    assert cluster.connect_timeout.seconds == 90
    options = http_options(cluster).common_http_protocol_options
    assert options.idle_timeout.seconds == 3600
    assert options.max_stream_duration.seconds == 1800
    assert route(snap, "/").route.timeout.ToMilliseconds() == 1500


# --- Retry ---------------------------------------------------------------------------------------------------


def test_retry_http_maps_every_field_as_kuma() -> None:
    conf = {
        "http": {
            "numRetries": 2,
            "perTryTimeout": "1s",
            "backOff": {"baseInterval": "0.010s", "maxInterval": "0.100s"},
            "retriableStatusCodes": [500, 503],
            "retriableMethods": ["GET", "POST"],
            "retryOn": ["all_5xx", "connect_failure"],
        }
    }
    policy = route(snapshot(factory.retry("r", destination="web", conf=conf)), "/").route.retry_policy
    assert policy.retry_on == "5xx,connect-failure,retriable-status-codes"
    assert policy.num_retries.value == 2
    assert policy.per_try_timeout.seconds == 1
    assert policy.retry_back_off.base_interval.ToMilliseconds() == 10
    assert policy.retry_back_off.max_interval.ToMilliseconds() == 100
    assert list(policy.retriable_status_codes) == [500, 503]
    assert [h.string_match.exact for h in policy.retriable_request_headers] == ["GET", "POST"]
    assert {h.name for h in policy.retriable_request_headers} == {":method"}


def test_retry_defaults_retry_on_and_adds_retriable_status_codes_once() -> None:
    conf = {"http": {"perTryTimeout": "1s"}}
    default = route(snapshot(factory.retry("r", destination="web", conf=conf)), "/").route.retry_policy
    assert default.retry_on == "gateway-error,connect-failure,refused-stream"
    assert not default.HasField("num_retries")
    codes = {"http": {"retryOn": ["retriable_status_codes"], "retriableStatusCodes": [502]}}
    once = route(snapshot(factory.retry("r", destination="web", conf=codes)), "/").route.retry_policy
    assert once.retry_on == "retriable-status-codes"


def test_retry_without_http_leaves_routes_without_retries_and_grpc_never_applies() -> None:
    conf = {"grpc": {"numRetries": 5}, "tcp": {"maxConnectAttempts": 3}}
    snap = snapshot(factory.retry("r", conf=conf))
    for prefix in ("/", "/rpc"):
        assert not route(snap, prefix).route.HasField("retry_policy")


def test_retry_tcp_sets_max_connect_attempts_on_the_tcp_proxy_only() -> None:
    plain = snapshot()
    snap = snapshot(factory.retry("r", conf={"tcp": {"maxConnectAttempts": 4}}))
    assert [p.max_connect_attempts.value for p in tcp_proxies(snap)] == [4]
    assert [p.HasField("max_connect_attempts") for p in tcp_proxies(plain)] == [False]
    http_listener = "edge:HTTP:8080"
    assert wire(snap, LISTENER)[http_listener] == wire(plain, LISTENER)[http_listener]
    without_tcp = snapshot(factory.retry("r", conf={"http": {"numRetries": 1}}))
    assert wire(without_tcp, LISTENER) == wire(plain, LISTENER)


# --- CircuitBreaker ------------------------------------------------------------------------------------------


def test_circuit_breaker_thresholds_and_every_detector() -> None:
    conf = {
        "interval": "2s",
        "baseEjectionTime": "30s",
        "maxEjectionPercent": 50,
        "splitExternalAndLocalErrors": True,
        "thresholds": {"maxConnections": 1, "maxPendingRequests": 2, "maxRetries": 3, "maxRequests": 4},
        "detectors": {
            "totalErrors": {"consecutive": 5},
            "gatewayErrors": {"consecutive": 6},
            "localErrors": {"consecutive": 7},
            "standardDeviation": {"requestVolume": 10, "minimumHosts": 3, "factor": 1.9},
            "failure": {"requestVolume": 11, "minimumHosts": 4, "threshold": 85},
        },
    }
    cluster = shaped_cluster(snapshot(factory.circuit_breaker("cb", destination="web", conf=conf)), "web")
    (t,) = cluster.circuit_breakers.thresholds
    assert t.priority == base_pb2.DEFAULT
    assert (t.max_connections.value, t.max_pending_requests.value, t.max_retries.value, t.max_requests.value) == (
        1,
        2,
        3,
        4,
    )
    od = cluster.outlier_detection
    assert (od.interval.seconds, od.base_ejection_time.seconds, od.max_ejection_percent.value) == (2, 30, 50)
    assert od.split_external_local_origin_errors
    assert (od.consecutive_5xx.value, od.consecutive_gateway_failure.value) == (5, 6)
    assert od.consecutive_local_origin_failure.value == 7
    assert (od.success_rate_request_volume.value, od.success_rate_minimum_hosts.value) == (10, 3)
    assert od.success_rate_stdev_factor.value == 1900
    assert (od.failure_percentage_request_volume.value, od.failure_percentage_minimum_hosts.value) == (11, 4)
    assert od.failure_percentage_threshold.value == 85
    for field in (
        "enforcing_consecutive_5xx",
        "enforcing_consecutive_gateway_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_success_rate",
        "enforcing_local_origin_success_rate",
        "enforcing_failure_percentage",
        "enforcing_failure_percentage_local_origin",
    ):
        assert getattr(od, field).value == 100, field


def test_circuit_breaker_without_thresholds_turns_every_absent_detector_off() -> None:
    conf = {"interval": "1s", "detectors": {"totalErrors": {}}}
    cluster = shaped_cluster(snapshot(factory.circuit_breaker("cb", destination="web", conf=conf)), "web")
    assert not cluster.HasField("circuit_breakers")
    od = cluster.outlier_detection
    assert od.enforcing_consecutive_5xx.value == 100
    assert not od.HasField("consecutive_5xx")  # Envoy's default of 5
    for field in (
        "enforcing_consecutive_gateway_failure",
        "enforcing_consecutive_local_origin_failure",
        "enforcing_success_rate",
        "enforcing_failure_percentage",
    ):
        assert od.HasField(field), field
        assert getattr(od, field).value == 0, field
    assert not od.HasField("enforcing_local_origin_success_rate")
    assert not od.split_external_local_origin_errors


# --- HealthCheck ---------------------------------------------------------------------------------------------


def test_health_check_http_with_the_common_fields() -> None:
    conf = {
        "interval": "1s",
        "timeout": "0.500s",
        "unhealthyThreshold": 2,
        "healthyThreshold": 3,
        "initialJitter": "0.100s",
        "intervalJitter": "0.200s",
        "intervalJitterPercent": 10,
        "healthyPanicThreshold": 40,
        "failTrafficOnPanic": True,
        "eventLogPath": "/tmp/hc.log",
        "alwaysLogHealthCheckFailures": True,
        "noTrafficInterval": "5s",
        "reuseConnection": False,
        "http": {
            "path": "/health",
            "requestHeadersToAdd": [
                {"header": {"key": "x-a", "value": "1"}, "append": True},
                {"header": {"key": "x-b", "value": "2"}},
            ],
            "expectedStatuses": [200, 204],
        },
    }
    cluster = shaped_cluster(snapshot(factory.health_check("hc", destination="h2", conf=conf)), "h2")
    assert cluster.common_lb_config.healthy_panic_threshold.value == 40
    assert cluster.common_lb_config.zone_aware_lb_config.fail_traffic_on_panic
    (http,) = cluster.health_checks
    for check in (http,):
        assert (check.interval.seconds, check.timeout.ToMilliseconds()) == (1, 500)
        assert (check.unhealthy_threshold.value, check.healthy_threshold.value) == (2, 3)
        assert (check.initial_jitter.ToMilliseconds(), check.interval_jitter.ToMilliseconds()) == (100, 200)
        assert check.interval_jitter_percent == 10
        assert check.event_log_path == "/tmp/hc.log"
        assert check.always_log_health_check_failures
        assert check.no_traffic_interval.seconds == 5
        assert check.HasField("reuse_connection")
        assert not check.reuse_connection.value
    checker = http.http_health_check
    assert checker.path == "/health"
    assert [(h.header.key, h.header.value, h.append_action) for h in checker.request_headers_to_add] == [
        ("x-a", "1", base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
        ("x-b", "2", base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
    ]
    assert [(s.start, s.end) for s in checker.expected_statuses] == [(200, 201), (204, 205)]
    assert checker.codec_client_type == http_pb2.HTTP2


def test_health_check_tcp_payloads_a_plain_connect_check_and_http1_elsewhere() -> None:
    common = {"interval": "1s", "timeout": "1s", "unhealthyThreshold": 1, "healthyThreshold": 1}
    tcp = {"send": "cGluZw==", "receive": ["cG9uZw=="]}  # "ping", "pong"
    snap = snapshot(
        factory.health_check("plain", destination="db", conf=common),
        factory.health_check("tcp", destination="raw", conf={**common, "tcp": tcp}),
        factory.health_check("web", destination="web", conf={**common, "http": {"path": "/"}}),
    )
    (check,) = shaped_cluster(snap, "db").health_checks
    assert check.HasField("tcp_health_check")
    assert not check.tcp_health_check.HasField("send")
    assert not shaped_cluster(snap, "db").HasField("common_lb_config")
    (payloads,) = shaped_cluster(snap, "raw").health_checks
    assert payloads.tcp_health_check.send.text == b"ping".hex()
    assert [r.text for r in payloads.tcp_health_check.receive] == [b"pong".hex()]
    (web,) = shaped_cluster(snap, "web").health_checks
    assert web.http_health_check.codec_client_type == http_pb2.HTTP1


def test_unshaped_clusters_keep_their_names_and_bytes() -> None:
    plain = snapshot()
    snap = snapshot(factory.circuit_breaker("cb", destination="web"), factory.health_check("hc", destination="web"))
    for service in ("h2", "rpc", "raw", "db"):
        name = cluster_name({"kuma.io/service": service})
        assert wire(snap, CLUSTER)[name] == wire(plain, CLUSTER)[name]
    assert kinds_on(snap, Target.CLUSTER) == ["CircuitBreaker", "HealthCheck"]
