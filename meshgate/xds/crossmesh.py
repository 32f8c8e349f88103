"""`CrossMesh`: what cross-mesh gateway traffic needs beyond one mesh, and its TLS contexts (gateway.md, "Cross-mesh").

Kuma 2.7 (`gateway/cross_mesh.go`, `xds/envoy/tls`): a `crossMesh: true` HTTP listener of a builtin gateway
is reached by proxies of other meshes at its `.mesh` name, over mTLS on the hop between the client's Envoy
and the gateway's Envoy.

- **Gateway side.** The listener's filter chain matches TLS only (a plaintext client matches no chain and is
  disconnected) and requires a client certificate that chains to the builtin CA of any mesh with mTLS
  enabled and carries a SPIFFE URI SAN. It presents a leaf of the gateway's mesh for the gateway's service,
  with the listener's cross-mesh names as DNS SANs.
- **Client side.** A proxy of mesh A gets, per cross-mesh name of another mesh, a listener on that name's
  VIP and port (an HTTP connection manager with one catch-all route) whose cluster holds the gateway
  Dataplanes of the target mesh that serve the MeshGateway (address `networking.address`, port the listener
  port). The cluster's TLS presents mesh A's leaf for the client's service, sends the cross-mesh name as SNI,
  and trusts only the target mesh's CA for the SAN `spiffe://<target mesh>/<gateway service>`.

Kuma differs in transport: it sends certificates over SDS and, across zones, routes through zone ingress;
meshgate inlines them (no SDS subscription) and uses the gateway Dataplanes' addresses directly, local zone
first (the same priorities as any cluster). Pure: the caller passes CAs parsed from the zone's Secrets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from meshgate.dns.names import cross_mesh_name
from meshgate.mtls import CertificateAuthority, Leaf, LeafCache, spiffe_id
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource
from meshgate.resources.selectors import select_gateway_for
from meshgate.xds.clusters import Endpoint, pack
from meshgate.xds.gateway import is_builtin_gateway

__all__ = ["CrossMesh", "downstream_mtls", "upstream_mtls"]

_TLS_SOCKET = "envoy.transport_sockets.tls"
_SPIFFE_PREFIX = "spiffe://"
# Cross-mesh HTTP may be HTTP/2 or HTTP/1.1; the gateway's connection manager picks by ALPN.
_ALPN = ("h2", "http/1.1")
_UPSTREAM_ALPN = ("http/1.1",)


class CrossMesh:
    """The builtin CAs of every mesh with mTLS enabled, and where each mesh's MeshGateways run.

    `cas`: mesh -> its CA (only meshes whose enabled backend is builtin and whose CA Secrets are readable).
    `gateways` and `dataplanes`: of any meshes; a builtin gateway Dataplane serves the one MeshGateway that
    `select_gateway_for` picks for it. `zone`: the local zone (Dataplanes without `kuma.io/zone` are in it).
    `domain`: the `.mesh` DNS domain. `leaves`: a cache kept across regenerations (a new one when omitted).
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

    def trusted(self) -> bytes:
        """Every mesh CA certificate, in mesh order: whom a crossMesh listener accepts clients from."""
        return b"".join(_line_end(ca.cert_pem) for ca in self.cas.values())

    @property
    def leaves(self) -> LeafCache:
        """The zone's leaf cache: sidecar identities (`sds.MeshTls`) are issued from it too."""
        return self._leaves

    def leaf(self, mesh: str, service: str, dns_sans: Sequence[str] = ()) -> Leaf:
        """`mesh`'s leaf for `service` (the caller checks `enabled(mesh)` first)."""
        return self._leaves.leaf(self.cas[mesh], mesh, service, dns_sans, now=self._now)

    def endpoints(self, mesh: str, gateway: str, port: int) -> list[Endpoint]:
        """The gateway Dataplanes of `mesh` serving MeshGateway `gateway`, each at `address:port`."""
        out = []
        for dp in self._served.get((mesh, gateway), []):
            zone = dp.meta.labels.get(LABEL_ZONE) or self.zone
            address = str(dp.spec.networking.address)  # type: ignore[attr-defined]
            out.append(Endpoint(address, port, zone, {}, healthy=True))
        return sorted(out, key=lambda e: (e.zone, e.address))

    def listener_names(self, gateway: Resource, port: int) -> tuple[str, ...]:
        """The cross-mesh names of `gateway`'s crossMesh listeners on `port` (its certificate's DNS SANs)."""
        display = gateway.meta.labels.get(LABEL_DISPLAY_NAME) or gateway.meta.name
        spec: Any = gateway.spec
        names = {
            cross_mesh_name(listener.hostname, display, gateway.meta.mesh, self.domain)
            for listener in spec.conf.listeners
            if listener.crossMesh and listener.port == port
        }
        return tuple(sorted(names))


def _line_end(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


def _certificate(leaf: Leaf) -> common_pb2.TlsCertificate:
    return common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=leaf.cert_pem),
        private_key=base_pb2.DataSource(inline_bytes=leaf.key_pem),
    )


def _san(matcher: string_pb2.StringMatcher) -> common_pb2.SubjectAltNameMatcher:
    return common_pb2.SubjectAltNameMatcher(san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=matcher)


def _common(leaf: Leaf, trusted: bytes, san: string_pb2.StringMatcher, alpn: Sequence[str]) -> Any:
    common = tls_pb2.CommonTlsContext()
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.alpn_protocols.extend(alpn)
    common.tls_certificates.append(_certificate(leaf))
    common.validation_context.trusted_ca.inline_bytes = trusted
    common.validation_context.match_typed_subject_alt_names.append(_san(san))
    return common


def downstream_mtls(leaf: Leaf, trusted: bytes) -> base_pb2.TransportSocket:
    """The gateway side: present `leaf`, require a client certificate chaining to `trusted` with a SPIFFE id."""
    context = tls_pb2.DownstreamTlsContext(
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
        common_tls_context=_common(leaf, trusted, string_pb2.StringMatcher(prefix=_SPIFFE_PREFIX), _ALPN),
    )
    return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))


def upstream_mtls(
    leaf: Leaf, ca: CertificateAuthority, *, sni: str, mesh: str, service: str
) -> base_pb2.TransportSocket:
    """The client side: present `leaf`, send `sni`, and accept only `spiffe://<mesh>/<service>` signed by `ca`."""
    san = string_pb2.StringMatcher(exact=spiffe_id(mesh, service))
    context = tls_pb2.UpstreamTlsContext(
        sni=sni, common_tls_context=_common(leaf, _line_end(ca.cert_pem), san, _UPSTREAM_ALPN)
    )
    return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))
