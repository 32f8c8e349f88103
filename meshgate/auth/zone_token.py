"""Zone tokens: JWTs (RS256) the global signs and a zone presents on every KDS call, as in Kong Mesh.

A token's claims are Kong Mesh's: `Zone` (the zone's name), `Scope` (a list, `cp` lets a zone control plane
connect), and the registered `exp`, `iat` and `jti`. The header names the signing key with `kid` (the key's
serial number, "1": the global has one key, created once and never replaced). Only RS256 is accepted: a
token whose header says `none` or `HS256` is malformed, never verified with some other algorithm.

The module does no I/O: keys come in as PEM, time comes in as `now` (UNIX seconds).

Error tree::

    TokenError               a token this key does not vouch for; `code` is one of REASONS, str() says why
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

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

KEY_ID: Final = "1"
# What a zone token may allow: `cp` a zone control plane (KDS); `ingress` and `egress` as in Kuma.
SCOPES: Final = frozenset({"cp", "ingress", "egress"})
# TokenError codes: short and fixed, so a metric labelled by them stays small.
REASONS: Final = ("malformed", "bad_signature", "expired", "missing_scope")
_KEY_BITS = 2048
_HEADER: Final = {"alg": "RS256", "kid": KEY_ID, "typ": "JWT"}


class TokenError(Exception):
    """A token this key does not vouch for: `code` is one of REASONS, the message says why in words."""

    def __init__(self, code: str, message: str) -> None:
        assert code in REASONS, code
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Claims:
    zone: str
    scope: tuple[str, ...]
    expires_at: int  # UNIX seconds
    issued_at: int
    jti: str


def generate_key_pem() -> bytes:
    """A new RSA-2048 signing key as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def private_key(key_pem: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"a zone token signing key must be RSA, got {type(key).__name__}")
    return key


def public_key(key_pem: bytes) -> rsa.RSAPublicKey:
    """The public half of a private signing key's PEM: what verifies tokens."""
    return private_key(key_pem).public_key()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # JWTs drop the padding (RFC 7515 section 2); the strict decoder wants it back, and nothing outside the alphabet.
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (ValueError, binascii.Error) as exc:
        raise TokenError("malformed", f"zone token {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TokenError("malformed", f"zone token {what} is not a JSON object")
    return value


def issue(key_pem: bytes, zone: str, scope: Sequence[str], valid_for: float, now: float, jti: str = "") -> str:
    """A token for `zone` with `scope`, valid `valid_for` seconds from `now`; signed with `key_pem`."""
    if not zone:
        raise ValueError("zone must not be empty")
    if valid_for <= 0:
        raise ValueError("valid_for must be positive")
    issued_at = int(now)
    payload = {
        "Zone": zone,
        "Scope": list(scope),
        "exp": issued_at + int(valid_for),
        "iat": issued_at,
        "jti": jti or str(uuid.uuid4()),
    }
    signing_input = ".".join(
        _b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (_HEADER, payload)
    )
    signature = private_key(key_pem).sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64encode(signature)}"


def verify(key: rsa.RSAPublicKey, token: str, now: float, *, scope: str = "cp") -> Claims:
    """The claims of `token` if `key` signed it, it has not expired at `now`, and it grants `scope`;
    TokenError otherwise. Checked in that order, so an expired forgery is reported as a bad signature."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenError("malformed", "zone token is not a JWT (expected three dot-separated parts)")
    header = _json(parts[0], "header")
    if header.get("alg") != "RS256":
        raise TokenError("malformed", f"zone token algorithm must be RS256, got {header.get('alg')!r}")
    if header.get("kid") != KEY_ID:
        raise TokenError("bad_signature", f"zone token is signed by an unknown key (kid {header.get('kid')!r})")
    try:
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise TokenError("malformed", "zone token signature is not base64url") from exc
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, UnicodeEncodeError) as exc:
        raise TokenError("bad_signature", "zone token signature does not match this global's signing key") from exc
    claims = _claims(_json(parts[1], "payload"))
    if now >= claims.expires_at:
        raise TokenError("expired", f"zone token for zone {claims.zone!r} expired at {claims.expires_at} (UNIX time)")
    if scope not in claims.scope:
        raise TokenError(
            "missing_scope", f"zone token for zone {claims.zone!r} lacks scope {scope!r} (has {list(claims.scope)})"
        )
    return claims


def _claims(payload: dict[str, Any]) -> Claims:
    zone, scope, exp, iat = payload.get("Zone"), payload.get("Scope"), payload.get("exp"), payload.get("iat", 0)
    if not isinstance(zone, str) or not zone:
        raise TokenError("malformed", "zone token has no Zone claim")
    if not isinstance(scope, list) or not all(isinstance(s, str) for s in scope):
        raise TokenError("malformed", "zone token Scope claim must be a list of strings")
    # bool is an int in Python; a JSON `true` is no timestamp.
    if not isinstance(exp, int) or isinstance(exp, bool) or not isinstance(iat, int) or isinstance(iat, bool):
        raise TokenError("malformed", "zone token exp and iat claims must be integers (UNIX seconds)")
    return Claims(zone, tuple(scope), exp, iat, str(payload.get("jti", "")))


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
