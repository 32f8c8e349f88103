"""What `meshgatectl install transparent-proxy` installs, parsed from its flags. Pure: no iptables, no files.

The flags and defaults are kumactl's (app/kumactl/cmd/install/install_transparent_proxy.go at v2.7.29, lines
56-88 for the defaults, 202-235 for the flags): outbound redirect port 15001, inbound 15006, DNS 15053, the
data plane's user by `--kuma-dp-user` or `--kuma-dp-uid`. Values keep Kuma's spelling: ports are comma-separated
lists, and an `--exclude-outbound-ports-for-uids` entry is `[protocol:][ports:]uids` where ports and uids may be
ranges written with `-` (transparentproxy_v2.go:211-275). `--exclude-outbound-ips`/`--exclude-inbound-ips` are
not in Kuma 2.7; they come from Kuma 2.9 (install_transparent_proxy.go:271-272 at v2.9.13): addresses or CIDRs,
comma-separated or repeated.

Errors: every problem with a value raises `ConfigError` with the flag it came from, so the command can print
one line naming it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network, ip_network

__all__ = [
    "DEFAULT_DNS_PORT",
    "DEFAULT_INBOUND_PORT",
    "DEFAULT_KUMA_DP_UID",
    "DEFAULT_OUTBOUND_PORT",
    "ConfigError",
    "PortsForUids",
    "TransparentProxyConfig",
    "parse_ips",
    "parse_port",
    "parse_ports",
    "parse_ports_for_uids",
]

# kumactl's defaults (install_transparent_proxy.go:59-74 at v2.7.29); 5678 is the uid Kuma's images run kuma-dp
# as (pkg/transparentproxy/config/config.go:233), used here only in messages and tests.
DEFAULT_OUTBOUND_PORT = 15001
DEFAULT_INBOUND_PORT = 15006
DEFAULT_DNS_PORT = 15053
DEFAULT_KUMA_DP_UID = 5678


class ConfigError(ValueError):
    """A flag's value is not what Kuma accepts; `flag` names it."""

    def __init__(self, flag: str, message: str) -> None:
        super().__init__(f"{flag}: {message}")
        self.flag = flag


@dataclass(frozen=True, slots=True)
class PortsForUids:
    """One `--exclude-outbound-ports-for-uids` entry for one protocol, in iptables' syntax (`a:b` ranges)."""

    protocol: str  # "tcp" or "udp"
    ports: str  # "1000:2000,3000"
    uids: str  # "106:108" or "5"


@dataclass(frozen=True, slots=True)
class TransparentProxyConfig:
    uid: str
    redirect_outbound_port: int = DEFAULT_OUTBOUND_PORT
    redirect_inbound: bool = True
    redirect_inbound_port: int = DEFAULT_INBOUND_PORT
    exclude_inbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports: tuple[int, ...] = ()
    exclude_outbound_ports_for_uids: tuple[PortsForUids, ...] = ()
    exclude_outbound_ips: tuple[IPv4Network | IPv6Network, ...] = ()
    exclude_inbound_ips: tuple[IPv4Network | IPv6Network, ...] = ()
    redirect_dns: bool = False
    # --redirect-all-dns-traffic: every DNS query, not only those to the resolv.conf servers (it implies
    # redirect_dns, install_transparent_proxy.go:153-155).
    capture_all_dns: bool = False
    dns_port: int = DEFAULT_DNS_PORT
    # The raw table's conntrack zones for DNS (off with --skip-dns-conntrack-zone-split).
    conntrack_zone_split: bool = True


def parse_port(text: str, flag: str) -> int:
    """A port as kumactl parses it: a uint16 (transparentproxy_v2.go:63-70)."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > 65535:
        raise ConfigError(flag, f"value '{text}', is not valid uint16")
    return int(text)


def parse_ports(text: str, flag: str) -> tuple[int, ...]:
    """A comma-separated port list; "" is none (transparentproxy_v2.go:72-90)."""
    text = text.strip()
    if not text:
        return ()
    return tuple(parse_port(part, flag) for part in text.split(","))


def _check_values_or_ranges(text: str, flag: str) -> None:
    # validateUintValueOrRange (transparentproxy_v2.go:277-292): every element and range end a uint16.
    for element in text.split(","):
        for bound in element.split("-"):
            try:
                parse_port(bound, flag)
            except ConfigError:
                raise ConfigError(flag, f"values or range '{text}' failed validation") from None


def parse_ports_for_uids(
    entries: Iterable[str], flag: str = "--exclude-outbound-ports-for-uids"
) -> tuple[PortsForUids, ...]:
    """`[protocol:][ports:]uids` entries, each expanded per protocol (ParseExcludePortsForUIDs,
    transparentproxy_v2.go:211-275): no protocol or `*` is tcp and udp, no ports or `*` is 1-65535, uids may
    be one value or one range but never `*` nor a list."""
    out: list[PortsForUids] = []
    for entry in entries:
        parts = entry.split(":")
        if len(parts) > 3:
            raise ConfigError(
                flag, f"value: '{entry}' is invalid - format for excluding ports by uids <protocol:>?<ports:>?uids"
            )
        protocols_text, ports, uids = (
            ["*", "*", *parts] if len(parts) == 1 else ["*", *parts] if len(parts) == 2 else parts
        )
        if uids == "*":
            raise ConfigError(flag, "can't use wildcard '*' for uids")
        if ports in ("*", ""):
            ports = "1-65535"
        _check_values_or_ranges(ports, flag)
        if "," in uids:
            raise ConfigError(flag, f"uid entry invalid:'{uids}', it should either be a single item or a range")
        _check_values_or_ranges(uids, flag)
        if protocols_text in ("", "*"):
            protocols = ["tcp", "udp"]
        else:
            protocols = []
            for protocol in protocols_text.split(","):
                cleaned = protocol.strip().lower()
                if cleaned not in ("tcp", "udp"):
                    raise ConfigError(flag, f"protocol '{cleaned}' is invalid or unsupported")
                protocols.append(cleaned)
        out.extend(PortsForUids(p, ports.replace("-", ":"), uids.replace("-", ":")) for p in protocols)
    return tuple(out)


def parse_ips(values: Sequence[str], flag: str) -> tuple[IPv4Network | IPv6Network, ...]:
    """Addresses or CIDRs, each value comma-separated (Kuma 2.9's --exclude-*-ips)."""
    out: list[IPv4Network | IPv6Network] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(ip_network(part, strict=False))
            except ValueError:
                raise ConfigError(flag, f"'{part}' is not an IP address or CIDR") from None
    return tuple(out)
