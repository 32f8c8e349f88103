"""`VipOutbound`: one outbound listener a zone asks `generate` to add on a `.mesh` VIP (gateway.md, "DNS and VIPs").

The zone allocates the VIPs and decides the ports (a service VIP listens on 80, a cross-mesh gateway name on its
MeshGateway listener's port); `generate` turns each into a listener `outbound:<vip>:<port>` on a delegated
gateway or ordinary Dataplane, routed exactly like a `networking.outbound` entry for the same service.

A cross-mesh name of ANOTHER mesh (kind "gateway" with `mesh` set to the gateway's mesh) is different: its
listener sends HTTP over mTLS (the client's mesh certificate, the target mesh's CA, SNI `hostname`) straight
to the gateway Dataplanes of that mesh that serve MeshGateway `gateway` (see `generate`, gateway.md
"Cross-mesh"). A kind "gateway" VipOutbound without `mesh` routes to `service` in the proxy's own mesh.

A VipOutbound checks its own fields when built and raises ValueError for a value no allocator should produce (not
an IPv4 address, a port outside 1..65535, an empty service, an unknown kind): these are caller bugs, not resources.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

__all__ = ["VIP_KINDS", "VipKind", "VipOutbound"]

VipKind = Literal["service", "gateway"]
VIP_KINDS: tuple[VipKind, ...] = ("service", "gateway")


@dataclass(frozen=True, slots=True)
class VipOutbound:
    """`vip:port` routes to the endpoints of `service` (a `kuma.io/service` value).

    `kind`: "service" for a service VIP (its protocol comes from the service's inbounds, as for any outbound);
    "gateway" for a cross-mesh MeshGateway name, whose listener is always HTTP; `service` is then the
    `kuma.io/service` of the gateway's Dataplanes. For a gateway of another mesh: `mesh` is its mesh, `gateway`
    the MeshGateway's name there, and `hostname` the cross-mesh name (the SNI, and the name its certificate
    carries). All three are set together, and only on kind "gateway".
    """

    vip: str
    port: int
    service: str
    kind: VipKind = "service"
    mesh: str = ""
    gateway: str = ""
    hostname: str = ""

    def __post_init__(self) -> None:
        try:
            ipaddress.IPv4Address(self.vip)
        except ValueError:
            raise ValueError(f"VipOutbound.vip must be an IPv4 address, not {self.vip!r}") from None
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 1 <= self.port <= 65535:
            raise ValueError(f"VipOutbound.port must be 1..65535, not {self.port!r}")
        if not self.service:
            raise ValueError("VipOutbound.service must not be empty")
        if self.kind not in VIP_KINDS:
            raise ValueError(f"VipOutbound.kind must be one of {VIP_KINDS}, not {self.kind!r}")
        target = (self.mesh, self.gateway, self.hostname)
        if any(target) and (self.kind != "gateway" or not all(target)):
            raise ValueError(f"VipOutbound mesh, gateway and hostname go together on kind 'gateway', not {target!r}")

    @property
    def cross_mesh(self) -> bool:
        """A gateway name of another mesh (`mesh` set): mTLS to that mesh's gateway Dataplanes."""
        return bool(self.mesh)

    @property
    def listener_name(self) -> str:
        """Kuma's outbound listener name; also the name of its route configuration when the service is HTTP."""
        return f"outbound:{self.vip}:{self.port}"

    def sort_key(self) -> tuple[int, int, str, str, str, str, str]:
        return (
            int(ipaddress.IPv4Address(self.vip)),
            self.port,
            self.service,
            self.kind,
            self.mesh,
            self.gateway,
            self.hostname,
        )
