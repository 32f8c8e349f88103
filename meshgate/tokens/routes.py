"""HTTP endpoints that revoke tokens and rotate signing keys (admin only: the API's access rules say so).

    POST /tokens/revocations            {"type": "zone|user|dataplane", "id": "<jti>", "mesh": "<mesh>"}
    GET  /tokens/revocations?type=T[&mesh=M]
    POST /tokens/signing-keys/rotate    {"type": "zone|user|dataplane", "mesh": "<mesh>", "gracePeriod": "24h"}
    GET  /tokens/signing-keys?type=T[&mesh=M]          key ids and retirement times, never key material

A revocation takes effect at once on this process (open KDS streams with the token are re-checked and closed
through `on_revoked`) and within a second on other replicas of a shared store. Data plane lists and keys are
mesh Secrets: a zone reads them from the global and answers 405 to a change, naming where to make it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from meshgate.auth.zone_token import parse_valid_for
from meshgate.resources.errors import Violation
from meshgate.rest.app import ExtraRoute
from meshgate.rest.body import read_document
from meshgate.rest.errors import ApiError, validation_failed
from meshgate.tokens.revocations import valid_token_id
from meshgate.tokens.services import DataplaneTokens, TokenType, UserTokens, ZoneTokens

__all__ = ["DEFAULT_GRACE_PERIOD", "token_admin_routes"]

DEFAULT_GRACE_PERIOD = "24h"


class _Types:
    def __init__(
        self,
        zone: ZoneTokens | None,
        user: UserTokens | None,
        dataplane: DataplaneTokens | None,
        dataplane_writable: bool,
    ) -> None:
        self.zone, self.user, self.dataplane = zone, user, dataplane
        self.dataplane_writable = dataplane_writable

    def names(self) -> list[str]:
        return [n for n, t in (("zone", self.zone), ("user", self.user), ("dataplane", self.dataplane)) if t]

    def pick(self, kind: object, mesh: object, *, writing: bool) -> tuple[str, str, TokenType]:
        violations: list[Violation] = []
        if kind not in self.names():
            violations.append(Violation("type", f"must be one of {self.names()}"))
        if kind == "dataplane" and (not isinstance(mesh, str) or not mesh or len(mesh) > 253):
            violations.append(Violation("mesh", "a data plane token type needs the mesh"))
        if violations:
            raise validation_failed(violations, title="Invalid request")
        if kind == "zone":
            assert self.zone is not None
            return "zone", "", self.zone
        if kind == "user":
            assert self.user is not None
            return "user", "", self.user
        assert self.dataplane is not None
        assert isinstance(mesh, str)
        if writing and not self.dataplane_writable:
            raise ApiError(
                405,
                "Method not allowed",
                "data plane token keys and revocations are mesh Secrets owned by the global control plane:"
                " make this change there",
            )
        return "dataplane", mesh, self.dataplane.mesh(mesh)


async def _body(request: web.Request) -> dict[str, Any]:
    # The API's one body reader: size, depth and encoding bounds, large bodies parsed off the event loop.
    return dict(await read_document(request, empty={}))


def token_admin_routes(
    *,
    zone: ZoneTokens | None = None,
    user: UserTokens | None = None,
    dataplane: DataplaneTokens | None = None,
    dataplane_writable: bool = True,
    on_revoked: Sequence[Callable[[], object]] = (),
) -> list[ExtraRoute]:
    types = _Types(zone, user, dataplane, dataplane_writable)

    async def revoke(request: web.Request) -> web.Response:
        body = await _body(request)
        kind, mesh, tokens = types.pick(body.get("type"), body.get("mesh"), writing=True)
        jti = body.get("id")
        if not isinstance(jti, str) or not valid_token_id(jti):
            raise validation_failed(
                [
                    Violation(
                        "id", "must be a token id (the token's jti claim): 1-128 letters, digits, '.', '_', ':', '-'"
                    )
                ],
                title="Could not revoke the token",
            )
        try:
            added = await tokens.revocations.revoke(jti)
        except ValueError as exc:
            raise validation_failed([Violation("id", str(exc))], title="Could not revoke the token") from None
        for callback in on_revoked:
            callback()
        return web.json_response({"type": kind, "mesh": mesh, "id": jti, "revoked": True, "new": added})

    async def list_revocations(request: web.Request) -> web.Response:
        kind, mesh, tokens = types.pick(request.query.get("type"), request.query.get("mesh"), writing=False)
        await tokens.revocations.refresh(force=True)
        return web.json_response({"type": kind, "mesh": mesh, "items": sorted(tokens.revocations.ids)})

    async def rotate(request: web.Request) -> web.Response:
        body = await _body(request)
        kind, mesh, tokens = types.pick(body.get("type"), body.get("mesh"), writing=True)
        grace = body.get("gracePeriod", DEFAULT_GRACE_PERIOD)
        try:
            seconds = parse_valid_for(grace) if isinstance(grace, str) and len(grace) <= 32 else -1
        except ValueError:
            seconds = -1
        if seconds < 0 and grace not in ("0", "0s"):
            raise validation_failed(
                [Violation("gracePeriod", "must be a duration such as 24h or 30m (0s retires old keys at once)")],
                title="Could not rotate the signing key",
            )
        kid = await tokens.keys.rotate(max(seconds, 0))
        return web.json_response(
            {"type": kind, "mesh": mesh, "keyId": kid, "items": [k.as_json() for k in tokens.keys.describe()]}
        )

    async def list_keys(request: web.Request) -> web.Response:
        kind, mesh, tokens = types.pick(request.query.get("type"), request.query.get("mesh"), writing=False)
        await tokens.keys.refresh(force=True)
        return web.json_response({"type": kind, "mesh": mesh, "items": [k.as_json() for k in tokens.keys.describe()]})

    return [
        ExtraRoute("POST", "/tokens/revocations", revoke, 'Revoke a token by id: {"type", "id", "mesh"}'),
        ExtraRoute("GET", "/tokens/revocations", list_revocations, "Revoked token ids of one type (?type=&mesh=)"),
        ExtraRoute(
            "POST",
            "/tokens/signing-keys/rotate",
            rotate,
            'Rotate a signing key: {"type", "mesh", "gracePeriod"}; older keys verify until the grace period ends',
        ),
        ExtraRoute("GET", "/tokens/signing-keys", list_keys, "Signing key ids and retirement times (?type=&mesh=)"),
    ]
