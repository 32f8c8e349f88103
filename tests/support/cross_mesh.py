"""Resources of the cross-mesh scenario shared by the unit, adapter and e2e tests (gateway.md, "Cross-mesh").

Mesh `b` runs MeshGateway `edge` with one crossMesh HTTP listener, a route sending everything to `echo`, the
builtin gateway Dataplane `edge-1` and the Dataplane `echo-1`; mesh `a` has the delegated gateway `kong-1`, the
client. Both meshes enable a builtin mTLS backend named `ca-1`, so a gateway reaches a service only when a
TrafficPermission allows it (`allow_all`).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "NAME",
    "allow_all",
    "echo_dataplane",
    "edge_dataplane",
    "edge_gateway",
    "kong",
    "mesh_b",
    "mtls_mesh",
    "route_to_echo",
]

# The `.mesh` name of edge's crossMesh listener (no hostname): internal.<gateway>.<mesh>.mesh.
NAME = "internal.edge.b.mesh"


def allow_all(mesh: str) -> dict[str, Any]:
    """Kuma's `allow-all` TrafficPermission: with mTLS on, nothing is reachable without one."""
    return {
        "type": "TrafficPermission",
        "mesh": mesh,
        "name": "allow-all",
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}],
    }


def mtls_mesh(name: str, *, enabled: bool = True) -> dict[str, Any]:
    mtls: dict[str, Any] = {"backends": [{"name": "ca-1", "type": "builtin"}]}
    if enabled:
        mtls["enabledBackend"] = "ca-1"
    return {"type": "Mesh", "name": name, "mtls": mtls}


def edge_gateway(port: int) -> dict[str, Any]:
    return {
        "type": "MeshGateway",
        "mesh": "b",
        "name": "edge",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {"listeners": [{"port": port, "protocol": "HTTP", "crossMesh": True}]},
    }


def route_to_echo() -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "b",
        "name": "to-echo",
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": "/"}}],
                        "backends": [{"destination": {"kuma.io/service": "echo"}}],
                    }
                ]
            }
        },
    }


def edge_dataplane(address: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "b",
        "name": "edge-1",
        "networking": {"address": address, "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
    }


def echo_dataplane(address: str, port: int, *, service_port: int | None = None) -> dict[str, Any]:
    """`port`: the inbound; `service_port`: the application behind its sidecar (meshgate-dp), if it has one."""
    inbound: dict[str, Any] = {"port": port, "tags": {"kuma.io/service": "echo", "kuma.io/protocol": "http"}}
    if service_port is not None:
        inbound["servicePort"] = service_port
    return {
        "type": "Dataplane",
        "mesh": "b",
        "name": "echo-1",
        "networking": {"address": address, "inbound": [inbound]},
    }


def kong(address: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": "a",
        "name": "kong-1",
        "networking": {"address": address, "gateway": {"type": "DELEGATED", "tags": {"kuma.io/service": "kong"}}},
    }


def mesh_b(
    *, gateway_port: int, gateway_address: str, echo_address: str, echo_port: int, echo_service_port: int | None = None
) -> list[dict[str, Any]]:
    return [
        edge_gateway(gateway_port),
        route_to_echo(),
        edge_dataplane(gateway_address),
        echo_dataplane(echo_address, echo_port, service_port=echo_service_port),
    ]
