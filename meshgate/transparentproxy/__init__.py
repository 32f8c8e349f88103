"""The transparent proxy: the iptables rules that send a network namespace's TCP (and DNS) to its data plane.

`config` (flags parsed as Kuma's kumactl parses them) and `rules` (the rules as data, rendered for
iptables-restore, and the rules that remove them) are pure; `iptables` is the adapter that runs iptables-save
and iptables-restore, imported on its own (`meshgate.transparentproxy.iptables`).
"""

from __future__ import annotations

from meshgate.transparentproxy.config import (
    DEFAULT_DNS_PORT,
    DEFAULT_INBOUND_PORT,
    DEFAULT_KUMA_DP_UID,
    DEFAULT_OUTBOUND_PORT,
    ConfigError,
    PortsForUids,
    TransparentProxyConfig,
)
from meshgate.transparentproxy.rules import CHAIN_PREFIX, COMMENT, Rule, Ruleset, Table, build, cleanup

__all__ = [
    "CHAIN_PREFIX",
    "COMMENT",
    "DEFAULT_DNS_PORT",
    "DEFAULT_INBOUND_PORT",
    "DEFAULT_KUMA_DP_UID",
    "DEFAULT_OUTBOUND_PORT",
    "ConfigError",
    "PortsForUids",
    "Rule",
    "Ruleset",
    "Table",
    "TransparentProxyConfig",
    "build",
    "cleanup",
]
