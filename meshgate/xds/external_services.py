"""ExternalService as a gateway route backend: the cluster that reaches it, with its TLS settings. Pure.

Kuma 2.7 (`plugins/runtime/gateway/cluster_generator.go:40-70`, `generateExternalCluster` :151): a route
destination whose tags an ExternalService's tags satisfy (`match.ExternalService`, a tag selector) gets an
*external* cluster, and the ExternalService wins over mesh Dataplanes of the same service ("it's easier to
deterministically know it is present"). Field by field:

- **Endpoint** (`xds/topology/outbound.go:491` `NewExternalServiceEndpoint`): `networking.address` split into host
  and port, weight 1, the ExternalService's tags; with TLS enabled, plus `kuma.io/external-service-name: <name>`.
- **Cluster** (`envoy/clusters/v3/endpoint_cluster_configurer.go:21`): endpoints inline (no EDS): STATIC when every
  host is an IP, STRICT_DNS with `V4_ONLY` lookups when every host is a name (a mix is refused: a problem, and the
  backend resolves to `UNRESOLVED_BACKEND`). Each endpoint carries its tags without `kuma.io/service` as
  `envoy.lb` and `envoy.transport_socket_match` metadata (`envoy/metadata/v3/metadata.go:11`). The gateway's cluster
  defaults (connect timeout, buffer limit, HTTP/2 options for http2 and grpc) are `clusters.cluster`'s.
- **TLS** (`envoy/clusters/v3/client_side_tls_configurer.go:23`, `envoy/tls/v3/tls.go:90`
  `UpstreamTlsContextOutsideMesh`): per TLS-enabled endpoint a `transport_socket_matches` entry named after its host,
  matching its metadata, holding an `UpstreamTlsContext`: `sni` = `tls.serverName`, else the host when it is a DNS
  name (SNI cannot be an IP); `allow_renegotiation` = `tls.allowRenegotiation`; a client certificate when both
  `clientCert` and `clientKey` are set; with `caCert`, a validation context trusting it and, unless
  `skipHostnameVerification`, requiring a DNS or IP SAN equal to the SNI (else the host).
- Data sources (`caCert`, `clientCert`, `clientKey`): `inline`, `inlineString`, `secret` (the mesh's Secret, from
  `MeshContext.secrets`) are inlined; `file` is handed to Envoy as a file name, as the gateway's own certificates.

Errors: `ExternalServiceError` (a missing Secret, an unusable address, hosts mixing IPs and names): the caller
records it as a problem and leaves the backend unresolved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from meshgate.resources.model import Resource
from meshgate.resources.selectors import selector_matches
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE
from meshgate.xds import clusters

__all__ = [
    "TAG_EXTERNAL_SERVICE",
    "ExternalServiceError",
    "ExternalServiceIndex",
    "external_cluster",
    "protocol_of",
]

TAG_EXTERNAL_SERVICE = "kuma.io/external-service-name"  # Kuma's mesh_proto.ExternalServiceTag
_TLS_SOCKET = "envoy.transport_sockets.tls"
_LB = "envoy.lb"
_SOCKET_MATCH = "envoy.transport_socket_match"


class ExternalServiceError(Exception):
    """An ExternalService that cannot become a cluster (the message names it)."""


class ExternalServiceIndex:
    """A mesh's ExternalServices, by `kuma.io/service`."""

    def __init__(self, services: Iterable[Resource]) -> None:
        self._by_service: dict[str, list[Resource]] = {}
        for es in sorted(services, key=lambda r: r.meta.name):
            spec: Any = es.spec
            self._by_service.setdefault(spec.tags.get(TAG_SERVICE, ""), []).append(es)

    def __bool__(self) -> bool:
        return bool(self._by_service)

    def matching(self, tags: Mapping[str, str]) -> list[Resource]:
        """The ExternalServices whose tags satisfy the destination `tags` (Kuma's `match.ExternalService`)."""
        found = self._by_service.get(tags.get(TAG_SERVICE, ""), ())
        return [es for es in found if selector_matches(tags, dict(es.spec.tags))]  # type: ignore[attr-defined]


def protocol_of(tags: Mapping[str, str], services: Sequence[Resource]) -> str:
    """The destination's `kuma.io/protocol`, else the one its ExternalServices agree on, else tcp."""
    if tags.get(TAG_PROTOCOL):
        return tags[TAG_PROTOCOL]
    found = {es.spec.tags.get(TAG_PROTOCOL, "tcp") for es in services}  # type: ignore[attr-defined]
    return found.pop() if len(found) == 1 else "tcp"


def _host_port(es: Resource) -> tuple[str, int]:
    address: str = es.spec.networking.address  # type: ignore[attr-defined]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ExternalServiceError(f"ExternalService {es.meta.name!r}: address {address!r} is not host:port")
    return host.strip("[]"), int(port)


def _bytes(source: Any, what: str, es: Resource, secrets: Mapping[str, bytes]) -> base_pb2.DataSource | None:
    kind = source.WhichOneof("type")
    if kind is None:
        return None
    if kind == "file":
        return base_pb2.DataSource(filename=source.file)
    if kind == "inline":
        return base_pb2.DataSource(inline_bytes=bytes(source.inline.value))
    if kind == "inlineString":
        return base_pb2.DataSource(inline_bytes=source.inlineString.encode())
    if source.secret not in secrets:
        raise ExternalServiceError(f"ExternalService {es.meta.name!r}: {what} secret {source.secret!r} not found")
    return base_pb2.DataSource(inline_bytes=secrets[source.secret])


def _upstream_tls(es: Resource, host: str, secrets: Mapping[str, bytes]) -> tls_pb2.UpstreamTlsContext:
    tls: Any = es.spec.networking.tls  # type: ignore[attr-defined]
    sni = tls.server_name.value if tls.HasField("server_name") else ""
    if not sni and not clusters.is_ip(host):
        sni = host  # SNI can only be a host name
    out = tls_pb2.UpstreamTlsContext(sni=sni, allow_renegotiation=tls.allowRenegotiation.value)
    cert = _bytes(tls.client_cert, "clientCert", es, secrets) if tls.HasField("client_cert") else None
    key = _bytes(tls.client_key, "clientKey", es, secrets) if tls.HasField("client_key") else None
    if cert is not None and key is not None:
        out.common_tls_context.tls_certificates.add(certificate_chain=cert, private_key=key)
    ca = _bytes(tls.ca_cert, "caCert", es, secrets) if tls.HasField("ca_cert") else None
    if ca is not None:
        validation = out.common_tls_context.validation_context
        validation.trusted_ca.CopyFrom(ca)
        if not tls.skipHostnameVerification.value:
            for san_type in (common_pb2.SubjectAltNameMatcher.DNS, common_pb2.SubjectAltNameMatcher.IP_ADDRESS):
                validation.match_typed_subject_alt_names.add(
                    san_type=san_type, matcher=string_pb2.StringMatcher(exact=sni or host)
                )
    return out


def _metadata(tags: Mapping[str, str]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    for key in sorted(tags):
        if key != TAG_SERVICE:
            out.fields[key].string_value = tags[key]
    return out


def external_cluster(
    name: str, services: Sequence[Resource], protocol: str, *, secrets: Mapping[str, bytes]
) -> cluster_pb2.Cluster:
    """The cluster `name` reaching `services` (the ExternalServices a destination matched); raises
    ExternalServiceError."""
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    group = assignment.endpoints.add()
    sockets: list[cluster_pb2.Cluster.TransportSocketMatch] = []
    kinds_of_host: set[bool] = set()
    for es in services:
        host, port = _host_port(es)
        kinds_of_host.add(clusters.is_ip(host))
        spec: Any = es.spec
        tags = dict(spec.tags)
        tls_enabled = spec.networking.HasField("tls") and spec.networking.tls.enabled
        if tls_enabled:
            tags[TAG_EXTERNAL_SERVICE] = es.meta.name
        endpoint = group.lb_endpoints.add()
        endpoint.load_balancing_weight.value = 1
        socket = endpoint.endpoint.address.socket_address
        socket.address, socket.port_value = host, port
        fields = _metadata(tags)
        if fields.fields:
            endpoint.metadata.filter_metadata[_LB].CopyFrom(fields)
            endpoint.metadata.filter_metadata[_SOCKET_MATCH].CopyFrom(fields)
        if tls_enabled:
            transport = base_pb2.TransportSocket(
                name=_TLS_SOCKET, typed_config=clusters.pack(_upstream_tls(es, host, secrets))
            )
            sockets.append(
                cluster_pb2.Cluster.TransportSocketMatch(name=host, match=fields, transport_socket=transport)
            )
    if len(kinds_of_host) > 1:
        names = ", ".join(es.meta.name for es in services)
        raise ExternalServiceError(f"ExternalServices {names}: a mix of IPs and host names cannot be one cluster")
    out = clusters.cluster(name, protocol, dns_assignment=assignment)
    if kinds_of_host == {True}:
        out.type = cluster_pb2.Cluster.STATIC
    else:
        out.dns_lookup_family = cluster_pb2.Cluster.V4_ONLY
    out.transport_socket_matches.extend(sockets)
    return out
