"""Installs and removes the transparent proxy's rules in the current network namespace: the thin adapter around
`rules.py` that runs `iptables-save` and `iptables-restore --noflush` (and their ip6tables twins).

    install:   tools found -> CAP_NET_ADMIN held -> nothing of ours installed yet -> IPv4 restored -> IPv6
               restored (if the namespace has IPv6; an IPv6 failure takes the IPv4 rules out again)
    uninstall: tools found -> CAP_NET_ADMIN held -> per family, `rules.cleanup(iptables-save)` restored

Errors (all `TransparentProxyError`, a one-line message for the command to print):

    TransparentProxyError
    ├── ToolsMissingError       no iptables-restore/iptables-save: Debian's `iptables` package provides them
    ├── NotPermittedError       no CAP_NET_ADMIN: run as root
    ├── AlreadyInstalledError   KUMA_ chains present: uninstall first (Kuma 2.7's restore fails on them too)
    └── RestoreFailedError      iptables-restore refused the rules (its stderr in the message)

What is detected here, as Kuma does: IPv6 is on when some interface has a non-loopback IPv6 address and
ip6tables has a nat table (transparentproxy_v2.go:24-61; `--ip-family-mode ipv4` turns it off); the resolvers
`--redirect-dns` captures are resolv.conf's `nameserver`s (builder/dns.go); the conntrack zone split needs
iptables' conntrack extension (config.go:206-229); with IPv6, `::6/128` goes on lo so Envoy's inbound
passthrough can bind it (builder.go:288-309). Unlike Kuma, the iptables binary is the one on PATH (or in
/usr/sbin, /sbin): no choice between its nft and legacy variants, and no DOCKER_OUTPUT detection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from meshgate.transparentproxy.config import TransparentProxyConfig
from meshgate.transparentproxy.rules import Ruleset, build, cleanup, installed_chains

__all__ = [
    "AlreadyInstalledError",
    "Host",
    "NotPermittedError",
    "RestoreFailedError",
    "ToolsMissingError",
    "TransparentProxyError",
    "detect_host",
    "has_net_admin",
    "install",
    "uninstall",
]

_CAP_NET_ADMIN = 12
_IFF_LOOPBACK = 0x8
# Kuma's fallbackPaths (builder_restore.go:23-28): root's PATH may lack sbin under sudo or in a container.
_FALLBACK_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
_RESTORE_TIMEOUT = 60.0

Echo = Callable[[str], None]


class TransparentProxyError(Exception):
    pass


class ToolsMissingError(TransparentProxyError):
    pass


class NotPermittedError(TransparentProxyError):
    pass


class AlreadyInstalledError(TransparentProxyError):
    pass


class RestoreFailedError(TransparentProxyError):
    pass


@dataclass(frozen=True, slots=True)
class _Family:
    ipv6: bool
    save: str
    restore: str

    @property
    def name(self) -> str:
        return "ip6tables" if self.ipv6 else "iptables"


def _find(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _FALLBACK_DIRS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _family(ipv6: bool) -> _Family:
    prefix = "ip6tables" if ipv6 else "iptables"
    save, restore = _find(f"{prefix}-save"), _find(f"{prefix}-restore")
    if save is None or restore is None:
        missing = [n for n, p in ((f"{prefix}-save", save), (f"{prefix}-restore", restore)) if p is None]
        raise ToolsMissingError(
            f"{', '.join(missing)} not found: install Debian's iptables package (apt-get install iptables;"
            " scripts/ensure-system-packages does it)"
        )
    return _Family(ipv6, save, restore)


def has_net_admin() -> bool:
    """Whether this process holds CAP_NET_ADMIN (effective), which changing iptables needs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> _CAP_NET_ADMIN & 1)
    except OSError:
        pass
    return os.geteuid() == 0


def _require_net_admin(action: str) -> None:
    if not has_net_admin():
        raise NotPermittedError(
            f"{action} the transparent proxy changes iptables, which needs CAP_NET_ADMIN in this network namespace"
            f" (this process runs as uid {os.geteuid()} without it): run it as root, e.g. with sudo"
        )


def _run(argv: list[str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=_RESTORE_TIMEOUT, check=False)


def _save(family: _Family) -> str:
    done = _run([family.save])
    if done.returncode != 0:
        raise RestoreFailedError(f"{family.save} failed: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _restore(family: _Family, text: str) -> None:
    done = _run([family.restore, "--noflush"], text)
    if done.returncode != 0:
        detail = " ".join(done.stderr.split()) or f"exit {done.returncode}"
        raise RestoreFailedError(f"{family.restore} --noflush failed: {detail}")


@dataclass(frozen=True, slots=True)
class Host:
    """What the rules depend on in this namespace."""

    ipv6: bool
    loopback: str
    dns_v4: tuple[str, ...]
    dns_v6: tuple[str, ...]
    conntrack: bool


def _loopback() -> str:
    # Kuma takes the first interface flagged LOOPBACK (loopback.go); sysfs shows the namespace's interfaces.
    try:
        for path in sorted(Path("/sys/class/net").iterdir()):
            if int((path / "flags").read_text(), 16) & _IFF_LOOPBACK:
                return path.name
    except (OSError, ValueError):
        pass
    return "lo"


def _has_local_ipv6() -> bool:
    # /proc/net/if_inet6: address, ifindex, prefix length, scope, flags, name; ::1 is the loopback.
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return False
    return any(line.split()[0] != "0" * 31 + "1" for line in lines if line.strip())


def _dns_servers(resolv_conf: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    v4: list[str] = []
    v6: list[str] = []
    try:
        text = resolv_conf.read_text()
    except OSError:
        return (), ()
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            (v6 if ":" in fields[1] else v4).append(fields[1].split("%")[0])
    return tuple(v4), tuple(v6)


def detect_host(*, ipv4_only: bool, resolv_conf: Path = Path("/etc/resolv.conf")) -> Host:
    ipv6 = False
    if not ipv4_only and _has_local_ipv6():
        ip6tables = _find("ip6tables")
        # The nat table may be missing from the kernel (kuma#2046): no IPv6 rules then.
        ipv6 = ip6tables is not None and _run([ip6tables, "-t", "nat", "-L", "-n"]).returncode == 0
    iptables = _find("iptables")
    conntrack = iptables is not None and _run([iptables, "-m", "conntrack", "--help"]).returncode == 0
    v4, v6 = _dns_servers(resolv_conf)
    return Host(ipv6=ipv6, loopback=_loopback(), dns_v4=v4, dns_v6=v6, conntrack=conntrack)


def rulesets(cfg: TransparentProxyConfig, host: Host) -> list[Ruleset]:
    """IPv4's rules, then IPv6's when the namespace has IPv6."""
    if not host.conntrack and cfg.conntrack_zone_split:
        cfg = _without_zone_split(cfg)
    out = [build(cfg, ipv6=False, loopback=host.loopback, dns_servers=host.dns_v4)]
    if host.ipv6:
        out.append(build(cfg, ipv6=True, loopback=host.loopback, dns_servers=host.dns_v6))
    return out


def _without_zone_split(cfg: TransparentProxyConfig) -> TransparentProxyConfig:
    return replace(cfg, conntrack_zone_split=False)


def install(cfg: TransparentProxyConfig, host: Host, *, echo: Echo, warn: Echo, verbose: bool = False) -> None:
    """Installs the rules; refuses (AlreadyInstalledError) when KUMA_ chains are already there."""
    if cfg.redirect_dns and cfg.conntrack_zone_split and not host.conntrack:
        warn("# [WARNING] iptables' conntrack extension is missing: no DNS conntrack zone split rules")
    families = [_family(False), *([_family(True)] if host.ipv6 else [])]
    _require_net_admin("installing")
    for family in families:
        present = installed_chains(_save(family))
        if present:
            chains = ", ".join(f"{table}/{c}" for table, names in present.items() for c in names)
            raise AlreadyInstalledError(
                f"the transparent proxy is already installed in this network namespace ({family.name}: {chains}):"
                " run `meshgatectl uninstall transparent-proxy` first"
            )
    done: list[_Family] = []
    try:
        for family, ruleset in zip(families, rulesets(cfg, host), strict=True):
            text = ruleset.render(verbose)
            if verbose:
                echo(f"# {family.restore} --noflush <<EOF\n{text}EOF")
            _restore(family, text)
            done.append(family)
            if family.ipv6:
                _passthrough_address(add=True)
    except TransparentProxyError:
        for family in done:  # never leave one family redirected and the other not
            leftover = cleanup(_save(family))
            if leftover:
                _restore(family, leftover)
        raise
    echo("# iptables set to divert the traffic to Envoy")


def uninstall(*, echo: Echo, dry_run: bool = False) -> bool:
    """Removes what `install` added, in both families; returns whether there was anything to remove."""
    families = [_family(False)]
    ip6 = _find("ip6tables-save") and _find("ip6tables-restore")
    if ip6:
        families.append(_family(True))
    if not dry_run:
        _require_net_admin("uninstalling")
    removed = False
    for family in families:
        try:
            text = cleanup(_save(family))
        except RestoreFailedError:
            if family.ipv6:  # no ip6tables nat support in this kernel: nothing of ours there either
                continue
            raise
        if not text:
            continue
        removed = True
        if dry_run:
            echo(f"# {family.restore} --noflush <<EOF\n{text}EOF")
            continue
        _restore(family, text)
        if family.ipv6:
            _passthrough_address(add=False)
    return removed


def _passthrough_address(*, add: bool) -> None:
    # `ip -6 addr add ::6/128 dev lo` (builder.go:288-309): IPv6's loopback is a /128, so Envoy's inbound
    # passthrough cluster could not bind ::6 otherwise. "File exists" is fine; so is a missing `ip`.
    ip = _find("ip")
    if ip is not None:
        _run([ip, "-6", "addr", "add" if add else "del", "::6/128", "dev", "lo"])
