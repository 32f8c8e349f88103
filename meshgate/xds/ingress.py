"""What a zone's ingress offers other zones: its `availableServices`, computed from the zone's own Dataplanes.

Kuma 2.7.29's `pkg/xds/ingress/dataplane.go` (`GetIngressAvailableServices`, `toAvailableServices`), as its zone
control plane's tracker calls it (`pkg/zone/available_services.go`, `updateZoneIngresses`):
- one entry per distinct (mesh, tag set) of the healthy inbounds (state `Ready`, `health` unset or ready:
  `GetHealthyInbounds`), counting the inbounds that carry it as `instances`;
- ordered by mesh, then by the tag set written `k1=v1,k2=v2` with keys sorted (Kuma's `Tags.String`);
- only tags whose key starts with one of `tag_filters` when any are given (Kuma's `--ingress-tag-filters`,
  none by default);
- written into every ZoneIngress of the zone (`spec.zone` empty or the zone itself), and only when the list
  differs from what it holds.

Unlike Kuma, a meshgate zone also holds the Dataplanes of other zones (relayed for cross-zone gateways): only
the zone's own count, since the ingress forwards to local endpoints only. Not computed yet: Kuma's entries for
MeshGateway listeners served cross-mesh (`getIngressAvailableMeshGateways`) and ExternalServices behind a zone
egress (meshgate has no ZoneEgress).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TypeAlias

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.api.mesh.v1alpha1.zone_ingress_pb2 import ZoneIngress
from meshgate.resources.model import Resource

__all__ = ["available_services", "serves_zone", "with_available_services"]

_Service: TypeAlias = ZoneIngress.AvailableService
_READY = Dataplane.Networking.Inbound.Ready


def _healthy_inbounds(spec: Dataplane) -> Iterable[Dataplane.Networking.Inbound]:
    for inbound in spec.networking.inbound:
        if inbound.state != _READY:
            continue
        if inbound.HasField("health") and not inbound.health.ready:
            continue
        yield inbound


def available_services(dataplanes: Iterable[Resource], tag_filters: Sequence[str] = ()) -> list[_Service]:
    """The ingress's `availableServices` for the zone's own `dataplanes` (Kuma's `GetIngressAvailableServices`)."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for dp in dataplanes:
        spec = dp.spec
        if not isinstance(spec, Dataplane):
            continue
        for inbound in _healthy_inbounds(spec):
            tags = tuple(
                sorted(
                    (key, value)
                    for key, value in inbound.tags.items()
                    if not tag_filters or any(key.startswith(f) for f in tag_filters)
                )
            )
            counts[(dp.meta.mesh, tags)] += 1

    def order(key: tuple[str, tuple[tuple[str, str], ...]]) -> tuple[str, str]:
        mesh, tags = key
        return mesh, ",".join(f"{k}={v}" for k, v in tags)

    return [
        _Service(tags=dict(tags), instances=counts[(mesh, tags)], mesh=mesh) for mesh, tags in sorted(counts, key=order)
    ]


def serves_zone(ingress: Resource, zone: str) -> bool:
    """Whether `ingress` is one of `zone`'s own: Kuma leaves `spec.zone` empty in the zone that registered it."""
    spec = ingress.spec
    return isinstance(spec, ZoneIngress) and spec.zone in ("", zone)


def with_available_services(ingress: Resource, services: Sequence[_Service]) -> Resource | None:
    """`ingress` listing `services`, or None when it already lists exactly those (nothing to write)."""
    spec = ingress.spec
    assert isinstance(spec, ZoneIngress)
    if list(spec.availableServices) == list(services):
        return None
    updated = ZoneIngress()
    updated.CopyFrom(spec)
    del updated.availableServices[:]
    updated.availableServices.extend(services)
    return Resource(ingress.kind, ingress.meta, updated)
