"""What the global shows at `GET /config`: its parsed flags in Kuma's shape (meshgate.rest.cp_config).

An allow-list: every GlobalConfig field is either rendered here or named in `NOT_SHOWN` with the reason, and
tests/unit/test_cp_config.py fails on a field that is neither, so a new flag is a decision, not an accident.
The global has no secret-bearing flag; the store URL is shown without its password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshgate.rest.cp_config import api_server_view, duration, path_or_empty, store_view

if TYPE_CHECKING:
    from global_cp.app import GlobalConfig

__all__ = ["NOT_SHOWN", "global_config_view"]

NOT_SHOWN = {"ports_file": "where the process reports its bound ports, for whoever started it"}


def global_config_view(cfg: GlobalConfig) -> dict[str, Any]:
    kds = {
        "grpcPort": cfg.kds_port,
        "tlsEnabled": cfg.kds_tls_enabled,
        "tlsCertFile": path_or_empty(cfg.kds_tls_cert_file),
        "tlsKeyFile": path_or_empty(cfg.kds_tls_key_file),
        # Ours: the names the certificate the global issues itself also carries.
        "tlsSans": list(cfg.kds_tls_sans),
        "auth": {"type": cfg.kds_auth.value, "tokenRecheckInterval": duration(cfg.kds_token_recheck_interval)},
        "zoneHealthCheck": {"pollInterval": duration(cfg.zone_health_interval), "missed": cfg.zone_health_missed},
        "resyncInterval": duration(cfg.resync_interval),
        "stallThreshold": duration(cfg.kds_stall_threshold),
        "watchdogInterval": duration(cfg.watchdog_interval),
        "maxZones": cfg.kds_max_zones,
        # Ours: zones in their initial sync at once (--kds-max-concurrent-admissions).
        "maxConcurrentAdmissions": cfg.kds_max_concurrent_admissions,
        "maxMsgSize": cfg.kds_max_msg_size,  # Kuma's multizone.global.kds.maxMsgSize
    }
    return {
        "mode": "global",
        "environment": "universal",
        "general": {"workDir": str(cfg.data_dir)},
        "store": store_view(
            cfg.store, cfg.data_dir, allow_volatile=cfg.store_allow_volatile, leader_lease=cfg.leader_lease
        ),
        "apiServer": api_server_view(cfg.bind_address, cfg.api_port, localhost_is_admin=cfg.api_localhost_is_admin),
        "diagnostics": {"serverPort": cfg.diagnostics_port},
        "multizone": {"global": {"kds": kds}},
    }
