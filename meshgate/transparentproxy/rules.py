"""The transparent proxy's iptables rules as data, rendered for `iptables-restore --noflush`; and the rules that
take them out again, computed from `iptables-save`. Pure: no process is run here (`iptables.py` runs them).

The rules are Kuma's (pkg/transparentproxy/iptables/builder at v2.7.29), chain for chain:

    nat  PREROUTING  -p tcp -j KUMA_MESH_INBOUND                            (builder_table_nat.go:273-329)
         OUTPUT      -I 1.. uid/port exclusions, outbound IP exclusions, DNS (builder_table_nat.go:192-271)
                     -p tcp -j KUMA_MESH_OUTBOUND
         KUMA_MESH_INBOUND            excluded ports RETURN, the rest to KUMA_MESH_INBOUND_REDIRECT (:15-48)
         KUMA_MESH_OUTBOUND           excluded ports, Envoy's own traffic over lo, the data plane's uid, DNS over
                                      TCP, localhost; the rest to KUMA_MESH_OUTBOUND_REDIRECT (:50-175)
         KUMA_MESH_*_REDIRECT         -p tcp -j REDIRECT --to-ports 15006 / 15001 (:177-190)
    raw  OUTPUT/PREROUTING            DNS conntrack zones 1 (the data plane's own queries and their answers) and
                                      2 (everyone else's, answered by the data plane) (builder_table_raw.go)

The rendering is Kuma's non-verbose form (`* nat`, `-N`, `-A`, `-I CHAIN n`, one table per `COMMIT`;
table/table.go:21-69), so `--dry-run` prints what kumactl prints, with two additions from Kuma 2.9 that 2.7
lacks: every rule this adds to a built-in chain carries `-m comment --comment kuma/mesh/transparent/proxy`
(consts.go:191 at v2.9.13), which is how `cleanup` finds rules that jump to no KUMA_ chain (the DNS redirect,
the conntrack zones, the exclusions); and `--exclude-outbound-ips`/`--exclude-inbound-ips`
(builder_table_nat.go at v2.9.13: `-d IP -j RETURN` first in OUTPUT, `-s IP -j RETURN` first in
KUMA_MESH_INBOUND). The raw table's per-resolver PREROUTING rule matches the resolver as source, as 2.9 does
(builder_table_raw.go:85-93 at v2.9.13); 2.7 matched it as destination, which no answer has.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import ip_address

from meshgate.transparentproxy.config import TransparentProxyConfig

__all__ = [
    "CHAIN_PREFIX",
    "COMMENT",
    "INBOUND_CHAIN",
    "INBOUND_PASSTHROUGH_V4",
    "INBOUND_PASSTHROUGH_V6",
    "INBOUND_REDIRECT_CHAIN",
    "OUTBOUND_CHAIN",
    "OUTBOUND_REDIRECT_CHAIN",
    "Rule",
    "Ruleset",
    "Table",
    "build",
    "cleanup",
    "installed_chains",
]

# Chain names: Kuma's NamePrefix "KUMA_" (transparentproxy_v2.go:163) before its chain names (config.go:240-249).
CHAIN_PREFIX = "KUMA_"
INBOUND_CHAIN = "KUMA_MESH_INBOUND"
INBOUND_REDIRECT_CHAIN = "KUMA_MESH_INBOUND_REDIRECT"
OUTBOUND_CHAIN = "KUMA_MESH_OUTBOUND"
OUTBOUND_REDIRECT_CHAIN = "KUMA_MESH_OUTBOUND_REDIRECT"
COMMENT = "kuma/mesh/transparent/proxy"
# The source Envoy's inbound passthrough cluster binds to (consts.go:20-21): its traffic over lo is let through.
INBOUND_PASSTHROUGH_V4 = "127.0.0.6/32"
INBOUND_PASSTHROUGH_V6 = "::6/128"
_LOCALHOST_V4 = "127.0.0.1/32"
_LOCALHOST_V6 = "::1/128"
_DNS_PORT = 53
_BUILTIN_CHAINS = frozenset({"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"})


@dataclass(frozen=True, slots=True)
class Rule:
    chain: str
    args: tuple[str, ...]
    # 0 appends (-A); n inserts at n (-I CHAIN n), which is how Kuma puts its exclusions before other rules.
    position: int = 0

    def render(self) -> str:
        head = ["-A", self.chain] if self.position == 0 else ["-I", self.chain, str(self.position)]
        if self.chain in _BUILTIN_CHAINS:
            head += ["-m", "comment", "--comment", COMMENT]
        return " ".join([*head, *self.args])


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    chains: tuple[str, ...]  # chains this creates (-N)
    rules: tuple[Rule, ...]

    def render(self, verbose: bool) -> str:
        if not self.rules:
            return ""
        lines = [f"* {self.name}"]
        if verbose and self.chains:
            lines.append("# Custom Chains:")
        lines += [f"-N {chain}" for chain in self.chains]
        if verbose:
            lines.append("# Rules:")
        lines += [rule.render() for rule in self.rules]
        lines.append("COMMIT")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Ruleset:
    """One address family's rules: iptables' for IPv4, ip6tables' for IPv6."""

    ipv6: bool
    tables: tuple[Table, ...]

    def render(self, verbose: bool = False) -> str:
        rendered = [text for text in (table.render(verbose) for table in self.tables) if text]
        return ("\n\n" if verbose else "\n").join(rendered) + "\n"

    def table(self, name: str) -> Table:
        return next(t for t in self.tables if t.name == name)


def _owner(uid: str, *, negate: bool = False) -> tuple[str, ...]:
    return ("-m", "owner", "!", "--uid-owner", uid) if negate else ("-m", "owner", "--uid-owner", uid)


def _redirect(port: int) -> tuple[str, ...]:
    return ("-j", "REDIRECT", "--to-ports", str(port))


def _same_family(address: str, ipv6: bool) -> bool:
    return (ip_address(address.split("/")[0]).version == 6) == ipv6


def _nat(cfg: TransparentProxyConfig, *, ipv6: bool, loopback: str, dns_servers: Sequence[str]) -> Table:
    uid = cfg.uid
    localhost = _LOCALHOST_V6 if ipv6 else _LOCALHOST_V4
    passthrough = INBOUND_PASSTHROUGH_V6 if ipv6 else INBOUND_PASSTHROUGH_V4
    rules: list[Rule] = []

    # PREROUTING: every inbound TCP connection goes through KUMA_MESH_INBOUND.
    rules.append(Rule("PREROUTING", ("-p", "tcp", "-j", INBOUND_CHAIN)))

    # OUTPUT, inserted at the top in this order: uid exclusions, IP exclusions, DNS.
    inserted: list[tuple[str, ...]] = []
    for entry in cfg.exclude_outbound_ports_for_uids:
        inserted.append(
            ("-m", "multiport", "-p", entry.protocol, "--dport", entry.ports, *_owner(entry.uids), "-j", "RETURN")
        )
    for network in cfg.exclude_outbound_ips:
        if (network.version == 6) == ipv6:
            inserted.append(("-d", str(network), "-j", "RETURN"))
    if cfg.redirect_dns:
        # The data plane's own queries go out untouched (kumactl sets the upstream target chain to RETURN,
        # install_transparent_proxy.go:286); everyone else's go to the data plane's DNS port.
        inserted.append(("-p", "udp", "--dport", str(_DNS_PORT), *_owner(uid), "-j", "RETURN"))
        if cfg.capture_all_dns:
            inserted.append(("-p", "udp", "--dport", str(_DNS_PORT), *_redirect(cfg.dns_port)))
        else:
            inserted += [
                ("-d", server, "-p", "udp", "--dport", str(_DNS_PORT), *_redirect(cfg.dns_port))
                for server in dns_servers
                if _same_family(server, ipv6)
            ]
    rules += [Rule("OUTPUT", args, position=i) for i, args in enumerate(inserted, start=1)]
    rules.append(Rule("OUTPUT", ("-p", "tcp", "-j", OUTBOUND_CHAIN)))

    # KUMA_MESH_INBOUND
    if not cfg.redirect_inbound:
        rules.append(Rule(INBOUND_CHAIN, ("-p", "tcp", "-j", "RETURN")))
    else:
        for network in cfg.exclude_inbound_ips:
            if (network.version == 6) == ipv6:
                rules.append(Rule(INBOUND_CHAIN, ("-s", str(network), "-j", "RETURN")))
        for port in cfg.exclude_inbound_ports:
            rules.append(Rule(INBOUND_CHAIN, ("-p", "tcp", "--dport", str(port), "-j", "RETURN")))
        rules.append(Rule(INBOUND_CHAIN, ("-p", "tcp", "-j", INBOUND_REDIRECT_CHAIN)))

    # KUMA_MESH_OUTBOUND
    out = OUTBOUND_CHAIN
    for port in cfg.exclude_outbound_ports:
        rules.append(Rule(out, ("-p", "tcp", "--dport", str(port), "-j", "RETURN")))
    tcp_not_dns = ("-p", "tcp", "!", "--dport", str(_DNS_PORT)) if cfg.redirect_dns else ("-p", "tcp")
    rules += [
        # Envoy's inbound passthrough, from 127.0.0.6 (::6) over lo, reaches the application untouched.
        Rule(out, ("-s", passthrough, "-o", loopback, "-j", "RETURN")),
        # The data plane talking to this host's own address over lo: that is inbound traffic, so Envoy's
        # inbound listener takes it (a sidecar calling its own service through its mesh address).
        Rule(out, (*tcp_not_dns, "-o", loopback, "!", "-d", localhost, *_owner(uid), "-j", INBOUND_REDIRECT_CHAIN)),
        # Anyone else over lo (to a local address) is not mesh traffic.
        Rule(out, (*tcp_not_dns, "-o", loopback, *_owner(uid, negate=True), "-j", "RETURN")),
        # The data plane's own outbound connections leave as they are: this is what keeps Envoy out of a loop.
        Rule(out, (*_owner(uid), "-j", "RETURN")),
    ]
    if cfg.redirect_dns:
        if cfg.capture_all_dns:
            rules.append(Rule(out, ("-p", "tcp", "--dport", str(_DNS_PORT), *_redirect(cfg.dns_port))))
        else:
            rules += [
                Rule(out, ("-d", server, "-p", "tcp", "--dport", str(_DNS_PORT), *_redirect(cfg.dns_port)))
                for server in dns_servers
                if _same_family(server, ipv6)
            ]
    rules += [
        Rule(out, ("-d", localhost, "-j", "RETURN")),
        Rule(out, ("-j", OUTBOUND_REDIRECT_CHAIN)),
        Rule(INBOUND_REDIRECT_CHAIN, ("-p", "tcp", *_redirect(cfg.redirect_inbound_port))),
        Rule(OUTBOUND_REDIRECT_CHAIN, ("-p", "tcp", *_redirect(cfg.redirect_outbound_port))),
    ]
    chains = (INBOUND_CHAIN, OUTBOUND_CHAIN, INBOUND_REDIRECT_CHAIN, OUTBOUND_REDIRECT_CHAIN)
    # iptables-restore wants a chain's rules after every chain is declared, in any order; Kuma lists the
    # built-in chains' rules first, then the new chains' in declaration order (table.go:26-35).
    order = {"PREROUTING": 0, "OUTPUT": 1, **{c: i + 2 for i, c in enumerate(chains)}}
    rules.sort(key=lambda r: order[r.chain])  # stable: each chain keeps its own order
    return Table("nat", chains, tuple(rules))


def _raw(cfg: TransparentProxyConfig, *, ipv6: bool, dns_servers: Sequence[str]) -> Table:
    """Conntrack zones for DNS (builder_table_raw.go:10-59): the data plane's query to the real resolver (zone
    1) and the application's query it answers (zone 2) share a 5-tuple after the REDIRECT, so without the
    split conntrack could hand one's reply to the other."""
    if not (cfg.redirect_dns and cfg.conntrack_zone_split):
        return Table("raw", (), ())
    dns = str(_DNS_PORT)
    output = [
        Rule("OUTPUT", ("-p", "udp", "--dport", dns, *_owner(cfg.uid), "-j", "CT", "--zone", "1")),
        Rule("OUTPUT", ("-p", "udp", "--sport", str(cfg.dns_port), *_owner(cfg.uid), "-j", "CT", "--zone", "2")),
    ]
    prerouting: list[Rule] = []
    if cfg.capture_all_dns:
        output.append(Rule("OUTPUT", ("-p", "udp", "--dport", dns, "-j", "CT", "--zone", "2")))
        prerouting.append(Rule("PREROUTING", ("-p", "udp", "--sport", dns, "-j", "CT", "--zone", "1")))
    else:
        for server in dns_servers:
            if _same_family(server, ipv6):
                output.append(Rule("OUTPUT", ("-d", server, "-p", "udp", "--dport", dns, "-j", "CT", "--zone", "2")))
                prerouting.append(
                    Rule("PREROUTING", ("-s", server, "-p", "udp", "--sport", dns, "-j", "CT", "--zone", "1"))
                )
    return Table("raw", (), (*prerouting, *output))


def build(
    cfg: TransparentProxyConfig, *, ipv6: bool = False, loopback: str = "lo", dns_servers: Sequence[str] = ()
) -> Ruleset:
    """The rules for one address family. `dns_servers`: the resolv.conf servers a `--redirect-dns` (not
    `--redirect-all-dns-traffic`) install captures; `loopback`: the loopback interface's name."""
    return Ruleset(
        ipv6,
        (
            _raw(cfg, ipv6=ipv6, dns_servers=dns_servers),
            _nat(cfg, ipv6=ipv6, loopback=loopback, dns_servers=dns_servers),
        ),
    )


_TABLE = re.compile(r"^\*(\S+)$")
_CHAIN = re.compile(r"^:(\S+) ")


def installed_chains(save_output: str) -> dict[str, list[str]]:
    """Table -> the KUMA_ chains `iptables-save` shows in it (empty tables left out)."""
    found: dict[str, list[str]] = {}
    table = ""
    for line in save_output.splitlines():
        if m := _TABLE.match(line):
            table = m.group(1)
        elif (m := _CHAIN.match(line)) and m.group(1).startswith(CHAIN_PREFIX):
            found.setdefault(table, []).append(m.group(1))
    return found


def _ours(args: list[str]) -> bool:
    # A rule in a built-in chain is ours when it carries our comment or jumps to one of our chains.
    for i, arg in enumerate(args[:-1]):
        if arg == "--comment" and args[i + 1] == COMMENT:
            return True
        if arg in ("-j", "-g") and args[i + 1].startswith(CHAIN_PREFIX):
            return True
    return False


def cleanup(save_output: str) -> str:
    """The `iptables-restore --noflush` input that removes what `build` installed, and nothing else: each of our
    rules in a built-in chain deleted by its exact spec as `iptables-save` prints it (`-D`), then our chains
    flushed (`-F`) and deleted (`-X`). "" when there is nothing of ours.

    Kuma 2.9 restores the whole saved ruleset with our lines left out (iptables/setup.go:51-119 at v2.9.13);
    deleting rule by rule leaves every other rule and every counter alone, and nothing of another program's
    written between our save and our restore is lost. (Kuma 2.7's iptables cleanup is not implemented:
    iptables/setup.go:36-38 at v2.7.29.)"""
    # Table -> (our rules in built-in chains as -D lines, our chains); dicts keep the tables' order.
    tables: dict[str, tuple[list[str], list[str]]] = {}
    table = ""
    for line in save_output.splitlines():
        if m := _TABLE.match(line):
            table = m.group(1)
        elif (m := _CHAIN.match(line)) and m.group(1).startswith(CHAIN_PREFIX):
            tables.setdefault(table, ([], []))[1].append(m.group(1))
        elif line.startswith("-A "):
            args = shlex.split(line)
            if args[1] in _BUILTIN_CHAINS and _ours(args):
                tables.setdefault(table, ([], []))[0].append(shlex.join(["-D", *args[1:]]))
    out: list[str] = []
    for name, (deletes, chains) in tables.items():
        out += [f"*{name}", *deletes, *(f"-F {c}" for c in chains), *(f"-X {c}" for c in chains), "COMMIT"]
    return "\n".join(out) + "\n" if out else ""
