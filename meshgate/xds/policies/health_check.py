"""HealthCheck (Kuma 2.7 Universal, a connection policy): active health checks of the clusters it matches.

Kuma 2.7 (`git show v2.7.29:<path>`): the gateway applies the policy that wins a cluster's backend
(`gateway/cluster_generator.go:199`) with `envoy/clusters/v3/health_check_configurer.go`:

- `healthyPanicThreshold` -> `common_lb_config.healthy_panic_threshold` (percent), when set (`:113-122`);
  `failTrafficOnPanic` -> `common_lb_config.zone_aware_lb_config.fail_traffic_on_panic`, when set (`:124-147`).
- One `HealthCheck` per checker: a TCP one when `tcp` is set, then an HTTP one when `http` is set, and a plain
  TCP connect check when neither is (`:196-223`). Each carries the common fields (`buildHealthCheck`,
  `:149-166`): `interval`, `timeout`, `unhealthy_threshold`, `healthy_threshold` (always written, 0 when
  unset), `initial_jitter`, `interval_jitter`, `interval_jitter_percent`, `event_log_path`,
  `always_log_health_check_failures`, `no_traffic_interval`, `reuse_connection`.
- TCP (`:60-83`): `send` and each `receive` as hex text payloads.
- HTTP (`:85-111`): `path`, `request_headers_to_add` (append -> APPEND_IF_EXISTS_OR_ADD, else
  OVERWRITE_IF_EXISTS_OR_ADD), `expected_statuses` each as the range [s, s+1), codec HTTP2 on an http2 cluster
  and HTTP1 otherwise (a grpc cluster too, as Kuma).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.type.v3 import http_pb2

from meshgate.api.mesh.v1alpha1.health_check_pb2 import HealthCheck
from meshgate.xds.policies.matching import CACHE, Match
from meshgate.xds.policies.module import PolicyModule, typed_conf

__all__ = ["KIND", "MODULE", "health_checks"]

KIND = "HealthCheck"
_COMMON_DURATIONS = ("interval", "timeout", "initial_jitter", "interval_jitter", "no_traffic_interval")


def _common(conf: HealthCheck.Conf) -> health_check_pb2.HealthCheck:
    """Kuma's `buildHealthCheck`, whose checker is a plain TCP connect until one is added."""
    out = health_check_pb2.HealthCheck(
        interval_jitter_percent=conf.interval_jitter_percent,
        event_log_path=conf.event_log_path,
        always_log_health_check_failures=conf.always_log_health_check_failures.value,
    )
    for field in _COMMON_DURATIONS:
        if conf.HasField(field):
            getattr(out, field).CopyFrom(getattr(conf, field))
    out.unhealthy_threshold.value = conf.unhealthy_threshold
    out.healthy_threshold.value = conf.healthy_threshold
    if conf.HasField("reuse_connection"):
        out.reuse_connection.CopyFrom(conf.reuse_connection)
    out.tcp_health_check.SetInParent()
    return out


def _tcp(conf: HealthCheck.Conf.Tcp, out: health_check_pb2.HealthCheck) -> None:
    checker = out.tcp_health_check
    if conf.HasField("send"):
        checker.send.text = conf.send.value.hex()
    for receive in conf.receive:
        checker.receive.add(text=receive.value.hex())


def _http(conf: HealthCheck.Conf.Http, out: health_check_pb2.HealthCheck, protocol: str) -> None:
    checker = out.http_health_check
    checker.path = conf.path
    for option in conf.request_headers_to_add:
        added = checker.request_headers_to_add.add(
            append_action=base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
            if option.append.value
            else base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        )
        added.header.key = option.header.key
        added.header.value = option.header.value
    for status in conf.expected_statuses:
        checker.expected_statuses.add(start=status.value, end=status.value + 1)
    checker.codec_client_type = http_pb2.HTTP2 if protocol == "http2" else http_pb2.HTTP1


def health_checks(conf: HealthCheck.Conf, protocol: str) -> list[health_check_pb2.HealthCheck]:
    if not conf.HasField("tcp") and not conf.HasField("http"):
        return [_common(conf)]
    out = []
    if conf.HasField("tcp"):
        check = _common(conf)
        _tcp(conf.tcp, check)
        out.append(check)
    if conf.HasField("http"):
        check = _common(conf)
        _http(conf.http, check, protocol)
        out.append(check)
    return out


def _cluster(match: Match, cluster: cluster_pb2.Cluster, protocol: str) -> None:
    conf = typed_conf(match.winner, HealthCheck.Conf)
    if conf.HasField("healthy_panic_threshold"):
        cluster.common_lb_config.healthy_panic_threshold.value = conf.healthy_panic_threshold.value
    if conf.HasField("fail_traffic_on_panic"):
        cluster.common_lb_config.zone_aware_lb_config.fail_traffic_on_panic = conf.fail_traffic_on_panic.value
    # Built once per policy object and protocol: one policy shapes many clusters (`extend` copies them).
    found = CACHE.get(match.winner, f"health-check:{protocol}", health_checks, conf, protocol)
    cluster.health_checks.extend(found)


MODULE = PolicyModule(KIND, cluster=_cluster)
