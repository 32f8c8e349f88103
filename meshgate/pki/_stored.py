"""A generated CA and server certificate kept in the control plane's own store, made once and shared.

The resource is an internal kind (the caller names it, e.g. `DpServerCertificate`), deliberately not in
`meshgate.resources.registry`, so it is never synced nor served by the REST API; its spec is a BytesValue
holding JSON of the PEMs and SANs. Race-safe the way signing keys are (`meshgate.tokens.keys`): replicas of
one store that start together all try `create`; the losers read the winner's. The CA is never replaced: a
server certificate that lacks a wanted SAN, or nears its end, is re-issued from the same CA with an
optimistic-concurrency update, so every client that trusts the CA keeps trusting.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import anyio
import structlog
from google.protobuf import wrappers_pb2

from meshgate.pki._issue import ServerPki, generate_server_pki, normalize_sans, reissue_server
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore

__all__ = ["RENEW_BEFORE", "ensure_server_pki"]

log = structlog.get_logger("meshgate.pki")

# Re-issue a server certificate this long before it expires (checked at every start).
RENEW_BEFORE = timedelta(days=30)
_ATTEMPTS = 5


def _encode(pki: ServerPki) -> wrappers_pb2.BytesValue:
    doc = {
        "caCert": pki.ca_cert_pem.decode(),
        "caKey": pki.ca_key_pem.decode(),
        "cert": pki.cert_pem.decode(),
        "key": pki.key_pem.decode(),
        "sans": list(pki.sans),
    }
    return wrappers_pb2.BytesValue(value=json.dumps(doc, sort_keys=True).encode())


def _decode(resource: Resource) -> ServerPki:
    spec = resource.spec
    if not isinstance(spec, wrappers_pb2.BytesValue):
        raise ValueError(f"{resource.kind}/{resource.meta.name}: unexpected spec {type(spec).__name__}")
    doc = json.loads(spec.value)
    return ServerPki(
        doc["caCert"].encode(), doc["caKey"].encode(), doc["cert"].encode(), doc["key"].encode(), tuple(doc["sans"])
    )


def _good_for(pki: ServerPki, sans: tuple[str, ...], now: datetime) -> bool:
    return set(sans) <= set(pki.sans) and pki.not_after - now > RENEW_BEFORE


async def ensure_server_pki(
    store: ResourceStore, key: ResourceKey, common_name: str, sans: Iterable[str], *, now: datetime | None = None
) -> ServerPki:
    """The stored CA and server certificate at `key`, generated on first need, and re-issued (same CA) when
    it lacks one of `sans` or expires within RENEW_BEFORE. Key generation runs off the event loop."""
    wanted = normalize_sans(sans)
    at = now or datetime.now(UTC)
    for _ in range(_ATTEMPTS):
        try:
            current = await store.get(key)
        except NotFoundError:
            fresh = await anyio.to_thread.run_sync(lambda: generate_server_pki(common_name, wanted, now=at))
            try:
                await store.create(Resource(key.kind, Meta(name=key.name, mesh=key.mesh), _encode(fresh)))
            except AlreadyExistsError:
                log.info("pki.lost_race", kind=key.kind, name=key.name)
                continue  # another replica made it first: read and use theirs
            log.info("pki.generated", kind=key.kind, name=key.name, sans=list(wanted))
            return fresh
        pki = _decode(current)
        if _good_for(pki, wanted, at):
            return pki
        # Keep every name the certificate had (another replica may bind elsewhere) and add the new ones.
        names = normalize_sans((*pki.sans, *wanted))
        renewed = await anyio.to_thread.run_sync(functools.partial(reissue_server, pki, common_name, names, now=at))
        try:
            await store.update(Resource(key.kind, current.meta, _encode(renewed)))
        except (ConflictError, NotFoundError):
            continue  # someone else changed it meanwhile: look again
        log.info("pki.reissued", kind=key.kind, name=key.name, sans=list(names))
        return renewed
    raise RuntimeError(f"{key.kind}/{key.name}: could not settle the server certificate: too many concurrent writers")
