"""What a zone shows at `GET /config`: its parsed flags in Kuma's shape (meshgate.rest.cp_config).

An allow-list: every ZoneConfig field is either rendered here or named in `NOT_SHOWN` with the reason, and
tests/unit/test_cp_config.py fails on a field that is neither. The zone token given inline (`--cp-token`) is
shown as `*****` when set; its file's path is shown, as Kuma shows file paths. Global addresses and the
store URL are shown without a password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshgate.rest.cp_config import api_server_view, duration, path_or_empty, redact_url, sanitized, store_view

if TYPE_CHECKING:
    from zone_cp.app import ZoneConfig

__all__ = ["NOT_SHOWN", "zone_config_view"]

NOT_SHOWN = {"ports_file": "where the process reports its bound ports, for whoever started it"}


def zone_config_view(cfg: ZoneConfig) -> dict[str, Any]:
    addresses = [redact_url(a) for a in cfg.global_addresses]
    upstream = cfg.dns_upstream
    return {
        "mode": "zone",
        "environment": cfg.environment,
        "general": {"workDir": str(cfg.data_dir)},
        "store": store_view(cfg.store, cfg.data_dir, allow_volatile=cfg.store_allow_volatile),
        "apiServer": api_server_view(cfg.bind_address, cfg.api_port, localhost_is_admin=cfg.api_localhost_is_admin),
        "diagnostics": {"serverPort": cfg.diagnostics_port},
        "multizone": {
            "zone": {
                "name": cfg.zone,
                "globalAddress": addresses[0] if addresses else "",
                # Ours: every global replica the zone may dial, in order.
                "globalAddresses": addresses,
                "kds": {
                    "rootCaFile": path_or_empty(cfg.kds_ca_cert_file),
                    "tlsSkipVerify": cfg.kds_tls_skip_verify,
                    "maxMsgSize": cfg.kds_max_msg_size,  # Kuma's multizone.zone.kds.maxMsgSize
                    "auth": {"cpToken": sanitized(cfg.cp_token), "cpTokenPath": path_or_empty(cfg.cp_token_path)},
                },
            }
        },
        "dpServer": {
            "port": cfg.xds_port,
            "tlsEnabled": cfg.dp_server_tls,
            "tlsCertFile": path_or_empty(cfg.dp_server_tls_cert_file),
            "tlsKeyFile": path_or_empty(cfg.dp_server_tls_key_file),
            "tlsSans": list(cfg.dp_server_tls_sans),
            "authn": {"dpProxy": {"type": cfg.dp_server_authn}},
        },
        "xdsServer": {"dataplaneStatusFlushInterval": duration(cfg.dataplane_status_flush_interval)},
        "metrics": {"dataplane": {"subscriptionLimit": cfg.dataplane_subscription_limit}},
        "dnsServer": {
            "domain": cfg.dns_domain,
            "CIDR": cfg.vip_cidr,
            "port": cfg.dns_port,
            "upstream": "" if upstream is None else _host_port(upstream.host, upstream.port),
        },
        "runtime": {"kubernetes": {"injector": {"sidecarContainer": {"image": cfg.dataplane_image}}}},
    }


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
