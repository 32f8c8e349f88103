"""Mesh mTLS over SDS: the TLS contexts of sidecar inbounds and of clusters to mesh services, and the `Secret`
resources they name. Pure: no I/O.

Kuma 2.7 (`xds/envoy/tls/v3/tls.go`, `xds/envoy/secrets.go`, `xds/generator/secrets/generator.go`):

- A proxy's certificate is one **identity** Secret, `identity_cert:secret:<mesh>`, and the mesh CA bundle is a
  **validation context** Secret, `mesh_ca:secret:<mesh>` (`names.GetSecretName(category, "secret", mesh)`,
  joined with `:`). Listeners and clusters name them in `SdsSecretConfig`s whose config source is `ads`, so
  Envoy subscribes to them on the same delta ADS stream and no private key is inline in LDS or CDS; a new leaf
  or a new CA changes the Secrets only, and Envoy swaps them in without touching a listener or a cluster.
- **Identity.** The leaf carries `spiffe://<mesh>/<service>` of every inbound service of the Dataplane (a
  gateway: its own service) and `kuma://<tag>/<value>` of every inbound tag (`ca_issuer.NewWorkloadCert`).
- **Inbound** (`CreateDownstreamTlsContext`): requires a client certificate that chains to the mesh CA and has
  a URI SAN with prefix `spiffe://<mesh>/`.
- **Mode** (`CertificateAuthorityBackend.mode` of the enabled backend, `mtls.backends[].mode`): STRICT (the
  default) or PERMISSIVE, which only changes the inbounds (`MeshTls.permissive`, read by `inbound.py`); a
  cluster to a mesh service speaks mTLS in both. (Kuma falls back to plaintext toward a PERMISSIVE service not
  yet "TLS ready" by its ServiceInsight, `ClientSideMTLSConfigurer`; meshgate has no ServiceInsight and issues
  every proxy its certificate with its config, so it always originates mTLS.)
- **Cluster to a mesh service** (`CreateUpstreamTlsContext`, `ClientSideMTLSConfigurer`): presents the identity,
  sends SNI `SNIFromTags(tags + mesh)`: the service, then `{k=v,...}` of every other destination tag and
  `mesh=<mesh>` sorted by key (`backend{mesh=default}`), offers ALPN `kuma`, and accepts only the URI SAN
  `spiffe://<mesh>/<service>`.

`MeshTls` records which Secrets the contexts it built name (Kuma's `SecretsTracker`), and `secrets()` returns
exactly those, so a proxy that uses none gets none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from meshgate.api.mesh.v1alpha1.mesh_pb2 import CertificateAuthorityBackend
from meshgate.mtls import CertificateAuthority, LeafCache, enabled_backend, spiffe_id
from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_SERVICE
from meshgate.xds.clusters import pack
from meshgate.xds.crossmesh import CrossMesh

__all__ = [
    "KUMA_ALPN",
    "MeshTls",
    "ca_secret_name",
    "identity_secret_name",
    "kuma_id",
    "mtls_enabled",
    "mtls_permissive",
    "proxy_tls",
    "sni",
]

_TLS_SOCKET = "envoy.transport_sockets.tls"
# Kuma's ALPN on mesh mTLS (`tls.KumaALPNProtocols`): tells a PERMISSIVE inbound the TLS is the mesh's own.
KUMA_ALPN = ("kuma",)
# Cross-mesh HTTP may be HTTP/2 or HTTP/1.1: the gateway's connection manager picks by ALPN.
CROSS_MESH_ALPN = ("h2", "http/1.1")


def identity_secret_name(mesh: str) -> str:
    return f"identity_cert:secret:{mesh}"


def ca_secret_name(mesh: str) -> str:
    return f"mesh_ca:secret:{mesh}"


def kuma_id(tag: str, value: str) -> str:
    return f"kuma://{tag}/{value}"


def sni(tags: Mapping[str, str], mesh: str) -> str:
    """Kuma's `SNIFromTags(tags.WithTags("mesh", mesh))`."""
    extra = {k: v for k, v in tags.items() if k != TAG_SERVICE}
    extra["mesh"] = mesh
    return f"{tags.get(TAG_SERVICE, '')}{{{','.join(f'{k}={extra[k]}' for k in sorted(extra))}}}"


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(
        name=name,
        sds_config=config_source_pb2.ConfigSource(
            ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
        ),
    )


def _uri(matcher: string_pb2.StringMatcher) -> common_pb2.SubjectAltNameMatcher:
    return common_pb2.SubjectAltNameMatcher(san_type=common_pb2.SubjectAltNameMatcher.URI, matcher=matcher)


def _line_end(pem: bytes) -> bytes:
    return pem if pem.endswith(b"\n") else pem + b"\n"


class MeshTls:
    """One proxy's mesh mTLS in `mesh`, whose CA is `ca`.

    `services`: the identities the proxy's certificate carries, first the one it is named by (a sidecar's
    inbound services, a gateway's service); `tags`: the tags whose `kuma://` ids it carries too. `leaves`: the
    zone's leaf cache (the same leaf until it is due, so an unchanged config stays byte-equal). `permissive`:
    the enabled backend's mode is PERMISSIVE (inbounds take plaintext too)."""

    def __init__(
        self,
        mesh: str,
        ca: CertificateAuthority,
        leaves: LeafCache,
        services: Sequence[str],
        tags: Mapping[str, Sequence[str]] | None = None,
        *,
        cas: Mapping[str, CertificateAuthority] | None = None,
        permissive: bool = False,
    ) -> None:
        """`cas`: every mesh's CA (cross-mesh traffic trusts other meshes'); by default this mesh's only.
        `permissive`: the enabled backend's mode is PERMISSIVE (inbounds take plaintext too)."""
        self.mesh = mesh
        self.permissive = permissive
        self.ca = ca
        self._leaves = leaves
        self.services = tuple(dict.fromkeys(services)) or ("",)
        self._tags = {k: tuple(sorted(set(v))) for k, v in sorted((tags or {}).items())}
        self._cas = dict(cas) if cas is not None else {mesh: ca}
        self._cas[mesh] = ca
        self._used: set[str] = set()
        self._used_cas: dict[str, bytes] = {}  # CA Secret name -> its PEM bundle

    @property
    def identity(self) -> str:
        return spiffe_id(self.mesh, self.services[0])

    def trusts(self, mesh: str) -> bool:
        """Whether the CA of `mesh` is known (a cross-mesh cluster to it can be verified)."""
        return mesh in self._cas

    def _ca(self, name: str, pem: bytes) -> str:
        self._used_cas[name] = pem
        return name

    def _common(
        self, sans: Sequence[common_pb2.SubjectAltNameMatcher], ca: str | None = None
    ) -> tls_pb2.CommonTlsContext:
        identity = identity_secret_name(self.mesh)
        ca = ca or self._ca(ca_secret_name(self.mesh), _line_end(self.ca.cert_pem))
        self._used.add(identity)
        common = tls_pb2.CommonTlsContext()
        common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
        common.tls_certificate_sds_secret_configs.append(_sds(identity))
        combined = common.combined_validation_context
        combined.default_validation_context.match_typed_subject_alt_names.extend(sans)
        combined.validation_context_sds_secret_config.CopyFrom(_sds(ca))
        return common

    def downstream(self) -> base_pb2.TransportSocket:
        """A sidecar inbound's TLS: a client certificate of this mesh is required."""
        context = tls_pb2.DownstreamTlsContext(
            require_client_certificate=wrappers_pb2.BoolValue(value=True),
            common_tls_context=self._common([_uri(string_pb2.StringMatcher(prefix=f"spiffe://{self.mesh}/"))]),
        )
        return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))

    def upstream(self, tags: Mapping[str, str], *, peer: str | None = None) -> base_pb2.TransportSocket:
        """A cluster's TLS to the destination `tags` (its `kuma.io/service` is the SAN it must present, unless
        `peer` names the service the other end is instead: `zone-egress` for an ExternalService behind the
        zone's egress, Kuma's `ClientSideMTLS(..., ZoneEgressServiceName, ...)`)."""
        service = peer if peer is not None else tags.get(TAG_SERVICE, "")
        san = _uri(string_pb2.StringMatcher(exact=spiffe_id(self.mesh, service)))
        common = self._common([san])
        common.alpn_protocols.extend(KUMA_ALPN)
        context = tls_pb2.UpstreamTlsContext(sni=sni(tags, self.mesh), common_tls_context=common)
        return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))

    def downstream_any_mesh(self) -> base_pb2.TransportSocket:
        """A crossMesh gateway listener's TLS (Kuma's `RequestAllInOneCa`): this proxy's identity, and a client
        certificate required that chains to any mesh's CA (`mesh_ca:secret:all`) with a SPIFFE id."""
        bundle = b"".join(_line_end(self._cas[m].cert_pem) for m in sorted(self._cas))
        ca = self._ca(ca_secret_name("all"), bundle)
        context = tls_pb2.DownstreamTlsContext(
            require_client_certificate=wrappers_pb2.BoolValue(value=True),
            common_tls_context=self._common([_uri(string_pb2.StringMatcher(prefix="spiffe://"))], ca),
        )
        context.common_tls_context.alpn_protocols.extend(CROSS_MESH_ALPN)
        return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))

    def upstream_cross_mesh(self, mesh: str, service: str, *, sni: str) -> base_pb2.TransportSocket:
        """A cluster to another mesh's crossMesh gateway (Kuma's `RequestCa(mesh)`): this proxy's identity,
        `sni`, and only `spiffe://<mesh>/<service>` signed by that mesh's CA (`mesh_ca:secret:<mesh>`)."""
        ca = self._ca(ca_secret_name(mesh), _line_end(self._cas[mesh].cert_pem))
        common = self._common([_uri(string_pb2.StringMatcher(exact=spiffe_id(mesh, service)))], ca)
        common.alpn_protocols.append("http/1.1")
        context = tls_pb2.UpstreamTlsContext(sni=sni, common_tls_context=common)
        return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))

    def secrets(self) -> dict[str, Any]:
        """The Secrets the contexts built so far name: the identity (key and certificate) and the CA bundle."""
        out: dict[str, Any] = {}
        identity = identity_secret_name(self.mesh)
        if identity in self._used:
            uris = [spiffe_id(self.mesh, s) for s in self.services]
            uris.extend(kuma_id(tag, value) for tag, values in self._tags.items() for value in values)
            leaf = self._leaves.leaf(self.ca, self.mesh, self.services[0], uris=uris)
            out[identity] = secret_pb2.Secret(
                name=identity,
                tls_certificate=common_pb2.TlsCertificate(
                    certificate_chain=base_pb2.DataSource(inline_bytes=leaf.cert_pem),
                    private_key=base_pb2.DataSource(inline_bytes=leaf.key_pem),
                ),
            )
        for name, pem in sorted(self._used_cas.items()):
            out[name] = secret_pb2.Secret(
                name=name,
                validation_context=common_pb2.CertificateValidationContext(
                    trusted_ca=base_pb2.DataSource(inline_bytes=pem)
                ),
            )
        return out


def mtls_enabled(mesh: Resource | None) -> bool:
    """Kuma's `MeshResource.MTLSEnabled`: the Mesh names an enabled backend."""
    return mesh is not None and bool(mesh.spec.mtls.enabledBackend)  # type: ignore[attr-defined]


def mtls_permissive(mesh: Resource | None) -> bool:
    """The enabled backend's `mode` is PERMISSIVE (Kuma's `GetEnabledCertificateAuthorityBackend().GetMode()`)."""
    backend = enabled_backend(mesh.spec) if mesh is not None else None
    return backend is not None and backend.mode == CertificateAuthorityBackend.PERMISSIVE


def proxy_tls(
    mesh: str,
    mesh_resource: Resource | None,
    cross: CrossMesh | None,
    services: Sequence[str],
    tags: Mapping[str, Sequence[str]] | None = None,
) -> tuple[MeshTls | None, str | None]:
    """(the proxy's mesh mTLS, None) when `mesh_resource` has mTLS on and its CA was loaded; (None, a problem)
    when it is on and the CA is missing (its proxies then get no inbound: never plaintext in its place);
    (None, None) when mTLS is off."""
    if not mtls_enabled(mesh_resource):
        return None, None
    if cross is None or not cross.enabled(mesh):
        return None, f"mTLS is enabled on mesh {mesh} but its CA is not available (yet); inbounds skipped"
    permissive = mtls_permissive(mesh_resource)
    return MeshTls(mesh, cross.cas[mesh], cross.leaves, services, tags, cas=cross.cas, permissive=permissive), None
