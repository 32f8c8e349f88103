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

__all__ = ["ControlPlaneAddress", "parse_cp_address", "render_bootstrap"]

XDS_CLUSTER = "xds_cluster"
DEFAULT_XDS_PORT = 5678


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


def render_bootstrap(
    node_id: str,
    cp: ControlPlaneAddress,
    *,
    admin_port: int,
    cluster: str = "",
    admin_address: str = "127.0.0.1",
    metadata: dict[str, str] | None = None,
    token: str = "",
    ca_pem: str = "",
    ca_file: str = "",
) -> dict[str, Any]:
    """The bootstrap as a JSON-ready dict (Envoy reads JSON as YAML's subset with `-c file.json`).

    `token`: sent as `authorization` on the ADS call. For a TLS `cp`, the server certificate is checked
    against `ca_pem` (inline) or `ca_file`; with neither it is not checked at all (kuma-dp's --skip-verify)."""
    node: dict[str, Any] = {"id": node_id, "cluster": cluster or node_id}
    if metadata:
        node["metadata"] = dict(metadata)
    grpc_service: dict[str, Any] = {"envoy_grpc": {"cluster_name": XDS_CLUSTER}}
    if token:
        grpc_service["initial_metadata"] = [{"key": "authorization", "value": token}]
    xds_cluster = _xds_cluster(cp)
    if cp.tls:
        xds_cluster["transport_socket"] = _tls_socket(cp.host, ca_pem, ca_file)
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
        "static_resources": {"clusters": [xds_cluster]},
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
