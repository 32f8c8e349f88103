"""Who is calling the API, and may they: the middlewares every control plane's API app runs (Kuma's authn filters).

    1. `Authorization: Bearer <user token>`: verified with this process's `UserTokens` (signature with a key
       still in service, expiry, revocation list). A bad token is a 401 naming why, never a fall-back to
       anonymous, and never a 500. A token always wins: a read-only token sent from localhost is read-only
       (Kuma instead ignores the token of a localhost caller, which makes the rules impossible to try locally).
    2. No token, `localhost_is_admin`, and a *direct* loopback request: the admin user (Kuma's
       LocalhostAuthenticator, with its v2.7.29 guards: no proxy headers, a loopback Host, and no cross-site
       browser request, so a web page open on this machine cannot act as admin through the browser).
    3. Otherwise: anonymous.

Then `meshgate.rest.access.decide` answers 401/403 or lets the request through, and the chosen user is
`request[USER]` for handlers. Errors are `ApiError`s, so the app's error middleware renders Kuma's body.
`private_keys_middleware` runs for everyone, with or without authentication (see `meshgate.rest.private_keys`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol
from urllib.parse import urlsplit

import structlog
from aiohttp import web

from meshgate.auth.jwt import TokenError
from meshgate.auth.user_token import AUTHENTICATED_GROUP
from meshgate.resources import kinds
from meshgate.rest import private_keys
from meshgate.rest.access import ADMIN, ANONYMOUS, User, authenticated, decide
from meshgate.rest.errors import ApiError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from meshgate.auth.user_token import UserClaims

__all__ = [
    "USER",
    "ApiAuth",
    "UserTokenIssuer",
    "direct_loopback",
    "forwarded_authorization",
    "middlewares",
    "private_keys_middleware",
]

log = structlog.get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]

USER: Final = web.RequestKey("meshgate.user", User)
_BEARER: Final = "bearer "
# The bytes of `"type": "Secret"`'s value in a JSON answer: a cheap test before parsing.
_SECRET_TYPE: Final = f'"{kinds.SECRET}"'.encode()
_PROXY_HEADERS: Final = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
# A token minted to carry a request on to another replica lives only as long as that call can take.
_FORWARD_TOKEN_SECONDS: Final = 60
_SECRET_ROUTE: Final = "/meshes/{mesh}/secrets/{name}"  # noqa: S105 (a route, not a secret)


class UserTokenIssuer(Protocol):
    """What the API needs of `meshgate.tokens.UserTokens` (a Protocol, so `meshgate.rest` does not import it)."""

    async def verify(self, token: str) -> UserClaims: ...

    async def issue(self, name: str, groups: Sequence[str], valid_for: float) -> str: ...


@dataclass(frozen=True, slots=True)
class ApiAuth:
    """How one control plane's API authenticates: its user tokens, and whether a local caller is admin."""

    tokens: UserTokenIssuer
    localhost_is_admin: bool = True

    def middlewares(self) -> list[Middleware]:
        return middlewares(self)


_AUTH = web.RequestKey("meshgate.auth", ApiAuth)


def _loopback_host(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _authority(scheme: str, hostport: str) -> tuple[str, int] | None:
    """(host, port) of `host[:port]` with the scheme's default port, or None when it is not a plain authority."""
    try:
        parts = urlsplit(f"{scheme}://{hostport}")
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:
        return None
    if not parts.hostname or parts.username or parts.password or parts.path or parts.query or port is None:
        return None
    return parts.hostname.lower().rstrip("."), port


def direct_loopback(peer: str, headers: Mapping[str, str]) -> bool:
    """Kuma's isDirectLoopbackRequest: a loopback peer, no proxy hop, a loopback Host, and no cross-site browser."""
    if not _loopback_host(peer):
        return False
    if any(headers.get(h) for h in _PROXY_HEADERS):
        return False
    host = _authority("http", headers.get("Host", ""))
    if host is None or not _loopback_host(host[0]):
        return False
    if headers.get("Sec-Fetch-Site", "") not in ("", "same-origin", "none"):
        return False
    origin = headers.get("Origin", "")
    if not origin:
        return True
    scheme = urlsplit(origin).scheme
    theirs = _authority(scheme, origin.partition("://")[2]) if scheme in ("http", "https") else None
    ours = _authority(scheme, headers.get("Host", "")) if theirs is not None else None
    return theirs is not None and _loopback_host(theirs[0]) and theirs == ours


def _peer(request: web.Request) -> str:
    # The socket's peer, never `request.remote` behind a configured forwarded-header rewrite.
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    return str(peername[0]) if isinstance(peername, tuple) and peername else ""


def _route_path(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else request.path


def _unauthenticated(title: str, detail: str) -> web.Response:
    response = ApiError(401, title, detail).response()
    response.headers["WWW-Authenticate"] = 'Bearer realm="meshgate"'
    return response


async def _user(request: web.Request, auth: ApiAuth) -> User | web.Response:
    header = request.headers.get("Authorization", "")
    if header:
        if header[: len(_BEARER)].lower() != _BEARER or not header[len(_BEARER) :].strip():
            return _unauthenticated("Invalid authentication data", "the Authorization header must be 'Bearer <token>'")
        try:
            claims = await auth.tokens.verify(header[len(_BEARER) :].strip())
        except TokenError as exc:
            log.info("api.auth.refused", method=request.method, path=request.path, reason=exc.code, error=str(exc))
            return _unauthenticated("Invalid authentication data", str(exc))
        return authenticated(claims.name, list(claims.groups))
    if auth.localhost_is_admin and direct_loopback(_peer(request), request.headers):
        return ADMIN
    return ANONYMOUS


def middlewares(auth: ApiAuth) -> list[Middleware]:
    """Authentication then access rules, for `create_api_app(middlewares=...)`."""

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[_AUTH] = auth
        user = await _user(request, auth)
        if isinstance(user, web.Response):
            return user
        request[USER] = user
        decision = decide(request.method, _route_path(request), user)
        if decision.allowed:
            return await handler(request)
        log.info("api.access.denied", method=request.method, path=request.path, user=user.name, status=decision.status)
        if decision.status == 401:
            return _unauthenticated("Unauthenticated", decision.message)
        raise ApiError(403, "Access Denied", decision.message)

    return [authenticate]


@web.middleware
async def private_keys_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses a GET of a private-key Secret and drops private-key `data` from every JSON answer."""
    if request.method in ("GET", "HEAD") and _route_path(request) == _SECRET_ROUTE:
        name = request.match_info.get("name", "")
        if private_keys.private_by_name(name):
            raise ApiError(403, "Access Denied", private_keys.refusal(name))
    response = await handler(request)
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return response
    body = response.body
    # Cheap first: only an answer that mentions a Secret can hold one.
    if not isinstance(body, bytes) or _SECRET_TYPE not in body:
        return response
    doc = json.loads(body)
    if isinstance(doc, dict) and doc.get("type") == kinds.SECRET:
        name = str(doc.get("name", ""))
        if private_keys.holds_private_key(name, private_keys.secret_data(doc)):
            raise ApiError(403, "Access Denied", private_keys.refusal(name))
    redacted, dropped = private_keys.redact(doc)
    if not dropped:
        return response
    log.debug("api.private_keys.withheld", path=request.path, secrets=dropped)
    return web.json_response(redacted, status=response.status, headers={"X-Meshgate-Withheld": str(len(dropped))})


async def forwarded_authorization(request: web.Request) -> dict[str, str]:
    """Headers that carry this request's user on to another replica's API (which would otherwise see a
    non-loopback, anonymous caller): the caller's own token, or a one-minute token for the same user."""
    header = request.headers.get("Authorization")
    if header:
        return {"Authorization": header}
    auth, user = request.get(_AUTH), request.get(USER)
    if auth is None or user is None or not user.authenticated:
        return {}
    groups = [g for g in user.groups if g != AUTHENTICATED_GROUP]
    token = await auth.tokens.issue(user.name, groups, _FORWARD_TOKEN_SECONDS)
    return {"Authorization": f"Bearer {token}"}
