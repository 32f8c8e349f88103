"""`POST /tokens/dataplane`: issue a data plane token, on the global and on a zone (Kuma's endpoint).

    {"name": "edge-1", "mesh": "default", "tags": {"kuma.io/service": ["edge"]}, "type": "gateway",
     "validFor": "720h"}                                      -> 200 text/plain: the raw token

Every field but `mesh` may be left out: no name (any name), no tags, no type (any type), validFor 10 years
(Kuma's default). A bad field is a 400 naming it. On a zone the mesh's signing key comes from the global
(a synced Secret): until it has arrived the answer is 503, saying so. Admin only, like every `/tokens/*`
route (the API's access rules).
"""

from __future__ import annotations

from typing import Any, Final

import structlog
from aiohttp import web

from meshgate.auth.dataplane_token import PROXY_TYPES
from meshgate.auth.zone_token import parse_valid_for
from meshgate.resources import kinds
from meshgate.resources.errors import Violation
from meshgate.resources.model import ResourceKey
from meshgate.rest.app import ExtraRoute
from meshgate.rest.body import read_document
from meshgate.rest.errors import ApiError, bad_request, mesh_not_found, validation_failed
from meshgate.store.protocol import NotFoundError, ResourceStore
from meshgate.tokens.keys import SigningKeyMissing
from meshgate.tokens.services import DataplaneTokens

__all__ = ["DEFAULT_VALID_FOR", "DataplaneTokenRequest", "dataplane_token_route", "parse_request"]

log = structlog.get_logger(__name__)

DEFAULT_VALID_FOR: Final = "87600h"  # Kuma's default when validFor is empty (kumahq/kuma#4001)
_MAX_NAME: Final = 253
_MAX_TAGS: Final = 64


class DataplaneTokenRequest:
    def __init__(self, mesh: str, name: str, tags: dict[str, list[str]], proxy_type: str, seconds: int) -> None:
        self.mesh, self.name, self.tags, self.proxy_type, self.seconds = mesh, name, tags, proxy_type, seconds


def _name(body: dict[str, Any], field: str, violations: list[Violation], *, required: bool) -> str:
    value = body.get(field, "")
    if value is None:
        value = ""
    if not isinstance(value, str) or len(value) > _MAX_NAME:
        violations.append(Violation(field, f"must be a string of at most {_MAX_NAME} characters"))
        return ""
    if required and not value:
        violations.append(Violation(field, "cannot be empty"))
    return str(value)


def _tags(raw: Any, violations: list[Violation]) -> dict[str, list[str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or len(raw) > _MAX_TAGS:
        violations.append(Violation("tags", f"must map at most {_MAX_TAGS} tag names to lists of values"))
        return {}
    tags: dict[str, list[str]] = {}
    for key, values in raw.items():
        field = f'tags["{key}"]'
        if not key or len(key) > _MAX_NAME:
            violations.append(Violation(field, "tag name must be 1-253 characters"))
        elif not isinstance(values, list) or not values:
            violations.append(Violation(field, "must be a non-empty list of values"))
        elif not all(isinstance(v, str) and v and len(v) <= _MAX_NAME for v in values):
            violations.append(Violation(field, "every value must be a non-empty string of at most 253 characters"))
        else:
            tags[key] = sorted(set(values))
    return tags


def parse_request(body: Any) -> DataplaneTokenRequest:
    """The request, or a 400 naming every bad field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    violations: list[Violation] = []
    mesh = _name(body, "mesh", violations, required=True)
    name = _name(body, "name", violations, required=False)
    tags = _tags(body.get("tags"), violations)
    proxy_type = body.get("type") or ""
    if not isinstance(proxy_type, str) or (proxy_type and proxy_type not in PROXY_TYPES):
        violations.append(Violation("type", f"must be one of {list(PROXY_TYPES)} (or empty: any type)"))
        proxy_type = ""
    valid_for = body.get("validFor") or DEFAULT_VALID_FOR
    seconds = 0
    if not isinstance(valid_for, str):
        violations.append(Violation("validFor", "must be a duration string such as 720h"))
    else:
        try:
            seconds = parse_valid_for(valid_for)
        except ValueError as exc:
            violations.append(Violation("validFor", str(exc)))
    unknown = sorted(set(body) - {"mesh", "name", "tags", "type", "validFor"})
    violations.extend(Violation(k[:_MAX_NAME], "unknown field") for k in unknown[:8])
    if violations:
        raise validation_failed(violations, title="Invalid request")
    return DataplaneTokenRequest(mesh, name, tags, proxy_type, seconds)


def dataplane_token_route(tokens: DataplaneTokens, store: ResourceStore, *, role: str) -> ExtraRoute:
    """`role` ("global" or "zone") only shapes the message while a zone waits for the mesh's key."""

    async def handler(request: web.Request) -> web.Response:
        body = await read_document(request, empty={})
        req = parse_request(body)
        try:
            await store.get(ResourceKey(kinds.MESH, "", req.mesh))
        except NotFoundError:
            # Never a signing key (a mesh Secret) for a mesh that does not exist.
            raise mesh_not_found(req.mesh) from None
        try:
            token = await tokens.issue(
                req.mesh, name=req.name, tags=req.tags, proxy_type=req.proxy_type, valid_for=req.seconds
            )
        except SigningKeyMissing as exc:
            where = "it has not reached this zone yet (is the global reachable, and the mesh created there?)"
            raise ApiError(503, "Could not issue a token", f"{exc}; {where}" if role == "zone" else str(exc)) from None
        log.info(
            "tokens.dataplane.issued",
            mesh=req.mesh,
            name=req.name or None,
            type=req.proxy_type or None,
            tags=sorted(req.tags),
            valid_for_seconds=req.seconds,
        )
        return web.Response(text=token, content_type="text/plain")

    return ExtraRoute(
        "POST",
        "/tokens/dataplane",
        handler,
        'Issue a data plane token: {"mesh", "name", "tags": {"k": ["v"]}, "type", "validFor"}',
    )
