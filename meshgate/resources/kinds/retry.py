"""Retry: how the traffic from `sources` to `destinations` is retried, per protocol (HTTP, gRPC, TCP).

Rules are Kuma 2.7's `retry_validator.go`: sources name a service, destinations are exactly one
`kuma.io/service`, `conf` configures at least one protocol, and each number or duration it sets is positive.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from meshgate.api.mesh.v1alpha1.http_method_pb2 import HttpMethod
from meshgate.api.mesh.v1alpha1.retry_pb2 import HttpRetryOn, Retry
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.kinds._policy import (
    EMPTY_FIELD,
    GREATER_THAN_ZERO,
    HAS_TO_BE_DEFINED,
    check_duration_set_positive,
    check_positive_if_defined,
    check_service_destinations,
    check_source_services,
    is_zero_duration,
    policy_descriptor,
)
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]

_GrpcRetryOn = Retry.Conf.Grpc.RetryOn


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, Retry, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_source_services(out, Path("sources"), spec.sources)
    check_service_destinations(out, Path("destinations"), spec.destinations)
    path = Path("conf")
    if not spec.HasField("conf"):
        out.add(path, HAS_TO_BE_DEFINED)
        return
    conf = spec.conf
    if not (conf.HasField("http") or conf.HasField("grpc") or conf.HasField("tcp")):
        out.add(path, "missing protocol [grpc|http|tcp] configuration")
        return
    if conf.HasField("http"):
        _check_http(out, path.field("http"), conf.http)
    if conf.HasField("grpc"):
        _check_grpc(out, path.field("grpc"), conf.grpc)
    if conf.HasField("tcp") and conf.tcp.max_connect_attempts == 0:
        out.add(path.field("tcp").field("maxConnectAttempts"), GREATER_THAN_ZERO)


def _check_common(out: Violations, path: Path, conf: Any) -> None:
    check_positive_if_defined(out, path.field("numRetries"), conf, "num_retries")
    check_positive_if_defined(out, path.field("perTryTimeout"), conf, "per_try_timeout")
    if conf.HasField("back_off"):
        _check_back_off(out, path.field("backOff"), conf.back_off)


def _check_http(out: Violations, path: Path, http: Any) -> None:
    # A list Kuma reads from JSON is nil when empty, so "empty" and "unset" agree for repeated fields.
    if not (
        http.HasField("num_retries")
        or http.HasField("per_try_timeout")
        or http.HasField("back_off")
        or http.retriable_status_codes
        or http.retriable_methods
        or http.retry_on
    ):
        out.add(path, EMPTY_FIELD)
    _check_common(out, path, http)
    for i, method in enumerate(http.retriable_methods):
        if method == HttpMethod.NONE:
            out.add(path.field("retriableMethods").index(i), EMPTY_FIELD)
    for i, retry_on in enumerate(http.retry_on):
        if retry_on == HttpRetryOn.retriable_status_codes and not http.retriable_status_codes:
            out.add(
                path.field("retryOn").index(i),
                "retriableStatusCodes cannot be empty when this option is specified",
            )


def _check_grpc(out: Violations, path: Path, grpc: Any) -> None:
    if not (
        grpc.HasField("num_retries") or grpc.HasField("per_try_timeout") or grpc.HasField("back_off") or grpc.retry_on
    ):
        out.add(path, EMPTY_FIELD)
    indexes: dict[str, list[int]] = defaultdict(list)
    for i, value in enumerate(grpc.retry_on):
        indexes[_GrpcRetryOn.Name(value) if value in _GrpcRetryOn.values() else str(value)].append(i)
    # Kuma sorts these messages, as text, so their order does not follow map iteration.
    repeated = sorted(
        f"repeated value {go_quote(name)} at indexes [{', '.join(map(str, where))}]"
        for name, where in indexes.items()
        if len(where) > 1
    )
    for message in repeated:
        out.add(path.field("retryOn"), message)
    _check_common(out, path, grpc)


def _check_back_off(out: Violations, path: Path, back_off: Any) -> None:
    if not back_off.HasField("base_interval"):
        out.add(path.field("baseInterval"), HAS_TO_BE_DEFINED)
    elif is_zero_duration(back_off.base_interval):
        check_duration_set_positive(out, path.field("baseInterval"), back_off.base_interval)
    else:
        # As Kuma: the maximum is only looked at once the base interval is sound.
        check_positive_if_defined(out, path.field("maxInterval"), back_off, "max_interval")


DESCRIPTOR = policy_descriptor(
    name=kinds.RETRY,
    singular="retry",
    plural="retries",
    spec_type=Retry,
    validate=validate,
)
