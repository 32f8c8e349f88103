"""HealthCheck: active HTTP or TCP health checks of the endpoints of `destinations`.

Rules are Kuma 2.7's `health_check_validator.go`: sources name a service, destinations are exactly one
`kuma.io/service`, and `conf` has a positive interval, timeout and thresholds, an HTTP path when HTTP is
checked, statuses that are HTTP statuses, and not both HTTP and TCP.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.health_check_pb2 import HealthCheck
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import (
    HAS_TO_BE_DEFINED,
    check_positive_duration,
    check_service_destinations,
    check_source_services,
    policy_descriptor,
)
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, HealthCheck, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_source_services(out, Path("sources"), spec.sources)
    check_service_destinations(out, Path("destinations"), spec.destinations)
    path = Path("conf")
    if not spec.HasField("conf"):
        out.add(path, HAS_TO_BE_DEFINED)
        return
    conf = spec.conf
    check_positive_duration(out, path.field("interval"), conf, "interval")
    check_positive_duration(out, path.field("timeout"), conf, "timeout")
    if conf.unhealthy_threshold == 0:
        out.add(path.field("unhealthyThreshold"), "must have a positive value")
    if conf.healthy_threshold == 0:
        out.add(path.field("healthyThreshold"), "must have a positive value")
    # The optional durations are checked only when set.
    for field, name in (
        ("initial_jitter", "initialJitter"),
        ("interval_jitter", "intervalJitter"),
        ("no_traffic_interval", "noTrafficInterval"),
    ):
        if conf.HasField(field):
            check_positive_duration(out, path.field(name), conf, field)
    panic = conf.healthy_panic_threshold.value
    if panic < 0.0 or panic > 100.0:
        out.add(path.field("healthyPanicThreshold"), "must be in range [0.0 - 100.0]")
    if conf.HasField("http"):
        _check_http(out, path.field("http"), conf.http)
    if conf.HasField("tcp") and conf.HasField("http"):
        out.add(path, "http and tcp cannot be defined at the same time")


def _check_http(out: Violations, path: Path, http: Any) -> None:
    if not http.path:
        out.add(path.field("path"), "has to be defined and cannot be empty")
    for i, status in enumerate(http.expected_statuses):
        if status.value < 100 or status.value >= 600:
            out.add(path.field("expectedStatuses").index(i), "must be in range [100, 600)")
    for i, option in enumerate(http.request_headers_to_add):
        header = path.field("requestHeadersToAdd").index(i).field("header")
        if not option.HasField("header"):
            out.add(header, HAS_TO_BE_DEFINED)
        elif not option.header.key:
            out.add(header.field("key"), "cannot be empty")


DESCRIPTOR = policy_descriptor(
    name=kinds.HEALTH_CHECK,
    singular="health-check",
    plural="health-checks",
    spec_type=HealthCheck,
    validate=validate,
)
