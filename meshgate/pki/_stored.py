"""A generated CA kept in the control plane's own store: made once, shared by every replica, never replaced.

The resource is an internal kind the caller names (`KDSCertificateAuthority`, `DpServerCertificateAuthority`),
deliberately not in `meshgate.resources.registry`, so it is never synced nor served by the REST API; its spec
is a BytesValue holding `{"cert": PEM, "key": PEM}` as JSON. Race-safe the way signing keys are
(`meshgate.tokens.keys`): replicas of one store that start together all try `create`; the losers read the
winner's. Only the CA is stored: each process issues its own server certificate at start (its names are its
own), so a new name needs a restart and no state to clean up, and every client that trusts the CA keeps
trusting.
"""

from __future__ import annotations

import functools
import json

import anyio
import structlog
from google.protobuf import wrappers_pb2

from meshgate.pki._issue import Authority, generate_authority
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, NotFoundError, ResourceStore

__all__ = ["ensure_authority"]

log = structlog.get_logger(__name__)


def _encode(ca: Authority) -> wrappers_pb2.BytesValue:
    doc = {"cert": ca.cert_pem.decode(), "key": ca.key_pem.decode()}
    return wrappers_pb2.BytesValue(value=json.dumps(doc, sort_keys=True).encode())


def _decode(resource: Resource) -> Authority:
    spec = resource.spec
    if not isinstance(spec, wrappers_pb2.BytesValue):
        raise ValueError(f"{resource.kind}/{resource.meta.name}: unexpected spec {type(spec).__name__}")
    doc = json.loads(spec.value)
    return Authority(doc["cert"].encode(), doc["key"].encode())


async def ensure_authority(store: ResourceStore, key: ResourceKey, common_name: str) -> Authority:
    """The CA stored at `key`, generated (off the event loop) and stored on first need."""
    try:
        return _decode(await store.get(key))
    except NotFoundError:
        pass
    ca = await anyio.to_thread.run_sync(functools.partial(generate_authority, common_name))
    try:
        await store.create(Resource(key.kind, Meta(name=key.name, mesh=key.mesh), _encode(ca)))
    except AlreadyExistsError:
        # Another replica on the shared store created it first: its CA is the one clients trust.
        log.info("pki.ca_lost_race", kind=key.kind, name=key.name)
        return _decode(await store.get(key))
    log.info("pki.ca_created", kind=key.kind, name=key.name)
    return ca
