"""Names as zones hold what the global sends them (meshgate.kds.ownership): a mesh-scoped resource other
than a Secret is hash-suffixed, as a Kuma 2.7 global names it for a zone with the `hash-suffix` feature."""

from __future__ import annotations

from meshgate.kds.naming import hashed_name

__all__ = ["in_zone"]


def in_zone(name: str, mesh: str = "default") -> str:
    """The name a zone stores the global's `name` in `mesh` under (its `kuma.io/display-name` is `name`)."""
    return hashed_name(mesh, name)
