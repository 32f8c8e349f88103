"""CircuitBreaker: outlier detection and connection thresholds for the clusters of `destinations`.

Rules are Kuma 2.7's `circuit_breaker_validator.go`: sources name a service, destinations are exactly one
`kuma.io/service`, and `conf` sets at least one detector or threshold, with percentages within 0-100.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.circuit_breaker_pb2 import CircuitBreaker
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_service_destinations, check_source_services, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]

_DETECTORS = ("totalErrors", "gatewayErrors", "localErrors", "standardDeviation", "failure")
_THRESHOLDS = ("maxConnections", "maxPendingRequests", "maxRetries", "maxRequests")
_PERCENTAGE = "has to be in [0.0 - 100.0] range"


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, CircuitBreaker, _check_spec, mesh_scoped=True)


def _any_set(message: Any, fields: tuple[str, ...]) -> bool:
    return any(message.HasField(field) for field in fields)


def _check_spec(out: Violations, spec: Any) -> None:
    check_source_services(out, Path("sources"), spec.sources)
    check_service_destinations(out, Path("destinations"), spec.destinations)
    root = Path("conf")
    conf = spec.conf
    has_detectors = _any_set(conf.detectors, _DETECTORS)
    has_thresholds = _any_set(conf.thresholds, _THRESHOLDS)
    if not has_detectors and not has_thresholds:
        out.add(root, "must have at least one of the detector or threshold configured")
        return
    if conf.HasField("detectors") and not has_detectors:
        out.add(root.field("detectors"), "can't be empty")
    if conf.maxEjectionPercent.value > 100:
        out.add(root.field("maxEjectionPercent"), _PERCENTAGE)
    if conf.detectors.HasField("failure") and conf.detectors.failure.threshold.value > 100:
        out.add(root.field("detectors").field("failure").field("threshold"), _PERCENTAGE)
    if conf.HasField("thresholds") and not has_thresholds:
        out.add(root.field("thresholds"), "can't be empty")


DESCRIPTOR = policy_descriptor(
    name=kinds.CIRCUIT_BREAKER,
    singular="circuit-breaker",
    plural="circuit-breakers",
    spec_type=CircuitBreaker,
    validate=validate,
)
