"""Data plane tokens: JWTs (RS256) that prove a proxy's identity to its zone, with Kuma's claims and checks.

Claims are Kuma's `DataplaneClaims`: `Name` (empty: any name), `Mesh`, `Tags` (tag -> allowed values; a proxy
must carry every tag named, with only allowed values), `Type` (empty: any; `dataplane`, `gateway`,
`ingress`, `egress`), and the registered `exp`, `iat`, `jti`. Each mesh has its own signing keys (Kuma's Secret
`dataplane-token-signing-key-<mesh>-<kid>`), so a token for one mesh never verifies in another. No I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa

from meshgate.auth.jwt import KeySet, TokenError, decode, issue

__all__ = ["PROXY_TYPES", "DataplaneClaims", "check_identity", "issue_dataplane_token", "verify_dataplane_token"]

PROXY_TYPES: Final = ("dataplane", "gateway", "ingress", "egress")
_NAME = "dataplane token"


@dataclass(frozen=True, slots=True)
class DataplaneClaims:
    name: str
    mesh: str
    tags: Mapping[str, tuple[str, ...]]
    type: str
    expires_at: int
    issued_at: int
    jti: str


def issue_dataplane_token(
    key: rsa.RSAPrivateKey,
    kid: str,
    *,
    mesh: str,
    name: str = "",
    tags: Mapping[str, Sequence[str]] | None = None,
    proxy_type: str = "",
    valid_for: float,
    now: float,
) -> str:
    if not mesh:
        raise ValueError("mesh must not be empty")
    claims = {
        "Name": name,
        "Mesh": mesh,
        "Tags": {k: list(v) for k, v in sorted((tags or {}).items())},
        "Type": proxy_type,
    }
    return issue(key, kid, claims, valid_for, now)


def verify_dataplane_token(keys: KeySet, token: str, now: float) -> DataplaneClaims:
    """The claims of a token one of `keys` (the mesh's) signed and that has not expired; TokenError otherwise."""
    _, payload = decode(token, keys, now, name=_NAME, subject="Name")
    return _claims(payload)


def _claims(payload: dict[str, Any]) -> DataplaneClaims:
    name, mesh, tags, kind = (
        payload.get("Name", ""),
        payload.get("Mesh"),
        payload.get("Tags") or {},
        payload.get("Type"),
    )
    if not isinstance(mesh, str) or not mesh:
        raise TokenError("malformed", "dataplane token has no Mesh claim")
    if not isinstance(name, str) or not isinstance(kind or "", str):
        raise TokenError("malformed", "dataplane token Name and Type claims must be strings")
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v) for k, v in tags.items()
    ):
        raise TokenError("malformed", "dataplane token Tags claim must map tag names to lists of strings")
    return DataplaneClaims(
        name,
        mesh,
        {k: tuple(v) for k, v in tags.items()},
        str(kind or ""),
        payload["exp"],
        payload.get("iat", 0),
        str(payload.get("jti", "")),
    )


def check_identity(
    claims: DataplaneClaims, *, mesh: str, name: str, tags: Mapping[str, Sequence[str]], proxy_type: str
) -> None:
    """Raises TokenError("wrong_identity") unless the proxy (mesh, name, its tags, its type) is one the
    token vouches for, with Kuma's messages (pkg/xds/auth/universal/authenticator.go)."""
    if claims.mesh != mesh:
        raise TokenError(
            "wrong_identity", f"proxy mesh from requestor: {mesh} is different than in token: {claims.mesh}"
        )
    if claims.name and claims.name != name:
        raise TokenError(
            "wrong_identity", f"proxy name from requestor: {name} is different than in token: {claims.name}"
        )
    if claims.type and claims.type != proxy_type:
        raise TokenError(
            "wrong_identity", f"proxy type from requestor: {proxy_type} is different than in token: {claims.type}"
        )
    for tag, allowed in sorted(claims.tags.items()):
        values = tags.get(tag)
        if not values:
            raise TokenError("wrong_identity", f"dataplane has no tag {tag!r} required by the token")
        for value in values:
            if value not in allowed:
                raise TokenError(
                    "wrong_identity",
                    f"dataplane contains tag {tag!r} with value {value!r} which is not allowed with this token."
                    f" Allowed values in token are {list(allowed)}",
                )
