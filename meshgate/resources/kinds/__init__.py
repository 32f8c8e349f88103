"""One module per resource kind, each with its descriptor (`DESCRIPTOR`) and its validator (`validate`).

The package itself holds each kind's name, the one spelling every descriptor and every other module uses
(`kinds.MESH`), so code that names a kind never writes it out as a string. This file imports nothing: a
kind module, or a module the kind modules import (meshgate.k8s), can name kinds without an import cycle.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DATAPLANE",
    "MESH",
    "MESH_GATEWAY",
    "MESH_GATEWAY_INSTANCE",
    "MESH_GATEWAY_ROUTE",
    "SECRET",
    "ZONE",
]

MESH: Final = "Mesh"
SECRET: Final = "Secret"  # noqa: S105 (a kind name, not a secret)
MESH_GATEWAY: Final = "MeshGateway"
MESH_GATEWAY_ROUTE: Final = "MeshGatewayRoute"
DATAPLANE: Final = "Dataplane"
ZONE: Final = "Zone"
MESH_GATEWAY_INSTANCE: Final = "MeshGatewayInstance"
