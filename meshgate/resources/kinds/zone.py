"""Zone: the global's record of a zone (Kuma 2.7 `system.v1alpha1.Zone`).

The global creates one when a zone first connects. It lives on the global only: never synced, and not
writable on a zone. `enabled` defaults to true when unset.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.system.v1alpha1.zone_pb2 import Zone
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, Zone, _check_spec, mesh_scoped=False)


def _check_spec(out: Violations, spec: Any) -> None:
    """A Zone has a single optional boolean: nothing beyond the name rules to check."""


DESCRIPTOR = KindDescriptor(
    name=kinds.ZONE,
    singular="zone",
    plural="zones",
    spec_type=Zone,
    scope=Scope.GLOBAL,
    sync=SyncDirection.NONE,
    validate=validate,
    writable_on_global=True,
    writable_on_zone=False,
)
