"""What a kind declares about itself. Everything else (paths, sync lists) is derived from these."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from google.protobuf.message import Message

from meshgate.resources.errors import Violation
from meshgate.resources.model import Resource

__all__ = ["KindDescriptor", "Scope", "SyncDirection"]


class Scope(StrEnum):
    GLOBAL = "Global"  # not mesh-scoped (Mesh itself)
    MESH = "Mesh"


class SyncDirection(StrEnum):
    """Which way KDS carries a kind, as Kuma 2.7's `kds.send_to_zone` / `send_to_global` options say."""

    NONE = "none"
    GLOBAL_TO_ZONE = "global-to-zone"
    ZONE_TO_GLOBAL = "zone-to-global"
    # MeshGateway: global-origin ones go down; zone-origin ones go up (and are not fanned out to other zones).
    BOTH = "both"
    # Dataplane: up from the zone that owns it, then from the global down to every other zone (Kuma's
    # `GlobalToAllButOriginalZone`), so each zone sees every zone's services: `.mesh` names and endpoints.
    ZONE_TO_ALL = "zone-to-global-to-other-zones"


@dataclass(frozen=True, slots=True)
class KindDescriptor:
    name: str  # "MeshGateway": the `type` field in YAML and the KDS type_url
    singular: str  # "meshgateway": kumactl's singular
    plural: str  # "meshgateways": the REST path segment and kumactl's plural
    spec_type: type[Message]
    scope: Scope
    sync: SyncDirection
    # Returns every violation of the kind's rules (spec and name); never raises for invalid input.
    validate: Callable[[Resource], list[Violation]]
    # May users write it on the global / on a zone through the REST API?
    writable_on_global: bool = True
    writable_on_zone: bool = False
    # A policy (Kuma's `IsPolicy`): its resources shape proxies' Envoy config. A mesh-scoped policy kind sent to
    # zones is read by the zone's xDS generation (`meshgate.xds.context.policy_kinds`) with no other wiring.
    policy: bool = False
    # Other names `meshgatectl get` takes for it (ZoneEgress: `zone-egresses`, the spelling of ZoneIngress's).
    aliases: tuple[str, ...] = ()

    @property
    def mesh_scoped(self) -> bool:
        return self.scope is Scope.MESH

    # Derived once: decoding compares it for every resource received over KDS.
    spec_type_url: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "spec_type_url", "type.googleapis.com/" + self.spec_type.DESCRIPTOR.full_name)

    def sends_to_zone(self) -> bool:
        return self.sync in (SyncDirection.GLOBAL_TO_ZONE, SyncDirection.BOTH, SyncDirection.ZONE_TO_ALL)

    def sends_to_global(self) -> bool:
        return self.sync in (SyncDirection.ZONE_TO_GLOBAL, SyncDirection.BOTH, SyncDirection.ZONE_TO_ALL)

    @property
    def relayed_between_zones(self) -> bool:
        """Zone-origin resources of this kind go from the global to every zone but the one they came from."""
        return self.sync is SyncDirection.ZONE_TO_ALL
