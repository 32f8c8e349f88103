"""User tokens: JWTs (RS256) a control plane signs for people and tools calling its HTTP API, as in Kuma.

Claims are Kuma's: `Name` (the user), `Groups` (what access rules match on; `mesh-system:admin` may do
everything), and the registered `exp`, `iat` and `jti` (the id a revocation names). No I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from meshgate.auth.jwt import KeySet, TokenError, decode, issue

__all__ = ["ADMIN_GROUP", "ADMIN_NAME", "AUTHENTICATED_GROUP", "UserClaims", "issue_user_token", "verify_user_token"]

ADMIN_GROUP: Final = "mesh-system:admin"
ADMIN_NAME: Final = "mesh-system:admin"
# Every authenticated user is in this group too (Kuma's user.AuthenticatedGroup).
AUTHENTICATED_GROUP: Final = "mesh-system:authenticated"
_NAME = "user token"


@dataclass(frozen=True, slots=True)
class UserClaims:
    name: str
    groups: tuple[str, ...]
    expires_at: int
    issued_at: int
    jti: str


def issue_user_token(
    key: rsa.RSAPrivateKey, kid: str, name: str, groups: Sequence[str], valid_for: float, now: float
) -> str:
    if not name:
        raise ValueError("name must not be empty")
    return issue(key, kid, {"Name": name, "Groups": list(groups)}, valid_for, now)


def verify_user_token(keys: KeySet, token: str, now: float) -> UserClaims:
    """The claims of a user token one of `keys` signed and that has not expired; TokenError otherwise."""
    _, payload = decode(token, keys, now, name=_NAME, subject="Name")
    return _claims(payload)


def _claims(payload: dict[str, Any]) -> UserClaims:
    name, groups = payload.get("Name"), payload.get("Groups", [])
    if not isinstance(name, str) or not name:
        raise TokenError("malformed", "user token has no Name claim")
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise TokenError("malformed", "user token Groups claim must be a list of strings")
    return UserClaims(name, tuple(groups), payload["exp"], payload.get("iat", 0), str(payload.get("jti", "")))
