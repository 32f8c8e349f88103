"""CircuitBreaker (Kuma 2.7 Universal, a connection policy): thresholds and outlier detection of the clusters it
matches.

Kuma 2.7 (`git show v2.7.29:<path>`): the gateway configures both on each cluster whose backend the policy wins
(`gateway/cluster_generator.go:197-198`).

- **Thresholds** (`envoy/clusters/v3/circuit_breaker_configurer.go`): only when one of the four is set
  (`HasThresholds`, `core/resources/apis/mesh/circuit_breaker_validator.go:17-22`), one DEFAULT-priority
  threshold with `max_connections`, `max_pending_requests`, `max_retries`, `max_requests` as given (an unset
  one stays unset: Envoy's default of 1024, or 3 retries).
- **Outlier detection** (`envoy/clusters/v3/outlier_detection_configurer.go`), always: `interval`,
  `base_ejection_time`, `max_ejection_percent`, `split_external_local_origin_errors` as given; then each of
  Kuma's detectors either configures its Envoy detector and enforces it at 100 %, or (when absent) turns its
  enforcement to 0 %:

- `totalErrors.consecutive` -> `consecutive_5xx`, and `enforcing_consecutive_5xx` 100 (0 when absent);
- `gatewayErrors.consecutive` -> `consecutive_gateway_failure`, `enforcing_consecutive_gateway_failure`;
- `localErrors.consecutive` -> `consecutive_local_origin_failure`, `enforcing_consecutive_local_origin_failure`;
- `standardDeviation` -> `success_rate_request_volume`, `success_rate_minimum_hosts`,
  `success_rate_stdev_factor` (the factor x 1000), `enforcing_success_rate` and
  `enforcing_local_origin_success_rate` 100 (when absent `enforcing_success_rate` 0 only);
- `failure` -> `failure_percentage_request_volume`, `failure_percentage_minimum_hosts`,
  `failure_percentage_threshold`, `enforcing_failure_percentage` and
  `enforcing_failure_percentage_local_origin` 100 (when absent `enforcing_failure_percentage` 0 only).

The local-origin enforcements only act with `splitExternalAndLocalErrors` (Envoy's rule).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import base_pb2
from google.protobuf import wrappers_pb2

from meshgate.api.mesh.v1alpha1.circuit_breaker_pb2 import CircuitBreaker
from meshgate.resources.model import Resource
from meshgate.xds.policies.matching import CACHE, Match
from meshgate.xds.policies.module import PolicyModule, typed_conf

__all__ = ["KIND", "MODULE", "outlier_detection", "thresholds"]

KIND = "CircuitBreaker"
_ENFORCED = 100
_NOT_ENFORCED = 0
_THRESHOLDS = ("maxConnections", "maxPendingRequests", "maxRetries", "maxRequests")
_ENVOY_THRESHOLDS = ("max_connections", "max_pending_requests", "max_retries", "max_requests")


def thresholds(conf: CircuitBreaker.Conf) -> circuit_breaker_pb2.CircuitBreakers | None:
    """Kuma's `CircuitBreakerConfigurer`, or None when no threshold is set (`HasThresholds`)."""
    given = conf.thresholds
    if not any(given.HasField(field) for field in _THRESHOLDS):
        return None
    out = circuit_breaker_pb2.CircuitBreakers()
    threshold = out.thresholds.add(priority=base_pb2.DEFAULT)
    for field, envoy_field in zip(_THRESHOLDS, _ENVOY_THRESHOLDS, strict=True):
        if given.HasField(field):
            getattr(threshold, envoy_field).value = getattr(given, field).value
    return out


def _enforce(out: outlier_detection_pb2.OutlierDetection, field: str, on: bool) -> None:
    getattr(out, field).CopyFrom(wrappers_pb2.UInt32Value(value=_ENFORCED if on else _NOT_ENFORCED))


def outlier_detection(conf: CircuitBreaker.Conf) -> outlier_detection_pb2.OutlierDetection:
    """Kuma's `OutlierDetectionConfigurer`."""
    out = outlier_detection_pb2.OutlierDetection(split_external_local_origin_errors=conf.splitExternalAndLocalErrors)
    if conf.HasField("interval"):
        out.interval.CopyFrom(conf.interval)
    if conf.HasField("baseEjectionTime"):
        out.base_ejection_time.CopyFrom(conf.baseEjectionTime)
    if conf.HasField("maxEjectionPercent"):
        out.max_ejection_percent.CopyFrom(conf.maxEjectionPercent)
    detectors = conf.detectors
    for kuma, envoy_field, enforcing in (
        ("totalErrors", "consecutive_5xx", "enforcing_consecutive_5xx"),
        ("gatewayErrors", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure"),
        ("localErrors", "consecutive_local_origin_failure", "enforcing_consecutive_local_origin_failure"),
    ):
        present = detectors.HasField(kuma)
        if present and getattr(detectors, kuma).HasField("consecutive"):
            getattr(out, envoy_field).CopyFrom(getattr(detectors, kuma).consecutive)
        _enforce(out, enforcing, present)
    if detectors.HasField("standardDeviation"):
        stdev = detectors.standardDeviation
        if stdev.HasField("requestVolume"):
            out.success_rate_request_volume.CopyFrom(stdev.requestVolume)
        if stdev.HasField("minimumHosts"):
            out.success_rate_minimum_hosts.CopyFrom(stdev.minimumHosts)
        if stdev.HasField("factor"):
            out.success_rate_stdev_factor.value = int(stdev.factor.value * 1000)
        _enforce(out, "enforcing_local_origin_success_rate", True)  # acts only with split errors
    _enforce(out, "enforcing_success_rate", detectors.HasField("standardDeviation"))
    if detectors.HasField("failure"):
        failure = detectors.failure
        if failure.HasField("requestVolume"):
            out.failure_percentage_request_volume.CopyFrom(failure.requestVolume)
        if failure.HasField("minimumHosts"):
            out.failure_percentage_minimum_hosts.CopyFrom(failure.minimumHosts)
        if failure.HasField("threshold"):
            out.failure_percentage_threshold.CopyFrom(failure.threshold)
        _enforce(out, "enforcing_failure_percentage_local_origin", True)  # acts only with split errors
    _enforce(out, "enforcing_failure_percentage", detectors.HasField("failure"))
    return out


def _messages(
    policy: Resource,
) -> tuple[circuit_breaker_pb2.CircuitBreakers | None, outlier_detection_pb2.OutlierDetection]:
    conf = typed_conf(policy, CircuitBreaker.Conf)
    return thresholds(conf), outlier_detection(conf)


def _cluster(match: Match, cluster: cluster_pb2.Cluster, protocol: str) -> None:
    # Built once per policy object: one policy shapes many clusters (callers copy, never edit, the messages).
    found, outlier = CACHE.get(match.winner, "circuit-breaker:messages", _messages, match.winner)
    if found is not None:
        cluster.circuit_breakers.CopyFrom(found)
    cluster.outlier_detection.CopyFrom(outlier)


MODULE = PolicyModule(KIND, cluster=_cluster)
