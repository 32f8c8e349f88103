"""`POST /tokens/user`: a control plane issues user tokens for its own API (Kuma's user token web service).

    POST /tokens/user   {"name": "john.doe@example.com", "groups": ["users"], "validFor": "24h"}

It answers the raw token as text/plain, as Kuma does, or a 400 "Invalid request" naming each bad field
(Kuma's messages: `name` / `validFor` "cannot be empty"). Only admins reach it (`meshgate.rest.access`:
everything under /tokens). A token's groups are whatever the admin asks for, `mesh-system:admin` included:
issuing one is an admin act in itself.
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from aiohttp import web

from meshgate.auth.zone_token import parse_valid_for
from meshgate.resources.errors import Violation
from meshgate.rest.app import ExtraRoute
from meshgate.rest.body import read_document
from meshgate.rest.errors import bad_request, validation_failed
from meshgate.tokens.services import UserTokens

__all__ = ["user_token_route"]

log = structlog.get_logger(__name__)

_MAX_NAME: Final = 253
_MAX_GROUPS: Final = 64


def parse_user_token_request(body: Any) -> tuple[str, tuple[str, ...], int]:
    """(name, groups, seconds) of a request body, or a 400 naming every bad field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    violations: list[Violation] = []
    name = body.get("name", "")
    if not isinstance(name, str) or not name.strip():
        violations.append(Violation("name", "cannot be empty"))
    elif len(name) > _MAX_NAME or any(c.isspace() or not c.isprintable() for c in name):
        violations.append(Violation("name", f"must be at most {_MAX_NAME} printable characters without spaces"))
    groups = body.get("groups") or []
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        violations.append(Violation("groups", "must be a list of strings"))
        groups = []
    elif len(groups) > _MAX_GROUPS:
        violations.append(Violation("groups", f"must have at most {_MAX_GROUPS} entries"))
    for i, group in enumerate(groups):
        if not group or len(group) > _MAX_NAME or any(c.isspace() or not c.isprintable() for c in group):
            violations.append(Violation(f"groups[{i}]", f"must be 1-{_MAX_NAME} printable characters without spaces"))
    valid_for = body.get("validFor", "")
    seconds = 0
    if valid_for in ("", None):
        violations.append(Violation("validFor", "cannot be empty"))
    elif not isinstance(valid_for, str):
        violations.append(Violation("validFor", "must be a duration string such as 24h"))
    else:
        try:
            seconds = parse_valid_for(valid_for)
        except ValueError as exc:
            violations.append(Violation("validFor", f"is invalid: {exc}"))
    if violations:
        raise validation_failed(violations, title="Invalid request")
    return str(name), tuple(dict.fromkeys(groups)), seconds


def user_token_route(tokens: UserTokens) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        body = await read_document(request, empty={})
        name, groups, seconds = parse_user_token_request(body)
        token = await tokens.issue(name, groups, seconds)
        log.info("tokens.user.issued", name=name, groups=list(groups), valid_for_seconds=seconds)
        return web.Response(text=token, content_type="text/plain")

    return ExtraRoute(
        "POST", "/tokens/user", handler, 'Issue a user token for this API: {"name", "groups", "validFor"}'
    )
