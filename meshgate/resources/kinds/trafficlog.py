"""TrafficLog: access logs of the traffic from `sources` to `destinations`, to one of the Mesh's backends.

Rules are Kuma 2.7's `traffic_log_validator.go`: sources name a service, destinations are exactly one
`kuma.io/service`. `conf` may be empty (the Mesh's default backend is used); Kuma does not check that the
named backend exists on the Mesh, and neither does this.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.traffic_log_pb2 import TrafficLog
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_service_destinations, check_source_services, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, TrafficLog, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_source_services(out, Path("sources"), spec.sources)
    check_service_destinations(out, Path("destinations"), spec.destinations)


DESCRIPTOR = policy_descriptor(
    name=kinds.TRAFFIC_LOG,
    singular="traffic-log",
    plural="traffic-logs",
    spec_type=TrafficLog,
    validate=validate,
)
