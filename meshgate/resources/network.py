"""Ports, hostnames and addresses, with Kuma 2.7's messages (`validators.go`, `dataplane_validator.go`).

Kuma leans on Go's `net.ParseIP` and govalidator's `IsDNSName`; the equivalents here follow the same grammar.
"""

from __future__ import annotations

import ipaddress
import re

from meshgate.resources.errors import Path, Violations

__all__ = [
    "WILDCARD_HOSTNAME",
    "check_hostname",
    "check_port",
    "is_dns_name",
    "is_ip",
    "split_host_port",
]

WILDCARD_HOSTNAME = "*"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DOMAIN = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
# govalidator's DNSName: labels of letters, digits, '_' and '-', up to 63 each, with an optional trailing dot.
_GOVALIDATOR_DNS_NAME = re.compile(r"([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?")


def check_port(out: Violations, path: Path, port: int) -> None:
    if port == 0 or port > 65535:
        out.add(path, "port must be in the range [1, 65535]")


def check_hostname(out: Violations, path: Path, hostname: str) -> None:
    """A gateway hostname: `*`, `domain.name` or `*.domain.name` (one leading wildcard label), lowercase."""
    if hostname == WILDCARD_HOSTNAME:
        return
    if len(hostname) > 253:
        out.add(path, "must be at most 253 characters")
    if hostname.startswith("*."):
        if not _DOMAIN.fullmatch(hostname.removeprefix("*.")):
            out.add(path, "invalid wildcard domain")
        return
    if not _DOMAIN.fullmatch(hostname):
        out.add(path, "invalid hostname")


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    # Go's ParseIP has no IPv6 zones ("fe80::1%eth0").
    return "%" not in text


def is_dns_name(text: str) -> bool:
    if text == "" or len(text.replace(".", "")) > 255:
        return False
    return not is_ip(text) and _GOVALIDATOR_DNS_NAME.fullmatch(text) is not None


def split_host_port(address: str) -> tuple[str, str] | None:
    """Go's `net.SplitHostPort`: `host:port` or `[v6]:port`; None when malformed."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or address[end + 1 : end + 2] != ":":
            return None
        return address[1:end], address[end + 2 :]
    host, sep, port = address.rpartition(":")
    if not sep or ":" in host:
        return None
    return host, port
