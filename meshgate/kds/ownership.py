"""Who owns what on KDS: what each side sends, how it names it, and what the other side accepts.

Both directions side by side, as Kuma 2.7.29 keeps them in pkg/kds/context/context.go (filters and
mappers) and pkg/kds/v2/store/sync.go (what a receiver stores). Pure functions of a resource, a zone
name and the peer's features: the transport calls them, the REST API asks `refusal_to_write`.

Global to zone (GlobalToZoneSync)
    sends   the global's own resources (`kuma.io/origin: global`), and the zone-origin resources of kinds
            relayed between zones, except to the zone they came from (meshgate relays Dataplanes for
            cross-zone gateways; Kuma does so for ZoneIngress);
    names   a mesh-scoped resource other than a Secret `<display name>-<hash(mesh, display name)>` with
            `kuma.io/display-name`, when the zone advertises `hash-suffix` (context.go: HashSuffixMapper(true));
            otherwise, and for Mesh and Secret, as stored. A relayed zone resource keeps its (already
            hashed) name and its zone's labels;
    zone    stores what it receives as received, and refuses by name (NACK) anything that is neither the
            global's own nor another zone's relayed resource: its own coming back included.

Zone to global (ZoneToGlobalSync)
    sends   what the zone owns: everything not synced down from the global (context.go: ZoneProvidedFilter);
    names   `<name>-<hash(mesh, name, zone, k8s namespace)>`, labelled `kuma.io/origin: zone`, `kuma.io/zone`
            and `kuma.io/display-name` (context.go: zoneMappers, HashSuffixMapper(false, zone, namespace));
    global  stores it under the name the zone sent, or `<zone>.<name>` for a zone without `hash-suffix`
            (sync.go: GlobalSyncCallback, Kuma's path for zones older than 2.6); a ZoneIngress or ZoneEgress
            with `spec.zone` set to its zone (global/components.go), which `as_sent_by_zone` clears again.
            Unlike Kuma, which overwrites the zone labels with the stream's zone, meshgate refuses by name a
            resource that claims another zone or another origin (a zone token authenticates one zone only), and one that
            would overwrite a resource the global or another zone owns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from meshgate.kds.naming import hashed_name
from meshgate.resources import kinds, registry
from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN, LABEL_ZONE, Origin, Resource

__all__ = [
    "LABEL_K8S_NAMESPACE",
    "OWNERSHIP_PREFIX",
    "as_sent_by_zone",
    "global_accepts",
    "global_sends",
    "hashed_down",
    "origin_zone",
    "refusal_to_write",
    "stored_on_global",
    "synced_from_global",
    "to_global",
    "to_zone",
    "zone_accepts",
    "zone_sends",
]

# The Kubernetes namespace a zone resource lives in; part of its hash (Kuma's mesh_proto.KubeNamespaceTag).
LABEL_K8S_NAMESPACE = "k8s.kuma.io/namespace"
# Ownership refusals read "ownership: ..." so they stand apart from validation errors in a NACK.
OWNERSHIP_PREFIX = "ownership: "
_GLOBAL, _ZONE = Origin.GLOBAL.value, Origin.ZONE.value


def _renamed(r: Resource, name: str, labels: Mapping[str, str]) -> Resource:
    """`r` under `name`, keeping its display name in the label (Kuma's util.WithName)."""
    return r.with_meta(name=name, labels={**labels, LABEL_DISPLAY_NAME: labels.get(LABEL_DISPLAY_NAME) or r.meta.name})


# -- global to zone ------------------------------------------------------------------------------------


def origin_zone(r: Resource) -> str:
    """The zone a zone-origin resource came from; "" for the global's own."""
    labels = r.meta.labels
    return labels.get(LABEL_ZONE, "") if labels.get(LABEL_ORIGIN) == Origin.ZONE.value else ""


def global_sends(r: Resource) -> bool:
    """Whether the global offers `r` to zones at all (the zone it came from is left out per stream)."""
    return not origin_zone(r) or registry.get(r.kind).relayed_between_zones


def hashed_down(kind: str) -> bool:
    """Whether the global hash-suffixes names of `kind` for zones with `hash-suffix`: mesh-scoped kinds other
    than Secret, whose names zones look up as they are (context.go: the HashSuffixMapper condition)."""
    d = registry.get(kind)
    return d.mesh_scoped and kind != kinds.SECRET


def to_zone(r: Resource, *, hash_suffix: bool) -> Resource:
    """`r` as the global sends it to a zone (with or without the `hash-suffix` feature)."""
    if origin_zone(r):
        return r  # relayed: named and labelled by its zone, as Kuma relays ZoneIngresses
    labels = {**r.meta.labels, LABEL_ORIGIN: Origin.GLOBAL.value}
    if hash_suffix and hashed_down(r.kind):
        return _renamed(r, hashed_name(r.meta.mesh, r.meta.display_name), labels)
    return r.with_meta(labels=labels)


def synced_from_global(zone: str, r: Resource) -> bool:
    """Whether `zone` got `r` from the global: the global's own, or another zone's relayed through it."""
    labels = r.meta.labels
    origin = labels.get(LABEL_ORIGIN)
    if origin == Origin.GLOBAL.value:
        return True
    return origin == Origin.ZONE.value and labels.get(LABEL_ZONE, zone) != zone


def zone_accepts(zone: str, r: Resource) -> str | None:
    """None when `zone` may store `r` received from the global; else why not (a NACK names it)."""
    labels = r.meta.labels
    origin = labels.get(LABEL_ORIGIN)
    if origin == _GLOBAL:  # a plain str: `Origin.GLOBAL.value` is a property call, once per synced resource
        return None
    if origin != _ZONE or not registry.get(r.kind).relayed_between_zones:
        return f'label {LABEL_ORIGIN} must be "global", got {origin!r}'
    if not labels.get(LABEL_ZONE):
        return f"a {r.kind} relayed from another zone must carry label {LABEL_ZONE}"
    if labels[LABEL_ZONE] == zone:
        return f"this zone's own {r.kind} came back from the global; zone {zone!r} is its only source"
    return None


# -- zone to global ------------------------------------------------------------------------------------


def zone_sends(zone: str, r: Resource) -> bool:
    """Whether `zone` sends `r` up: what it owns, i.e. everything not synced down from the global."""
    return not synced_from_global(zone, r)


def to_global(zone: str, r: Resource) -> Resource:
    """`r` as `zone` sends it to the global: hash-suffixed, labelled with its origin, zone and display name."""
    labels = {**r.meta.labels, LABEL_ORIGIN: Origin.ZONE.value, LABEL_ZONE: zone}
    name = hashed_name(r.meta.mesh, r.meta.display_name, zone, labels.get(LABEL_K8S_NAMESPACE, ""))
    return _renamed(r, name, labels)


def global_accepts(zone: str, r: Resource) -> str | None:
    """None when the global may store `r`, received on `zone`'s stream; else why not (a NACK names it).
    A missing origin or zone label is filled in by `stored_on_global`, as Kuma does; one that names another
    origin or zone is refused, where Kuma would overwrite it: a zone token vouches for one zone only."""
    labels = r.meta.labels
    origin = labels.get(LABEL_ORIGIN)
    if origin not in (None, Origin.ZONE.value):
        return f'{OWNERSHIP_PREFIX}label {LABEL_ORIGIN} must be "zone", got {origin!r}'
    claimed = labels.get(LABEL_ZONE)
    if claimed not in (None, zone):
        return f"{OWNERSHIP_PREFIX}claims zone {claimed!r}, but this stream belongs to zone {zone!r}"
    return None


def stored_on_global(zone: str, r: Resource, *, hash_suffix: bool) -> Resource:
    """`r`, received from `zone`, as the global stores it (pkg/kds/v2/store/sync.go, GlobalSyncCallback):
    labelled with its origin and zone, under the name the zone sent, or `<zone>.<name>` for a zone without
    `hash-suffix` (which sends its names unhashed)."""
    labels = {**r.meta.labels, LABEL_ORIGIN: Origin.ZONE.value, LABEL_ZONE: zone}
    r = _with_spec_zone(r, zone)
    if hash_suffix:
        return r.with_meta(labels=labels)
    return _renamed(r, f"{zone}.{r.meta.name}", labels)


def _with_spec_zone(r: Resource, zone: str) -> Resource:
    """A ZoneIngress or ZoneEgress with `spec.zone` set to `zone`, as Kuma's global sets it on what a zone sends
    (pkg/kds/global/components.go: `zi.Spec.Zone = clusterName`, `ze.Spec.Zone = clusterName`); a zone leaves
    it empty for its own (pkg/zone/available_services.go: "Zone is empty for resources in the local zone"). Other
    kinds as they are."""
    if r.kind not in (kinds.ZONE_INGRESS, kinds.ZONE_EGRESS) or getattr(r.spec, "zone", zone) == zone:
        return r
    spec = type(r.spec)()
    spec.CopyFrom(r.spec)
    spec.zone = zone  # type: ignore[attr-defined]
    return dataclasses.replace(r, spec=spec)


def as_sent_by_zone(zone: str, stored: Resource, *, hash_suffix: bool) -> Resource:
    """The inverse of `stored_on_global`: the resource as the zone sent it, so that on reconnect the global
    offers the zone the names and versions the zone computes itself, and the zone resumes with a delta."""
    stored = _with_spec_zone(stored, "")
    if hash_suffix:
        return stored
    prefix = f"{zone}."
    name = stored.meta.name.removeprefix(prefix)
    labels = dict(stored.meta.labels)
    if labels.get(LABEL_DISPLAY_NAME) == name:
        del labels[LABEL_DISPLAY_NAME]  # added by `stored_on_global`, not by the zone
    return stored.with_meta(name=name, labels=labels)


def refusal_to_write(role: str, zone: str, current: Resource) -> str | None:
    """Why a user may not update or delete `current` through `role`'s API (None: they may): a resource
    synced from the other control plane would be overwritten by the next sync."""
    origin = current.meta.labels.get(LABEL_ORIGIN)
    kind = current.kind
    if role == "zone" and origin == Origin.GLOBAL.value:
        return (
            f"Operation not allowed. Kuma resources like {kind} can be updated or deleted"
            " only from the GLOBAL control plane and not from a ZONE control plane."
        )
    other_zone = current.meta.labels.get(LABEL_ZONE, zone)
    if role == "zone" and zone and origin == Origin.ZONE.value and other_zone != zone:
        return (
            f"Operation not allowed. {kind} {current.meta.name!r} belongs to zone {other_zone!r}"
            " and is synced here through the global; it can be updated or deleted only on that zone."
        )
    if role == "global" and origin == Origin.ZONE.value:
        return (
            f"Operation not allowed. {kind} {current.meta.name!r} is synced from a zone;"
            " it can be updated or deleted only on the ZONE control plane that owns it."
        )
    return None
