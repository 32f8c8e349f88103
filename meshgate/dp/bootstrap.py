"""The Envoy bootstrap for a meshgate data plane: a pure function of the proxy and the control plane's address.

Envoy gets everything but its admin interface and the route to the control plane over delta ADS:

    node.id                      <mesh>.<dataplane name>   (the zone's ADS server names the proxy by it)
    dynamic_resources.ads_config api_type DELTA_GRPC, transport V3, gRPC to `xds_cluster`
    cds_config / lds_config      ads: {}
    static xds_cluster           HTTP/2 (gRPC needs it), STRICT_DNS so a host name works too
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


def parse_cp_address(url: str) -> ControlPlaneAddress:
    """`grpc://HOST:PORT` (or `HOST:PORT`; the port defaults to 5678, the zone's `--xds-port`).

    Only plaintext gRPC for now: `grpcs://` is refused rather than silently sent in the clear.
    """
    parts = urlsplit(url if "://" in url else f"grpc://{url}")
    if parts.scheme != "grpc":
        raise ValueError(f"--cp-address {url!r}: the scheme must be grpc:// (TLS to the zone is not supported yet)")
    if not parts.hostname:
        raise ValueError(f"--cp-address {url!r} has no host")
    try:
        port = parts.port or DEFAULT_XDS_PORT
    except ValueError:
        raise ValueError(f"--cp-address {url!r} has an invalid port") from None
    return ControlPlaneAddress(parts.hostname, port)


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
) -> dict[str, Any]:
    """The bootstrap as a JSON-ready dict (Envoy reads JSON as YAML's subset with `-c file.json`)."""
    node: dict[str, Any] = {"id": node_id, "cluster": cluster or node_id}
    if metadata:
        node["metadata"] = dict(metadata)
    return {
        "node": node,
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": XDS_CLUSTER}}],
                # The ADS server reads the node from the first request of a stream only.
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC" if _is_ip(cp.host) else "STRICT_DNS",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {"socket_address": {"address": cp.host, "port_value": cp.port}}
                                        }
                                    }
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
            ]
        },
    }
