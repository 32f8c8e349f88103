"""TrafficPermission: which sources may reach which destinations, in a mesh with mTLS.

Rules are Kuma 2.7's `traffic_permission_validator.go`: sources and destinations each have at least one
selector, each with at least one tag.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.traffic_permission_pb2 import TrafficPermission
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_any_selectors, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, TrafficPermission, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_any_selectors(out, Path("sources"), spec.sources)
    check_any_selectors(out, Path("destinations"), spec.destinations)


DESCRIPTOR = policy_descriptor(
    name=kinds.TRAFFIC_PERMISSION,
    singular="traffic-permission",
    plural="traffic-permissions",
    spec_type=TrafficPermission,
    validate=validate,
)
