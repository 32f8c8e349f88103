"""ZoneIngress: a proxy in ingress mode, through which other zones reach this zone's services (Kuma 2.7
`mesh.v1alpha1.ZoneIngress`).

Not mesh-scoped. Registered in its zone by `meshgate-dp run --proxy-type ingress`; the zone fills in
`availableServices` from its own Dataplanes (`meshgate.xds.ingress`). KDS carries it up to the global and from
there to every other zone (Kuma's `ZoneToGlobalFlag | GlobalToAllButOriginalZoneFlag`), so it is read-only on
the global. The global sets `zone` to the zone it came from.

Rules are Kuma 2.7.29's `zone_ingress_validator.go`, with its paths: the root of the services is
`availableService` (singular), and an invalid `advertisedAddress` is reported at
`networking.advertisedAddress.address`, as Kuma's `validateAddress` appends `address` to the path it is given.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from meshgate.api.mesh.v1alpha1.zone_ingress_pb2 import ZoneIngress
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import check_port, is_dns_name, is_ip
from meshgate.resources.tags import check_tags

__all__ = ["DESCRIPTOR", "check_address", "has_public_address", "overlap", "validate"]

_LOOPBACK = "127.0.0.1"


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, ZoneIngress, _check_spec, mesh_scoped=False)


def has_public_address(spec: Any) -> bool:
    """Whether other zones can reach the ingress: both advertised address and port set (Kuma's
    `HasPublicAddress`)."""
    return bool(spec.networking.advertisedAddress) and spec.networking.advertisedPort != 0


def overlap(address: str, other: str) -> bool:
    """Go's comparison of two parsed IPs, where an unspecified address (0.0.0.0, ::) matches any."""
    try:
        a, b = ipaddress.ip_address(address), ipaddress.ip_address(other)
    except ValueError:
        return False
    return a.is_unspecified or b.is_unspecified or a == b


def _uses_inbound_interface(networking: Any, address: str, port: int) -> bool:
    """Kuma's `ZoneIngressResource.UsesInboundInterface`."""
    if port == networking.port and overlap(address, networking.address):
        return True
    return port == networking.advertisedPort and overlap(address, networking.advertisedAddress)


def check_address(out: Violations, path: Path, address: str) -> None:
    """Kuma's `validateAddress`, which reports at `<path>.address`."""
    at = path.field("address")
    if address in ("0.0.0.0", "::"):
        out.add(at, "must not be 0.0.0.0 or ::")
    if not is_ip(address) and not is_dns_name(address):
        out.add(at, "address has to be valid IP address or domain name")


def _check_spec(out: Violations, spec: Any) -> None:
    path = Path("networking")
    networking = spec.networking
    if networking.HasField("admin") and _uses_inbound_interface(networking, _LOOPBACK, networking.admin.port):
        out.add(path.field("admin").field("port"), "must differ from port")
    if not networking.advertisedAddress and networking.advertisedPort != 0:
        out.add(path.field("advertisedAddress"), "has to be defined with advertisedPort")
    if networking.advertisedPort == 0 and networking.advertisedAddress:
        out.add(path.field("advertisedPort"), "has to be defined with advertisedAddress")
    if networking.address:
        check_address(out, path.field("address"), networking.address)
    if networking.advertisedAddress:
        check_address(out, path.field("advertisedAddress"), networking.advertisedAddress)
    check_port(out, path.field("port"), networking.port)
    if networking.advertisedPort != 0:
        check_port(out, path.field("advertisedPort"), networking.advertisedPort)
    services = Path("availableService")
    for i, service in enumerate(spec.availableServices):
        check_tags(out, services.index(i).field("tags"), service.tags, require_service=True)


DESCRIPTOR = KindDescriptor(
    name=kinds.ZONE_INGRESS,
    singular="zone-ingress",
    plural="zone-ingresses",
    spec_type=ZoneIngress,
    scope=Scope.GLOBAL,
    sync=SyncDirection.ZONE_TO_ALL,
    validate=validate,
    # Kuma's descriptor is not ReadOnly, but what a user writes on the global is overwritten by its zone's next
    # sync (and refused by `refusal_to_write` once synced): only the zone, by registration, creates one.
    writable_on_global=False,
    writable_on_zone=True,
)
