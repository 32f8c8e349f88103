"""Zone tokens: JWTs (RS256) the global signs and a zone presents on every KDS call, as in Kong Mesh.

A token's claims are Kong Mesh's: `Zone` (the zone's name), `Scope` (a list, `cp` lets a zone control plane
connect), and the registered `exp`, `iat` and `jti` (the id a revocation names). The header's `kid` is the
serial number of the signing key (`zone-token-signing-key-<kid>`); `meshgate.auth.jwt` does the signing.

The module does no I/O: keys come in as PEM or a `KeySet`, time comes in as `now` (UNIX seconds).

Error tree::

    TokenError               a token these keys do not vouch for; `code` is one of REASONS, str() says why
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from meshgate.auth import jwt
from meshgate.auth.jwt import REASONS as REASONS
from meshgate.auth.jwt import KeySet, StaticKeys, TokenError, decode, generate_key_pem, load_private_key

__all__ = [
    "KEY_ID",
    "REASONS",
    "SCOPES",
    "Claims",
    "TokenError",
    "generate_key_pem",
    "issue",
    "parse_valid_for",
    "private_key",
    "public_key",
    "verify",
]

# The serial number of the first signing key; rotation adds 2, 3, ...
KEY_ID: Final = "1"
# What a zone token may allow: `cp` a zone control plane (KDS); `ingress` and `egress` as in Kuma.
SCOPES: Final = frozenset({"cp", "ingress", "egress"})
_NAME = "zone token"


@dataclass(frozen=True, slots=True)
class Claims:
    zone: str
    scope: tuple[str, ...]
    expires_at: int  # UNIX seconds
    issued_at: int
    jti: str


def private_key(key_pem: bytes) -> rsa.RSAPrivateKey:
    return load_private_key(key_pem)


def public_key(key_pem: bytes) -> rsa.RSAPublicKey:
    """The public half of a private signing key's PEM: what verifies tokens."""
    return private_key(key_pem).public_key()


def issue(
    key_pem: bytes | rsa.RSAPrivateKey,
    zone: str,
    scope: Sequence[str],
    valid_for: float,
    now: float,
    jti: str = "",
    *,
    kid: str = KEY_ID,
) -> str:
    """A token for `zone` with `scope`, valid `valid_for` seconds from `now`; signed with key `kid`."""
    if not zone:
        raise ValueError("zone must not be empty")
    key = key_pem if isinstance(key_pem, rsa.RSAPrivateKey) else private_key(key_pem)
    return jwt.issue(key, kid, {"Zone": zone, "Scope": list(scope)}, valid_for, now, jti)


def verify(keys: rsa.RSAPublicKey | KeySet, token: str, now: float, *, scope: str = "cp") -> Claims:
    """The claims of `token` if one of `keys` signed it (a bare public key is the first key, kid "1"), it has
    not expired at `now`, and it grants `scope`; TokenError otherwise."""
    keyset = StaticKeys({KEY_ID: keys}) if isinstance(keys, rsa.RSAPublicKey) else keys
    _, payload = decode(token, keyset, now, name=_NAME, subject="Zone")
    claims = _claims(payload)
    if scope not in claims.scope:
        raise TokenError(
            "missing_scope", f"zone token for zone {claims.zone!r} lacks scope {scope!r} (has {list(claims.scope)})"
        )
    return claims


def _claims(payload: dict[str, Any]) -> Claims:
    zone, scope = payload.get("Zone"), payload.get("Scope")
    if not isinstance(zone, str) or not zone:
        raise TokenError("malformed", "zone token has no Zone claim")
    if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
        raise TokenError("malformed", "zone token Scope claim must be a list of strings")
    return Claims(zone, tuple(scope), payload["exp"], payload.get("iat", 0), str(payload.get("jti", "")))


# Kuma's duration syntax for token lifetimes: Go's units from seconds up, plus days ("720h", "30d", "1h30m").
_DURATION_PART = re.compile(r"([0-9]+)(d|h|m|s)")
_UNIT_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
# Ten times the default lifetime (10 years): a bound, so `exp` stays a date every JWT library can read.
MAX_VALID_FOR_SECONDS = 100 * 365 * 86400


def parse_valid_for(text: str) -> int:
    """Seconds in a duration such as "720h", "30d" or "1h30m"; ValueError says what is wrong."""
    if not text or not re.fullmatch(r"(?:[0-9]+(?:d|h|m|s))+", text):
        raise ValueError(f"invalid duration {text!r}: expected a number and a unit (d, h, m or s), e.g. 720h")
    parts = _DURATION_PART.findall(text)
    # Checked before int(): a number past Python's int-string limit would be a ValueError without a reason,
    # and one just under it would give an `exp` claim no JSON encoder takes.
    if any(len(n) > 12 for n, _ in parts):
        raise ValueError(f"invalid duration: at most {MAX_VALID_FOR_SECONDS // 86400}d")
    seconds = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds > MAX_VALID_FOR_SECONDS:
        raise ValueError(f"invalid duration {text!r}: at most {MAX_VALID_FOR_SECONDS // 86400}d")
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: must be longer than zero")
    return seconds
