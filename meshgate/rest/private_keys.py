"""Private keys are never served by the API, to anyone, the admin included. The rules, with no I/O.

A control plane stores private keys as mesh Secrets because zones need them (a zone signs leaf certificates
with its mesh's CA key and verifies data plane tokens with the mesh's signing keys), not because a person
does: whoever reads one can impersonate every service of the mesh or mint tokens. So:

    GET of one such Secret         403, whoever asks (`refusal`)
    lists, and any JSON answer     such a Secret keeps its name, mesh, labels and times, but its `data` is
                                   dropped (`redact`); the total and paging stay right, and
                                   `meshgatectl get secrets` still shows that the CA exists

A Secret holds a private key when its name says so (`<mesh>.ca-builtin-key-<backend>`,
`dataplane-token-signing-key-<mesh>-<n>`, as `meshgate.mtls` and `meshgate.tokens` name them) or, as a
backstop for keys users bring (a `provided` CA, say), when its data holds a PEM `PRIVATE KEY` block.
Writes are not affected: an admin may still PUT such a Secret on the global (bring your own CA).
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from meshgate.resources import kinds

__all__ = ["holds_private_key", "private_by_name", "redact", "refusal", "secret_data"]

_PRIVATE_NAME = re.compile(r"(^.+\.ca-builtin-key-.+$)|(^dataplane-token-signing-key-.+-\d+$)")
# PKCS#8 "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", PKCS#1 "RSA PRIVATE KEY", SEC1 "EC PRIVATE KEY", OpenSSH...
_PEM_PRIVATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def private_by_name(name: str) -> bool:
    return bool(_PRIVATE_NAME.match(name))


def holds_private_key(name: str, data: bytes) -> bool:
    return private_by_name(name) or bool(_PEM_PRIVATE.search(data))


def secret_data(doc: dict[str, Any]) -> bytes:
    raw = doc.get("data")
    if not isinstance(raw, str):
        return b""
    try:
        return base64.b64decode(raw, validate=False)
    except (binascii.Error, ValueError):
        return raw.encode("utf-8", "replace")


def _private_secret(doc: dict[str, Any]) -> bool:
    if doc.get("type") != kinds.SECRET:
        return False
    name = doc.get("name")
    return holds_private_key(name if isinstance(name, str) else "", secret_data(doc))


def refusal(name: str) -> str:
    return (
        f'Secret "{name}" holds a private key: private keys (mesh CA keys, token signing keys) are never served'
        " by the API, to anyone; the control plane uses them where they are"
    )


def redact(value: Any) -> tuple[Any, list[str]]:
    """`value` (decoded JSON) with the `data` of every private-key Secret inside it dropped, and their names."""
    dropped: list[str] = []

    def walk(v: Any) -> Any:
        if isinstance(v, dict):
            if _private_secret(v):
                dropped.append(str(v.get("name", "")))
                return {k: x for k, x in v.items() if k != "data"}
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(value), dropped
