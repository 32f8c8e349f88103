"""Zone tokens on the global: the signing key in the store, and `POST /tokens/zone` that issues tokens.

The signing key. One RSA-2048 key, created the first time something needs it and never replaced (a new key
would invalidate every token issued). It is one resource of the global-internal kind `ZoneTokenSigningKey`
(name `zone-token-signing-key-1`, the `1` being the token header's `kid`), whose spec is a
`google.protobuf.BytesValue` holding the PEM. The kind is deliberately not in `meshgate.resources.registry`
(as zone_cp/dns.py's `VirtualIPs`): everything that enumerates kinds derives from the registry, so the key is
never synced to zones nor served by the REST API. Replicas sharing a Redis store race to create it; the loser
gets AlreadyExistsError and reads the winner's key, so every replica signs and verifies with the same one.

The endpoint answers Kuma's way: the raw token as text/plain, or a Kuma error body naming each bad field.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import structlog
from aiohttp import web
from google.protobuf.wrappers_pb2 import BytesValue

from meshgate.auth import zone_token
from meshgate.resources.errors import Violation
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.rest.app import ExtraRoute
from meshgate.rest.body import read_document
from meshgate.rest.errors import bad_request, validation_failed
from meshgate.store.protocol import AlreadyExistsError, NotFoundError, ResourceStore

__all__ = ["DEFAULT_SCOPE", "DEFAULT_VALID_FOR", "SIGNING_KEY_KIND", "SIGNING_KEY_NAME", "SigningKey", "token_route"]

log = structlog.get_logger("meshgate.global.tokens")

SIGNING_KEY_KIND = "ZoneTokenSigningKey"
SIGNING_KEY_NAME = f"zone-token-signing-key-{zone_token.KEY_ID}"
DEFAULT_SCOPE = ("cp",)
DEFAULT_VALID_FOR = "87600h"  # ten years, Kuma's default for zone tokens


class SigningKey:
    """The global's zone token signing key: read from the store, or created there on first need."""

    def __init__(self, store: ResourceStore) -> None:
        self._store = store
        self._pem: bytes | None = None
        # One creation per process: concurrent first requests wait for it instead of racing each other.
        self._lock = anyio.Lock()

    async def pem(self) -> bytes:
        async with self._lock:
            if self._pem is None:
                self._pem = await self._load_or_create()
            return self._pem

    async def _load_or_create(self) -> bytes:
        key = ResourceKey(SIGNING_KEY_KIND, "", SIGNING_KEY_NAME)
        try:
            return _pem_of(await self._store.get(key))
        except NotFoundError:
            pass
        # RSA key generation takes tens of milliseconds: off the event loop.
        pem = await anyio.to_thread.run_sync(zone_token.generate_key_pem)
        try:
            await self._store.create(Resource(SIGNING_KEY_KIND, Meta(name=SIGNING_KEY_NAME), BytesValue(value=pem)))
        except AlreadyExistsError:
            # Another replica on the shared store created it first: its key is the one.
            log.info("tokens.signing_key.lost_race")
            return _pem_of(await self._store.get(key))
        log.info("tokens.signing_key.created", name=SIGNING_KEY_NAME)
        return pem


def _pem_of(resource: Resource) -> bytes:
    spec = resource.spec
    assert isinstance(spec, BytesValue), type(spec)
    return spec.value


def _parse(body: Any) -> tuple[str, tuple[str, ...], int]:
    """(zone, scope, seconds) of a token request, or a 400 naming every bad field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    violations: list[Violation] = []
    zone = body.get("zone", "")
    if not isinstance(zone, str) or not zone:
        violations.append(Violation("zone", "cannot be empty"))
    scope = body.get("scope", list(DEFAULT_SCOPE))
    if not isinstance(scope, list) or not scope or not all(isinstance(s, str) for s in scope):
        violations.append(Violation("scope", "must be a non-empty list of strings"))
        scope = []
    for i, s in enumerate(scope):
        if s not in zone_token.SCOPES:
            violations.append(Violation(f"scope[{i}]", f"unknown scope {s!r}: one of {sorted(zone_token.SCOPES)}"))
    valid_for = body.get("validFor", DEFAULT_VALID_FOR)
    seconds = 0
    if not isinstance(valid_for, str):
        violations.append(Violation("validFor", "must be a duration string such as 720h"))
    else:
        try:
            seconds = zone_token.parse_valid_for(valid_for)
        except ValueError as exc:
            violations.append(Violation("validFor", str(exc)))
    if violations:
        raise validation_failed(violations, title="Could not issue a token")
    return str(zone), tuple(scope), seconds


def token_route(key: SigningKey) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        body = await read_document(request, empty={})
        zone, scope, seconds = _parse(body)
        token = zone_token.issue(await key.pem(), zone, scope, seconds, time.time())
        log.info("tokens.zone.issued", zone=zone, scope=list(scope), valid_for_seconds=seconds)
        return web.Response(text=token, content_type="text/plain")

    return ExtraRoute(
        "POST", "/tokens/zone", handler, 'Issue a zone token: {"zone", "scope" (default ["cp"]), "validFor"}'
    )
