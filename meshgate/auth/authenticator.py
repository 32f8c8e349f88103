"""Who may speak KDS for a zone: the one decision every KDS RPC on the global asks, with no I/O.

A call carries `client-id: <zone>` and `authorization: Bearer <zone token>`. With `cp-token` auth the token
must verify against the global's key, grant scope `cp`, and name the same zone as `client-id`: otherwise any
holder of a valid token could speak for every zone. With `none` (an explicit opt-out) every call passes.

`is_revoked` is the seam for a revocation list: it is asked about a token's `jti` only after the signature,
expiry and scope checked out, so an unauthenticated caller cannot make it look up arbitrary ids.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import rsa

from meshgate.auth.jwt import KeySet
from meshgate.auth.zone_token import TokenError, verify

__all__ = ["AUTH_REASONS", "AuthFailure", "KDSAuth", "ZoneAuthenticator"]

# Metric label values of a refusal: the token's own reasons plus the two found before any token is read.
AUTH_REASONS = (
    "missing_token",
    "wrong_zone",
    "malformed",
    "bad_signature",
    "expired",
    "missing_scope",
    "revoked",
    "wrong_identity",
)
_BEARER = "bearer "


class KDSAuth(enum.Enum):
    """`--kds-auth` on the global (Kong Mesh's KMESH_MULTIZONE_GLOBAL_KDS_AUTH_TYPE)."""

    NONE = "none"
    CP_TOKEN = "cp-token"  # noqa: S105 (a mode's name, not a secret)


@dataclass(frozen=True, slots=True)
class AuthFailure:
    code: str  # one of AUTH_REASONS
    message: str

    def __str__(self) -> str:
        return self.message


class ZoneAuthenticator:
    """Checks one call's metadata against the global's public signing key."""

    def __init__(
        self,
        key: rsa.RSAPublicKey | KeySet,
        clock: Callable[[], float] = time.time,
        *,
        is_revoked: Callable[[str], bool] | None = None,
    ) -> None:
        self._key = key
        self._clock = clock
        self._is_revoked = is_revoked

    def check(self, zone: str, authorization: str) -> AuthFailure | None:
        """None when `authorization` proves the caller is `zone` with scope `cp`; the refusal otherwise."""
        if not zone:
            return AuthFailure("wrong_zone", "missing client-id metadata (the zone name the token must name)")
        if not authorization:
            return AuthFailure("missing_token", "missing zone token: send metadata 'authorization: Bearer <token>'")
        if authorization[: len(_BEARER)].lower() != _BEARER:
            return AuthFailure("malformed", "authorization metadata must be 'Bearer <zone token>'")
        try:
            claims = verify(self._key, authorization[len(_BEARER) :], self._clock(), scope="cp")
        except TokenError as exc:
            return AuthFailure(exc.code, str(exc))
        if claims.zone != zone:
            return AuthFailure("wrong_zone", f'zone token is for zone "{claims.zone}", not "{zone}"')
        if self._is_revoked is not None and self._is_revoked(claims.jti):
            return AuthFailure("revoked", f"zone token {claims.jti[:64]!r} for zone {zone!r} has been revoked")
        return None
