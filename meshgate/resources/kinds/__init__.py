"""One module per resource kind, each with its descriptor (`DESCRIPTOR`) and its validator (`validate`).

The package itself holds each kind's name, the one spelling every descriptor and every other module uses
(`kinds.MESH`), so code that names a kind never writes it out as a string. This file imports nothing: a
kind module, or a module the kind modules import (meshgate.k8s), can name kinds without an import cycle.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CIRCUIT_BREAKER",
    "DATAPLANE",
    "DATAPLANE_INSIGHT",
    "EXTERNAL_SERVICE",
    "FAULT_INJECTION",
    "HEALTH_CHECK",
    "MESH",
    "MESH_GATEWAY",
    "MESH_GATEWAY_INSTANCE",
    "MESH_GATEWAY_ROUTE",
    "PROXY_TEMPLATE",
    "RATE_LIMIT",
    "RETRY",
    "SECRET",
    "TIMEOUT",
    "TRAFFIC_LOG",
    "TRAFFIC_PERMISSION",
    "TRAFFIC_ROUTE",
    "TRAFFIC_TRACE",
    "VIRTUAL_OUTBOUND",
    "ZONE",
    "ZONE_EGRESS",
    "ZONE_INGRESS",
]

MESH: Final = "Mesh"
SECRET: Final = "Secret"  # noqa: S105 (a kind name, not a secret)
MESH_GATEWAY: Final = "MeshGateway"
MESH_GATEWAY_ROUTE: Final = "MeshGatewayRoute"
DATAPLANE: Final = "Dataplane"
ZONE: Final = "Zone"
MESH_GATEWAY_INSTANCE: Final = "MeshGatewayInstance"
ZONE_INGRESS: Final = "ZoneIngress"
ZONE_EGRESS: Final = "ZoneEgress"
DATAPLANE_INSIGHT: Final = "DataplaneInsight"

# Kuma 2.7's source/destination policies and the kinds that, like them, Kuma sends from the global to zones.
TIMEOUT: Final = "Timeout"
RETRY: Final = "Retry"
CIRCUIT_BREAKER: Final = "CircuitBreaker"
HEALTH_CHECK: Final = "HealthCheck"
RATE_LIMIT: Final = "RateLimit"
FAULT_INJECTION: Final = "FaultInjection"
TRAFFIC_PERMISSION: Final = "TrafficPermission"
TRAFFIC_LOG: Final = "TrafficLog"
TRAFFIC_TRACE: Final = "TrafficTrace"
PROXY_TEMPLATE: Final = "ProxyTemplate"
EXTERNAL_SERVICE: Final = "ExternalService"
TRAFFIC_ROUTE: Final = "TrafficRoute"
VIRTUAL_OUTBOUND: Final = "VirtualOutbound"
