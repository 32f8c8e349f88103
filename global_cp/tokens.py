"""Zone tokens on the global: `POST /tokens/zone`, which issues them.

The signing keys (`ZoneTokenSigningKey/zone-token-signing-key-N`, created on first need, rotated with
`POST /tokens/signing-keys/rotate`) and the revocation list live in `meshgate.tokens.ZoneTokens`.

The endpoint answers Kuma's way: the raw token as text/plain, or a Kuma error body naming each bad field.
"""

from __future__ import annotations

from typing import Any

import structlog
from aiohttp import web

from meshgate.auth import zone_token
from meshgate.resources.errors import Violation
from meshgate.rest.app import ExtraRoute
from meshgate.rest.body import read_document
from meshgate.rest.errors import bad_request, validation_failed
from meshgate.tokens import ZoneTokens

__all__ = ["DEFAULT_SCOPE", "DEFAULT_VALID_FOR", "token_route"]

log = structlog.get_logger(__name__)

DEFAULT_SCOPE = ("cp",)
DEFAULT_VALID_FOR = "87600h"  # ten years, Kuma's default for zone tokens


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


def token_route(tokens: ZoneTokens) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        body = await read_document(request, empty={})
        zone, scope, seconds = _parse(body)
        token = await tokens.issue(zone, scope, seconds)
        log.info("tokens.zone.issued", zone=zone, scope=list(scope), valid_for_seconds=seconds)
        return web.Response(text=token, content_type="text/plain")

    return ExtraRoute(
        "POST", "/tokens/zone", handler, 'Issue a zone token: {"zone", "scope" (default ["cp"]), "validFor"}'
    )
