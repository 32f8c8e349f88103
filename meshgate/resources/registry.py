"""Every kind meshgate knows, and what is derived from their descriptors.

The lists of kinds that each side of KDS sends are computed from each descriptor's sync direction, never
written out by hand (as Kuma derives them from its `kds.send_to_zone` / `send_to_global` options). `KINDS`
is ordered so that a Mesh comes before the resources that live in it: a zone that applies kinds in this
order never sees a MeshGateway for a mesh it does not have yet.
"""

from __future__ import annotations

from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.errors import UnknownKindError
from meshgate.resources.kinds import (
    circuitbreaker,
    dataplane,
    dataplaneinsight,
    externalservice,
    faultinjection,
    healthcheck,
    mesh,
    meshgateway,
    meshgatewayinstance,
    meshgatewayroute,
    proxytemplate,
    ratelimit,
    retry,
    secret,
    timeout,
    trafficlog,
    trafficpermission,
    trafficroute,
    traffictrace,
    virtualoutbound,
    zone,
    zoneegress,
    zoneingress,
)

__all__ = ["KINDS", "get", "kinds_sent_to_global", "kinds_sent_to_zone", "lookup"]

KINDS: tuple[KindDescriptor, ...] = (
    mesh.DESCRIPTOR,
    # Before gateways: a zone then holds a TLS listener's Secret by the time the listener arrives.
    secret.DESCRIPTOR,
    meshgateway.DESCRIPTOR,
    meshgatewayroute.DESCRIPTOR,
    dataplane.DESCRIPTOR,
    zone.DESCRIPTOR,
    meshgatewayinstance.DESCRIPTOR,
    # Kuma 2.7's source/destination policies, sent from the global to zones.
    timeout.DESCRIPTOR,
    retry.DESCRIPTOR,
    circuitbreaker.DESCRIPTOR,
    healthcheck.DESCRIPTOR,
    ratelimit.DESCRIPTOR,
    faultinjection.DESCRIPTOR,
    trafficpermission.DESCRIPTOR,
    trafficlog.DESCRIPTOR,
    traffictrace.DESCRIPTOR,
    proxytemplate.DESCRIPTOR,
    externalservice.DESCRIPTOR,
    trafficroute.DESCRIPTOR,
    virtualoutbound.DESCRIPTOR,
    # Not mesh-scoped; relayed between zones as Dataplanes are.
    zoneingress.DESCRIPTOR,
    # Not mesh-scoped; zone to global only.
    zoneegress.DESCRIPTOR,
    # Zone to global only, after the Dataplanes it describes.
    dataplaneinsight.DESCRIPTOR,
)

_BY_NAME = {d.name: d for d in KINDS}


def _aliases() -> dict[str, KindDescriptor]:
    aliases: dict[str, KindDescriptor] = {}
    for descriptor in KINDS:
        for alias in {descriptor.name.lower(), descriptor.singular, descriptor.plural, *descriptor.aliases}:
            if aliases.setdefault(alias, descriptor) is not descriptor:
                raise RuntimeError(f"kind alias {alias!r} is claimed by two kinds")
    return aliases


_BY_ALIAS = _aliases()


def get(kind: str) -> KindDescriptor:
    """The descriptor of a kind by its exact name ("MeshGateway"), as in `type` and KDS type URLs."""
    try:
        return _BY_NAME[kind]
    except KeyError:
        raise UnknownKindError(kind) from None


def lookup(alias: str) -> KindDescriptor:
    """The descriptor for what a user typed: the kind name in any case, or kumactl's singular or plural."""
    try:
        return _BY_ALIAS[alias.lower()]
    except KeyError:
        raise UnknownKindError(alias) from None


def kinds_sent_to_zone() -> tuple[KindDescriptor, ...]:
    return tuple(d for d in KINDS if d.sends_to_zone())


def kinds_sent_to_global() -> tuple[KindDescriptor, ...]:
    return tuple(d for d in KINDS if d.sends_to_global())
