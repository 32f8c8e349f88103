"""The Envoy bootstrap for a meshgate data plane: a pure function of the proxy and the control plane's address.

Envoy gets everything but its admin interface and the route to the control plane over delta ADS:

    node.id                      <mesh>.<dataplane name>   (the zone's ADS server names the proxy by it)
    dynamic_resources.ads_config api_type DELTA_GRPC, transport V3, gRPC to `xds_cluster`
    cds_config / lds_config      ads: {}
    static xds_cluster           HTTP/2 (gRPC needs it), STRICT_DNS so a host name works too; for an https://
                                 control plane, TLS: the zone's CA trusted (inline), SNI and the certificate's
                                 SAN checked against the host of --cp-address, ALPN h2
    ads grpc_service             initial_metadata `authorization: <data plane token>`, as kuma-dp sends it
                                 (Kuma's bootstrap template_v3.go): the zone refuses a stream without one
    ads grpc_service, token file Kuma's reloadable tokens: Envoy's google_grpc client dials the zone itself, with
                                 call credentials `envoy.grpc_credentials.file_based_metadata`, which read the
                                 token file on every new call; so a rotated file is sent on the next stream,
                                 and the bootstrap holds no token. TLS as above (gRPC's SSL credentials with
                                 the CA; SNI and the name check are the host of --cp-address); no xds_cluster
    node.metadata                `dataplane.resource` (the Dataplane as JSON) and `dataplane.admin.port`
                                 (Kuma's field names): the zone registers the Dataplane when the authenticated
                                 stream opens, and fetches config dumps from that port at the stream's peer
    admin                        127.0.0.1:<admin port> only: the admin API can stop Envoy and dump secrets
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = ["ControlPlaneAddress", "parse_cp_address", "reloads_token_file", "render_bootstrap"]

XDS_CLUSTER = "xds_cluster"
DEFAULT_XDS_PORT = 5678
FILE_BASED_METADATA = "envoy.grpc_credentials.file_based_metadata"


@dataclass(frozen=True, slots=True)
class ControlPlaneAddress:
    host: str
    port: int
    tls: bool = False


# https:// is kuma-dp's form for the zone's TLS DP server; grpcs:// says the same; grpc:// is plaintext.
_SCHEMES = {"https": True, "grpcs": True, "grpc": False}


def parse_cp_address(url: str) -> ControlPlaneAddress:
    """`https://HOST:PORT` (TLS, Kuma's form; also `grpcs://`), or `grpc://HOST:PORT` for a zone running
    `--no-dp-server-tls`. A bare `HOST:PORT` is TLS; the port defaults to 5678, the zone's `--xds-port`."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"--cp-address {url!r}: the scheme must be https:// (TLS, the zone's default) or grpc:// (plaintext)"
        )
    if not parts.hostname:
        raise ValueError(f"--cp-address {url!r} has no host")
    try:
        port = parts.port or DEFAULT_XDS_PORT
    except ValueError:
        raise ValueError(f"--cp-address {url!r} has an invalid port") from None
    return ControlPlaneAddress(parts.hostname, port, _SCHEMES[parts.scheme])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def reloads_token_file(cp: ControlPlaneAddress, *, ca_pem: str = "", ca_file: str = "") -> bool:
    """Whether Envoy can read a token file itself for this control plane. file_based_metadata builds gRPC's
    SSL channel credentials, always checked against a CA: it has neither a plaintext channel (grpc://) nor an
    unchecked one (--skip-verify). There the token is read once and embedded, as before."""
    return cp.tls and bool(ca_pem or ca_file)


def render_bootstrap(
    node_id: str,
    cp: ControlPlaneAddress,
    *,
    admin_port: int,
    cluster: str = "",
    admin_address: str = "127.0.0.1",
    metadata: dict[str, str] | None = None,
    token: str = "",
    token_file: str = "",
    ca_pem: str = "",
    ca_file: str = "",
) -> dict[str, Any]:
    """The bootstrap as a JSON-ready dict (Envoy reads JSON as YAML's subset with `-c file.json`).

    `token`: sent as `authorization` on the ADS call. `token_file` (which wins; it needs
    `reloads_token_file`): Envoy reads it on every new ADS call and sends its content instead. For a TLS
    `cp`, the server certificate is checked against `ca_pem` (inline) or `ca_file`; with neither it is not
    checked at all (kuma-dp's --skip-verify)."""
    node: dict[str, Any] = {"id": node_id, "cluster": cluster or node_id}
    if metadata:
        node["metadata"] = dict(metadata)
    clusters: list[dict[str, Any]] = []
    if token_file:
        if not reloads_token_file(cp, ca_pem=ca_pem, ca_file=ca_file):
            raise ValueError("a reloadable token file needs a TLS control plane and a CA to check it with")
        grpc_service = _google_grpc_service(cp, token_file, ca_pem, ca_file)
    else:
        grpc_service = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
        if token:
            grpc_service["initial_metadata"] = [{"key": "authorization", "value": token}]
        xds_cluster = _xds_cluster(cp)
        if cp.tls:
            xds_cluster["transport_socket"] = _tls_socket(cp.host, ca_pem, ca_file)
        clusters.append(xds_cluster)
    return {
        "node": node,
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "grpc_services": [grpc_service],
                # The ADS server reads the node from the first request of a stream only.
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": clusters},
    }


def _google_grpc_service(cp: ControlPlaneAddress, token_file: str, ca_pem: str, ca_file: str) -> dict[str, Any]:
    """Kuma's reloadable-token ADS service (template_v3.go buildGrpcService): gRPC's own client, so the call
    credentials plugin runs for every call. gRPC sends the target's host as SNI (not for an IP) and checks
    that the certificate names it, as the xds_cluster's TLS does."""
    host = f"[{cp.host}]" if ":" in cp.host else cp.host
    return {
        "google_grpc": {
            "target_uri": f"{host}:{cp.port}",
            "stat_prefix": "ads",
            # The factory that understands the plugin below; it builds SSL channel credentials from
            # channel_credentials (only SSL: see reloads_token_file).
            "credentials_factory_name": FILE_BASED_METADATA,
            "channel_credentials": {
                "ssl_credentials": {"root_certs": {"inline_string": ca_pem} if ca_pem else {"filename": ca_file}}
            },
            "call_credentials": [
                {
                    "from_plugin": {
                        "name": FILE_BASED_METADATA,
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig",
                            "secret_data": {"filename": token_file},
                            "header_key": "authorization",
                        },
                    }
                }
            ],
            # Kuma's keepalive: a dead zone connection is noticed in about 40 s instead of TCP's minutes. The
            # zone's gRPC server accepts a ping every 5 s (meshgate.transport.grpc_server).
            "channel_args": {
                "args": {
                    "grpc.keepalive_time_ms": {"int_value": "10000"},
                    "grpc.keepalive_timeout_ms": {"int_value": "30000"},
                    "grpc.http2.max_pings_without_data": {"int_value": "0"},
                }
            },
        }
    }


def _tls_socket(host: str, ca_pem: str, ca_file: str) -> dict[str, Any]:
    context: dict[str, Any] = {"alpn_protocols": ["h2"]}
    if ca_pem or ca_file:
        context["validation_context"] = {
            "trusted_ca": {"inline_string": ca_pem} if ca_pem else {"filename": ca_file},
            # The zone's certificate must name the host dialled, as any TLS client checks.
            "match_typed_subject_alt_names": [
                {"san_type": "IP_ADDRESS" if _is_ip(host) else "DNS", "matcher": {"exact": host}}
            ],
        }
    tls: dict[str, Any] = {
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": context,
    }
    if not _is_ip(host):
        tls["sni"] = host
    return {"name": "envoy.transport_sockets.tls", "typed_config": tls}


def _xds_cluster(cp: ControlPlaneAddress) -> dict[str, Any]:
    return {
        "name": XDS_CLUSTER,
        "type": "STATIC" if _is_ip(cp.host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": cp.host, "port_value": cp.port}}}}
                    ]
                }
            ],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
    }
