"""ZoneEgress: a proxy in egress mode, through which the zone's sidecars and gateways reach ExternalServices
(Kuma 2.7 `mesh.v1alpha1.ZoneEgress`).

Not mesh-scoped. Registered in its zone by `meshgate-dp run --proxy-type egress`. KDS carries it up to the
global only (Kuma's proto options `kds.send_to_global: true`, `send_to_zone: false`), so it is read-only on the
global and never reaches another zone. The global sets `zone` to the zone it came from.

REST path `/zoneegresses` (Kuma's `ws.plural`); `meshgatectl get` also takes `zone-egress(es)`, the spelling of
ZoneIngress's path.

Rules are Kuma 2.7.29's `zone_egress_validator.go`: the admin port must differ from the listener's on the
loopback interface, an `address` is an IP or a DNS name (reported at `networking.address.address`, as Kuma's
`validateAddress` appends `address` to the path it is given), and the port is in [1, 65535].
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.zone_egress_pb2 import ZoneEgress
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.kinds.zoneingress import check_address, overlap
from meshgate.resources.model import Resource
from meshgate.resources.network import check_port

__all__ = ["DESCRIPTOR", "validate"]

_LOOPBACK = "127.0.0.1"


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, ZoneEgress, _check_spec, mesh_scoped=False)


def _check_spec(out: Violations, spec: Any) -> None:
    path = Path("networking")
    networking = spec.networking
    # Kuma's `ZoneEgressResource.UsesInboundInterface(IPv4Loopback, admin.port)`.
    if (
        networking.HasField("admin")
        and networking.admin.port == networking.port
        and overlap(_LOOPBACK, networking.address)
    ):
        out.add(path.field("admin").field("port"), "must differ from port")
    if networking.address:
        check_address(out, path.field("address"), networking.address)
    check_port(out, path.field("port"), networking.port)


DESCRIPTOR = KindDescriptor(
    name=kinds.ZONE_EGRESS,
    singular="zoneegress",
    plural="zoneegresses",
    spec_type=ZoneEgress,
    scope=Scope.GLOBAL,
    sync=SyncDirection.ZONE_TO_GLOBAL,
    validate=validate,
    # Only the zone, by registration, creates one; a copy on the global is its zone's (as ZoneIngress).
    writable_on_global=False,
    writable_on_zone=True,
    aliases=("zone-egress", "zone-egresses"),
)
