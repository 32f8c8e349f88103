"""TrafficTrace: which of the Mesh's `tracing` backends the data planes it selects send their spans to.

Rules are Kuma 2.7's `traffic_trace_validator.go`: at least one selector, each with at least one tag. `conf` may
be empty (the Mesh's `tracing.defaultBackend` is used); Kuma does not check that the named backend exists on
the Mesh, and neither does this (generation then leaves tracing off, as Kuma's does).
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.traffic_trace_pb2 import TrafficTrace
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_any_selectors, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, TrafficTrace, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_any_selectors(out, Path("selectors"), spec.selectors)


DESCRIPTOR = policy_descriptor(
    name=kinds.TRAFFIC_TRACE,
    singular="traffic-trace",
    plural="traffic-traces",
    spec_type=TrafficTrace,
    validate=validate,
)
