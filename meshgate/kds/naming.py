"""KDS naming rules (Kuma 2.7): wire names `<name>.<mesh>` and hash-suffixed names.

`hashed_name` reproduces Kuma's `pkg/kds/hash`: FNV-64a over the concatenated parts, hex-encoded,
then mapped through Kubernetes' "safe" alphabet so the suffix never forms words or looks like a number.
"""

from __future__ import annotations

__all__ = ["hashed_name", "wire_name"]

_FNV64_OFFSET = 0xCBF29CE484222325
_FNV64_PRIME = 0x100000001B3
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"
_K8S_NAME_LIMIT = 253
_SUFFIX_LEN = 1 + 16  # a dash and 16 characters (8 bytes, hex encoded)


def wire_name(name: str, mesh: str) -> str:
    """The `Resource.name` on a KDS stream. For kinds that are not mesh-scoped the mesh part is empty."""
    return f"{name}.{mesh}"


def _fnv64a(parts: tuple[str, ...]) -> bytes:
    h = _FNV64_OFFSET
    for part in parts:
        for byte in part.encode():
            h ^= byte
            h = (h * _FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h.to_bytes(8, "big")


def _safe_encode(text: str) -> str:
    return "".join(_SAFE_ALPHANUMS[ord(c) % len(_SAFE_ALPHANUMS)] for c in text)


def _shorten(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[:limit]


def hashed_name(mesh: str, name: str, *extra: str) -> str:
    """`<name>-<hash>`; global to zone hashes (mesh, name), zone to global adds (zone, namespace)."""
    digest = _safe_encode(_fnv64a((mesh, name, *extra)).hex())
    return f"{_shorten(name, _K8S_NAME_LIMIT - _SUFFIX_LEN)}-{digest}"
