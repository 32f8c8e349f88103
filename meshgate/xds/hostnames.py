"""Gateway hostnames: containment and Kuma's "most exact first" order (`gateway/match/hostnames.go`).

A hostname is `*`, `a.b` or `*.a.b`; `""` means `*`. `contains(a, b)` holds when every name `b` matches
is also matched by `a`: `*` contains everything, `*.a.b` contains `x.a.b`, `y.x.a.b` and `*.x.a.b` but not
`a.b`, and a plain name contains only itself. Envoy's domain and SNI wildcards agree: `*.a.b` matches
any number of leading labels.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

__all__ = ["WILDCARD", "by_exactness", "containers", "contains", "most_exact", "normalize"]

WILDCARD = "*"


def normalize(hostname: str) -> str:
    return hostname or WILDCARD


# Hostnames repeat across listeners, routes and proxies; parsing each once keeps binding linear.
@lru_cache(maxsize=4096)
def _split(hostname: str) -> tuple[str, tuple[str, ...]]:
    first, *rest = normalize(hostname).split(".")
    return first, tuple(rest)


def contains(outer: str, inner: str) -> bool:
    """Whether every host that `inner` matches is matched by `outer` (both may be wildcards)."""
    o_host, o_parts = _split(outer)
    i_host, i_parts = _split(inner)
    if len(o_parts) > len(i_parts):
        return False
    if o_parts and i_parts[len(i_parts) - len(o_parts) :] != o_parts:
        return False
    if o_host == WILDCARD:
        return True
    return o_host == i_host and len(o_parts) == len(i_parts)


def containers(hostname: str) -> tuple[str, ...]:
    """Every hostname that contains `hostname`: itself, the wildcards over each of its suffixes, and `*`.

    `a.b.c` -> (`a.b.c`, `*.b.c`, `*.c`, `*`). Lets a caller look names up instead of testing each pair.
    """
    _, parts = _split(hostname)
    wildcards = tuple(f"{WILDCARD}." + ".".join(parts[i:]) for i in range(len(parts)))
    return tuple(dict.fromkeys((normalize(hostname), *wildcards, WILDCARD)))


def _exactness_key(hostname: str) -> tuple[int, int, str]:
    host, parts = _split(hostname)
    if host != WILDCARD:
        return (0, 0, normalize(hostname))
    # Among wildcards, the longer domain is the more exact: *.a.b.c before *.b.c before *.
    return (1, -len(parts), normalize(hostname))


def by_exactness(hostnames: Iterable[str]) -> list[str]:
    """Exact names first (sorted), then wildcards with more labels first, `*` last (Kuma's order)."""
    return sorted((normalize(h) for h in hostnames), key=_exactness_key)


def most_exact(hostnames: Iterable[str]) -> str:
    """`by_exactness(hostnames)[0]` without sorting the rest: a gateway asks this once per virtual host."""
    return min((normalize(h) for h in hostnames), key=_exactness_key)
