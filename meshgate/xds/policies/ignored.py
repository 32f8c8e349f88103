"""The policy kinds Kuma's builtin gateway ignores (gateway.md's support table: "none"): TrafficRoute, whose
routing MeshGatewayRoute replaces on a gateway, and VirtualOutbound, whose hostnames a gateway never serves.
Their policies are reported as ignored and never applied."""

from __future__ import annotations

from meshgate.xds.policies.module import PolicyModule

__all__ = ["MODULES"]

MODULES = (PolicyModule("TrafficRoute"), PolicyModule("VirtualOutbound"))
