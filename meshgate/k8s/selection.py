"""Kept only so that `zone_cp/provisioning.py` still imports: gateway selection lives in
`meshgate.resources.selectors`, an instance's mesh in `meshgate.k8s.instance.mesh_of`. Remove once no module
imports this one.
"""

from __future__ import annotations

from meshgate.k8s.instance import DEFAULT_MESH, mesh_of
from meshgate.resources.selectors import select_gateway

__all__ = ["DEFAULT_MESH", "mesh_of", "select_gateway"]
