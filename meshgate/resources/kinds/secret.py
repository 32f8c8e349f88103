"""Secret: mesh-scoped bytes (Kuma 2.7 `system.v1alpha1.Secret`), created on the global and synced to zones.

A MeshGateway TLS certificate may name one (`certificates: [{secret: NAME}]`); the zone passes the bytes to
the Envoy config generator. In Universal YAML the data is base64, as in Kuma: `data: <base64>`.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.system.v1alpha1.secret_pb2 import Secret
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, Secret, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    # Kuma's secret validator: the data must be present and not empty.
    if not spec.HasField("data") or not spec.data.value:
        out.add(Path("data"), "cannot be empty")


DESCRIPTOR = KindDescriptor(
    name=kinds.SECRET,
    singular="secret",
    plural="secrets",
    spec_type=Secret,
    scope=Scope.MESH,
    sync=SyncDirection.GLOBAL_TO_ZONE,
    validate=validate,
    writable_on_global=True,
    writable_on_zone=False,
)
