"""Envoy listener pieces: HTTP connection managers, TCP proxies, TLS contexts and connection limits.

Settings follow Kuma 2.7's gateway generator (`http_filter_chain_generator.go`, `listener_generator.go`):
edge-safe HTTP defaults (path normalization, header timeouts, `server_name: Kuma Gateway`), 32 KiB of buffer
per connection, SO_REUSEPORT so several gateway Envoys can share a port, and a TLS inspector on every
gateway listener so SNI is known before a filter chain is chosen.

**Certificates** (`MeshGateway.TLS.Conf.certificates`, Kuma DataSources) hold a PEM private key and its
certificate chain in one blob. Kuma sends them to Envoy as SDS secrets; meshgate inlines them in the
DownstreamTlsContext, which needs no SDS subscription:
- `inline` / `inlineString`: split here into the certificate chain and the private key;
- `file`: handed to Envoy as a filename for both; Envoy's PEM reader skips the blocks of the other type.
  The file must exist where Envoy runs (in Kuma it is read by the control plane);
- `secret`: looked up in the `secrets` mapping the caller passes (the mesh's Secret values, decoded); a
  missing one is a problem, and the filter chain is left out.

**connectionLimit** uses the `envoy.filters.network.connection_limit` filter, first in each filter chain. It
counts per filter chain, so on HTTPS and TLS listeners the limit holds per hostname. (Kuma sets the runtime
key `envoy.resource_limits.listener.<name>.connection_limit` over RTDS, which needs a runtime layer in the
bootstrap.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.connection_limit.v3 import connection_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.xds.clusters import CONNECTION_BUFFER_BYTES, is_ip, pack

__all__ = [
    "ALPN_HTTPS",
    "WILDCARD_ADDRESS",
    "CertificateError",
    "connection_limit",
    "downstream_tls",
    "filter_chain",
    "http_connection_manager",
    "listener",
    "stat_prefix",
    "tcp_proxy",
    "tls_inspector",
    "tls_mode",
]

_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.DOTALL)
ALPN_HTTPS = ("h2", "http/1.1")
SERVER_NAME = "Kuma Gateway"
# Kuma's gateway defaults (policies/core/defaults and http_filter_chain_generator.go).
_REQUEST_HEADERS_TIMEOUT = duration_pb2.Duration(nanos=500_000_000)
_STREAM_IDLE_TIMEOUT = duration_pb2.Duration(seconds=5)
_CONNECTION_IDLE_TIMEOUT = duration_pb2.Duration(seconds=300)
_MAX_CONCURRENT_STREAMS = 100
_INITIAL_STREAM_WINDOW = 64 * 1024
_INITIAL_CONNECTION_WINDOW = 1024 * 1024
# The connection_limit filter delays closing a refused connection; 0 closes it at once.
_CONNECTION_LIMIT_DELAY = duration_pb2.Duration()
WILDCARD_ADDRESS = "0.0.0.0"


class CertificateError(ValueError):
    """A listener certificate cannot be used; the message says which and why."""


def stat_prefix(name: str) -> str:
    """Envoy stat names: anything but [A-Za-z0-9_.-] becomes `_` (Kuma's `util/xds` sanitizer)."""
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name) or "meshgate"


def _ads_source() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _network_filter(name: str, config: Any) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))


def http_connection_manager(
    prefix: str,
    route_config: str,
    *,
    edge: bool,
    http_filters: Sequence[hcm_pb2.HttpFilter] = (),
    access_logs: Sequence[accesslog_pb2.AccessLog] = (),
) -> listener_components_pb2.Filter:
    """An HCM that takes its routes over RDS; `edge` adds Kuma's gateway hardening. `http_filters` go before
    the router (Kuma's FilterChainBuilder moves the router last); `access_logs` are its access logs."""
    config = hcm_pb2.HttpConnectionManager(stat_prefix=stat_prefix(prefix))
    config.rds.config_source.CopyFrom(_ads_source())
    config.rds.route_config_name = route_config
    config.http_filters.extend(http_filters)
    config.access_log.extend(access_logs)
    config.http_filters.append(
        hcm_pb2.HttpFilter(name="envoy.filters.http.router", typed_config=pack(router_pb2.Router()))
    )
    if edge:
        config.server_name = SERVER_NAME
        config.use_remote_address.value = True
        config.normalize_path.value = True
        config.merge_slashes = True
        config.path_with_escaped_slashes_action = hcm_pb2.HttpConnectionManager.UNESCAPE_AND_REDIRECT
        config.request_headers_timeout.CopyFrom(_REQUEST_HEADERS_TIMEOUT)
        config.stream_idle_timeout.CopyFrom(_STREAM_IDLE_TIMEOUT)
        config.common_http_protocol_options.CopyFrom(
            protocol_pb2.HttpProtocolOptions(
                idle_timeout=_CONNECTION_IDLE_TIMEOUT,
                headers_with_underscores_action=protocol_pb2.HttpProtocolOptions.REJECT_REQUEST,
            )
        )
        config.http2_protocol_options.CopyFrom(
            protocol_pb2.Http2ProtocolOptions(
                max_concurrent_streams=wrappers_pb2.UInt32Value(value=_MAX_CONCURRENT_STREAMS),
                initial_stream_window_size=wrappers_pb2.UInt32Value(value=_INITIAL_STREAM_WINDOW),
                initial_connection_window_size=wrappers_pb2.UInt32Value(value=_INITIAL_CONNECTION_WINDOW),
                allow_connect=True,
            )
        )
    return _network_filter("envoy.filters.network.http_connection_manager", config)


def tcp_proxy(
    prefix: str, clusters: Sequence[tuple[str, int]], *, access_logs: Sequence[accesslog_pb2.AccessLog] = ()
) -> listener_components_pb2.Filter:
    """A TCP proxy to one cluster, or split by weight across several (weights must be >= 1)."""
    config = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix(prefix))
    config.access_log.extend(access_logs)
    if len(clusters) == 1:
        config.cluster = clusters[0][0]
    else:
        for name, weight in clusters:
            config.weighted_clusters.clusters.add(name=name, weight=weight)
    return _network_filter("envoy.filters.network.tcp_proxy", config)


def connection_limit(prefix: str, limit: int) -> listener_components_pb2.Filter:
    config = connection_limit_pb2.ConnectionLimit(
        stat_prefix=stat_prefix(prefix),
        max_connections=wrappers_pb2.UInt64Value(value=limit),
        delay=_CONNECTION_LIMIT_DELAY,
    )
    return _network_filter("envoy.filters.network.connection_limit", config)


@dataclass(frozen=True, slots=True)
class _Pem:
    chain: bytes
    key: bytes


def _split_pem(data: bytes, where: str) -> _Pem:
    certificates: list[bytes] = []
    keys: list[bytes] = []
    for block in _PEM_BLOCK.finditer(data):
        kind = block.group(1)
        if kind.endswith(b"PRIVATE KEY"):
            keys.append(block.group(0))
        elif kind.endswith(b"CERTIFICATE"):
            certificates.append(block.group(0))
        else:
            raise CertificateError(f"{where}: unsupported PEM block {kind.decode()!r}")
    if not certificates:
        raise CertificateError(f"{where}: missing server certificate")
    if len(keys) != 1:
        raise CertificateError(f"{where}: {'missing private key' if not keys else 'multiple private keys'}")
    chain = b"".join(c if c.endswith(b"\n") else c + b"\n" for c in certificates)
    return _Pem(chain, keys[0])


def _certificate(source: Any, where: str, secrets: Mapping[str, bytes]) -> common_pb2.TlsCertificate:
    kind = source.WhichOneof("type")
    if kind == "file":
        return common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(filename=source.file),
            private_key=base_pb2.DataSource(filename=source.file),
        )
    if kind == "inline":
        data = bytes(source.inline.value)
    elif kind == "inlineString":
        data = source.inlineString.encode()
    elif kind == "secret":
        if source.secret not in secrets:
            raise CertificateError(f"{where}: secret {source.secret!r} not found")
        data = secrets[source.secret]
    else:
        raise CertificateError(f"{where}: empty data source")
    pem = _split_pem(data, where)
    return common_pb2.TlsCertificate(
        certificate_chain=base_pb2.DataSource(inline_bytes=pem.chain),
        private_key=base_pb2.DataSource(inline_bytes=pem.key),
    )


def downstream_tls(
    conf: Any, *, alpn: Sequence[str], where: str, secrets: Mapping[str, bytes]
) -> base_pb2.TransportSocket:
    """The TLS transport socket of a TERMINATE filter chain (raises CertificateError)."""
    context = tls_pb2.DownstreamTlsContext(require_client_certificate=wrappers_pb2.BoolValue(value=False))
    common = context.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.alpn_protocols.extend(alpn)
    if not conf.certificates:
        raise CertificateError(f"{where}: no certificates")
    for i, source in enumerate(conf.certificates):
        common.tls_certificates.append(_certificate(source, f"{where}.certificates[{i}]", secrets))
    return base_pb2.TransportSocket(name="envoy.transport_sockets.tls", typed_config=pack(context))


def filter_chain(
    filters: Sequence[listener_components_pb2.Filter],
    *,
    server_name: str | None = None,
    tls: base_pb2.TransportSocket | None = None,
) -> listener_components_pb2.FilterChain:
    """A filter chain; `server_name` (None: no SNI match) makes it match TLS with that SNI (`*` matches any)."""
    chain = listener_components_pb2.FilterChain(filters=list(filters))
    if server_name is not None:
        chain.filter_chain_match.transport_protocol = "tls"
        # Envoy takes `*.a.b` or a full name; a bare `*` is expressed by no server_names at all.
        if server_name not in ("", "*"):
            chain.filter_chain_match.server_names.append(server_name)
    if tls is not None:
        chain.transport_socket.CopyFrom(tls)
    return chain


def listener(
    name: str,
    address: str,
    port: int,
    chains: Sequence[listener_components_pb2.FilterChain],
    *,
    gateway: bool,
) -> listener_pb2.Listener:
    """A listener on `address:port`; a non-IP address (a DNS name) binds every IPv4 address instead."""
    out = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(
                address=address if is_ip(address) else WILDCARD_ADDRESS, port_value=port
            )
        ),
        filter_chains=list(chains),
        traffic_direction=base_pb2.INBOUND if gateway else base_pb2.OUTBOUND,
    )
    if gateway:
        out.enable_reuse_port.value = True
        out.per_connection_buffer_limit_bytes.value = CONNECTION_BUFFER_BYTES
        out.listener_filters.append(tls_inspector())
    return out


def tls_inspector() -> listener_components_pb2.ListenerFilter:
    """The TLS inspector: a connection's transport protocol, SNI and ALPN known before a filter chain is chosen."""
    return listener_components_pb2.ListenerFilter(
        name="envoy.filters.listener.tls_inspector", typed_config=pack(tls_inspector_pb2.TlsInspector())
    )


def tls_mode(conf: Any | None) -> int:
    return int(conf.mode) if conf is not None else MeshGateway.TLS.NONE
