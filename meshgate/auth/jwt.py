"""RS256 JSON Web Tokens: the one encoder and verifier behind zone, user and data plane tokens. No I/O.

A token's header names its signing key with `kid` (the key's serial number, as in Kuma: the signing key
`user-token-signing-key-2` signs with kid "2"). Only RS256 is accepted: a header that says `none` or `HS256`
is malformed, never verified with some other algorithm. Keys come in through a `KeySet`, so a verifier can
accept every key still in service while signing keys rotate.

Error tree::

    TokenError        a token these keys do not vouch for; `code` is one of REASONS, str() says why in words
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any, Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

__all__ = [
    "REASONS",
    "KeySet",
    "StaticKeys",
    "TokenError",
    "decode",
    "encode",
    "generate_key_pem",
    "issue",
    "load_private_key",
    "unverified_payload",
]

# TokenError codes: short and fixed, so a metric labelled by them stays small.
REASONS: Final = ("malformed", "bad_signature", "expired", "missing_scope", "revoked", "wrong_identity")
_KEY_BITS = 2048
# A token is a header line, not a document: anything longer is refused before any parsing.
MAX_TOKEN_BYTES: Final = 16 * 1024


class TokenError(Exception):
    """A token these keys do not vouch for: `code` is one of REASONS, the message says why in words."""

    def __init__(self, code: str, message: str) -> None:
        assert code in REASONS, code
        self.code = code
        super().__init__(message)


class KeySet(Protocol):
    """The public keys a verifier accepts, by `kid`; None for a key that is unknown or retired."""

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None: ...


class StaticKeys:
    """A KeySet held in memory: {kid: public key}."""

    def __init__(self, keys: Mapping[str, rsa.RSAPublicKey] | None = None) -> None:
        self.keys: dict[str, rsa.RSAPublicKey] = dict(keys or {})

    def public_key(self, kid: str) -> rsa.RSAPublicKey | None:
        return self.keys.get(kid)


def generate_key_pem() -> bytes:
    """A new RSA-2048 signing key as unencrypted PKCS#8 PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=_KEY_BITS)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(key_pem: bytes) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#8, or PKCS#1 `RSA PRIVATE KEY` as Kuma writes its signing keys)."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"a token signing key must be RSA, got {type(key).__name__}")
    return key


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    # JWTs drop the padding (RFC 7515 section 2); the strict decoder wants it back, and nothing outside the alphabet.
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(part: str, what: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(part))
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise TokenError("malformed", f"{name} {what} is not base64url JSON") from exc
    if not isinstance(value, dict):
        raise TokenError("malformed", f"{name} {what} is not a JSON object")
    return value


def encode(key: rsa.RSAPrivateKey, kid: str, payload: Mapping[str, Any]) -> str:
    """`payload` signed with `key`, whose serial number is `kid`."""
    header = {"alg": "RS256", "kid": kid, "typ": "JWT"}
    signing_input = ".".join(_b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload))
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64encode(signature)}"


def issue(
    key: rsa.RSAPrivateKey, kid: str, claims: Mapping[str, Any], valid_for: float, now: float, jti: str = ""
) -> str:
    """`claims` plus the registered ones every token type carries (`exp`, `iat`, `jti`: a fresh UUID unless
    given), signed with `key`; ValueError unless `valid_for` (seconds) is positive."""
    if valid_for <= 0:
        raise ValueError("valid_for must be positive")
    issued_at = int(now)
    registered = {"exp": issued_at + int(valid_for), "iat": issued_at, "jti": jti or str(uuid.uuid4())}
    return encode(key, kid, {**claims, **registered})


def unverified_payload(token: str, name: str = "token") -> dict[str, Any]:
    """The payload of `token` WITHOUT checking its signature: only for telling which key or list applies."""
    parts = token.strip().split(".")
    if len(token) > MAX_TOKEN_BYTES or len(parts) != 3:
        raise TokenError("malformed", f"{name} is not a JWT (expected three dot-separated parts)")
    return _json(parts[1], "payload", name)


def decode(
    token: str, keys: KeySet, now: float, *, name: str = "token", subject: str = ""
) -> tuple[str, dict[str, Any]]:
    """(kid, payload) of `token` if a key in `keys` signed it and it has not expired at `now`;
    TokenError otherwise. Checked in that order, so an expired forgery is reported as a bad signature.
    `name` ("zone token", "user token") starts every error message; an expired token is described by its
    `subject` claim too ("zone token for zone 'west' expired ...")."""
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenError("malformed", f"{name} is longer than {MAX_TOKEN_BYTES} bytes")
    parts = token.strip().split(".")
    if len(parts) != 3 or not all(parts):
        raise TokenError("malformed", f"{name} is not a JWT (expected three dot-separated parts)")
    header = _json(parts[0], "header", name)
    if header.get("alg") != "RS256":
        raise TokenError("malformed", f"{name} algorithm must be RS256, got {str(header.get('alg'))[:32]!r}")
    kid = header.get("kid")
    key = keys.public_key(kid) if isinstance(kid, str) else None
    if key is None:
        raise TokenError(
            "bad_signature",
            f"{name} is signed by an unknown or retired key (kid {str(kid)[:32]!r}): if the signing key was"
            " rotated, issue a new token",
        )
    try:
        signature = _b64decode(parts[2])
    except (ValueError, binascii.Error) as exc:
        raise TokenError("malformed", f"{name} signature is not base64url") from exc
    try:
        key.verify(signature, f"{parts[0]}.{parts[1]}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, UnicodeEncodeError) as exc:
        raise TokenError("bad_signature", f"{name} signature does not match this control plane's signing key") from exc
    payload = _json(parts[1], "payload", name)
    exp, iat = payload.get("exp"), payload.get("iat", 0)
    # bool is an int in Python; a JSON `true` is no timestamp.
    if not isinstance(exp, int) or isinstance(exp, bool) or not isinstance(iat, int) or isinstance(iat, bool):
        raise TokenError("malformed", f"{name} exp and iat claims must be integers (UNIX seconds)")
    if now >= exp:
        about = payload.get(subject) if subject else None
        whose = f" for {subject.lower()} {str(about)[:64]!r}" if isinstance(about, str) else ""
        raise TokenError("expired", f"{name}{whose} expired at {exp} (UNIX time)")
    return str(kid), payload
