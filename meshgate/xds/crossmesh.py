"""`CrossMesh`: what cross-mesh gateway traffic needs beyond one mesh (gateway.md, "Cross-mesh").

Kuma 2.7 (`gateway/cross_mesh.go`, `xds/envoy/tls`): a `crossMesh: true` HTTP listener of a builtin gateway
is reached by proxies of other meshes at its `.mesh` name, over mTLS on the hop between the client's Envoy
and the gateway's Envoy.

- **Gateway side.** The listener's filter chain matches TLS only (a plaintext client matches no chain and is
  disconnected) and requires a client certificate that chains to the builtin CA of any mesh with mTLS
  enabled and carries a SPIFFE URI SAN. It presents the gateway's own identity in its mesh.
- **Client side.** A proxy of mesh A gets, per cross-mesh name of another mesh, a listener on that name's
  VIP and port (an HTTP connection manager with one catch-all route) whose cluster holds the gateway
  Dataplanes of the target mesh that serve the MeshGateway (address `networking.address`, port the listener
  port). The cluster's TLS presents the client's identity in mesh A, sends the cross-mesh name as SNI,
  and trusts only the target mesh's CA for the SAN `spiffe://<target mesh>/<gateway service>`.

The TLS contexts are built by `meshgate.xds.sds.MeshTls` (`downstream_any_mesh`, `upstream_cross_mesh`) and
their certificates travel over SDS, as Kuma's do: the gateway presents its own identity
(`identity_cert:secret:<mesh>`) and trusts every mesh's CA (`mesh_ca:secret:all`); the client presents its
identity and trusts the target mesh's CA (`mesh_ca:secret:<target mesh>`). Unlike Kuma, the client reaches
the gateway Dataplanes' addresses directly, local zone first (the same priorities as any cluster), not through
zone ingress. Pure: the caller passes CAs parsed from the zone's Secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from meshgate.mtls import CertificateAuthority, LeafCache
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_ZONE, Resource
from meshgate.resources.selectors import select_gateway_for
from meshgate.xds.clusters import Endpoint
from meshgate.xds.gateway import is_builtin_gateway

__all__ = ["CrossMesh"]


class CrossMesh:
    """The builtin CAs of every mesh with mTLS enabled, and where each mesh's MeshGateways run.

    `cas`: mesh -> its CA (only meshes whose enabled backend is builtin and whose CA Secrets are readable).
    `gateways` and `dataplanes`: of any meshes; a builtin gateway Dataplane serves the one MeshGateway that
    `select_gateway_for` picks for it. `zone`: the local zone (Dataplanes without `kuma.io/zone` are in it).
    `domain`: the `.mesh` DNS domain. `leaves`: a cache kept across regenerations (a new one when omitted),
    from which every proxy's identity is issued (`sds.MeshTls`).
    """

    def __init__(
        self,
        cas: Mapping[str, CertificateAuthority],
        *,
        gateways: Iterable[Resource] = (),
        dataplanes: Iterable[Resource] = (),
        zone: str,
        domain: str = "mesh",
        leaves: LeafCache | None = None,
        now: datetime | None = None,
    ) -> None:
        self.cas = dict(sorted(cas.items()))
        self.zone = zone
        self.domain = domain.lower().strip(".")
        self._leaves = leaves if leaves is not None else LeafCache()
        self._now = now
        by_mesh: dict[str, list[Resource]] = {}
        for gateway in gateways:
            by_mesh.setdefault(gateway.meta.mesh, []).append(gateway)
        self._served: dict[tuple[str, str], list[Resource]] = {}
        for dp in sorted(dataplanes, key=lambda d: (d.meta.mesh, d.meta.name)):
            if dp.kind != kinds.DATAPLANE or dp.meta.mesh not in by_mesh or not is_builtin_gateway(dp):
                continue
            chosen = select_gateway_for(dp, by_mesh[dp.meta.mesh])
            if chosen is not None:
                self._served.setdefault((dp.meta.mesh, chosen.meta.name), []).append(dp)

    def enabled(self, mesh: str) -> bool:
        return mesh in self.cas

    @property
    def leaves(self) -> LeafCache:
        """The zone's leaf cache: sidecar identities (`sds.MeshTls`) are issued from it too."""
        return self._leaves

    def endpoints(self, mesh: str, gateway: str, port: int) -> list[Endpoint]:
        """The gateway Dataplanes of `mesh` serving MeshGateway `gateway`, each at `address:port`."""
        out = []
        for dp in self._served.get((mesh, gateway), []):
            zone = dp.meta.labels.get(LABEL_ZONE) or self.zone
            address = str(dp.spec.networking.address)  # type: ignore[attr-defined]
            out.append(Endpoint(address, port, zone, {}, healthy=True))
        return sorted(out, key=lambda e: (e.zone, e.address))
