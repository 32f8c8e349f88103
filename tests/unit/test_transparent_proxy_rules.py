"""The transparent proxy's rules as data (meshgate.transparentproxy), checked against kumactl 2.7's golden files
(app/kumactl/cmd/install/testdata/install-transparent-proxy.*.golden.txt at v2.7.29) with the golden's
placeholders filled in and our comment match taken out; and the cleanup computed from `iptables-save`."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from meshgate.cli.meshgatectl import app
from meshgate.transparentproxy import COMMENT, TransparentProxyConfig, build, cleanup
from meshgate.transparentproxy.config import ConfigError, PortsForUids, parse_ports, parse_ports_for_uids

_COMMENT_MATCH = f" -m comment --comment {COMMENT}"

# install-transparent-proxy.defaults.golden.txt, uid 0, loopback lo, inbound port 15006.
KUMA_DEFAULTS = """\
* nat
-N KUMA_MESH_INBOUND
-N KUMA_MESH_OUTBOUND
-N KUMA_MESH_INBOUND_REDIRECT
-N KUMA_MESH_OUTBOUND_REDIRECT
-A PREROUTING -p tcp -j KUMA_MESH_INBOUND
-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND
-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -s 127.0.0.6/32 -o lo -j RETURN
-A KUMA_MESH_OUTBOUND -p tcp -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 0 -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -p tcp -o lo -m owner ! --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -m owner --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN
-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT
-A KUMA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""

# install-transparent-proxy.dns.golden.txt: --redirect-all-dns-traffic --redirect-dns-port 12345.
KUMA_DNS = """\
* raw
-A PREROUTING -p udp --sport 53 -j CT --zone 1
-A OUTPUT -p udp --dport 53 -m owner --uid-owner 0 -j CT --zone 1
-A OUTPUT -p udp --sport 12345 -m owner --uid-owner 0 -j CT --zone 2
-A OUTPUT -p udp --dport 53 -j CT --zone 2
COMMIT
* nat
-N KUMA_MESH_INBOUND
-N KUMA_MESH_OUTBOUND
-N KUMA_MESH_INBOUND_REDIRECT
-N KUMA_MESH_OUTBOUND_REDIRECT
-A PREROUTING -p tcp -j KUMA_MESH_INBOUND
-I OUTPUT 1 -p udp --dport 53 -m owner --uid-owner 0 -j RETURN
-I OUTPUT 2 -p udp --dport 53 -j REDIRECT --to-ports 12345
-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND
-A KUMA_MESH_INBOUND -p tcp -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -s 127.0.0.6/32 -o lo -j RETURN
-A KUMA_MESH_OUTBOUND -p tcp ! --dport 53 -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 0 -j KUMA_MESH_INBOUND_REDIRECT
-A KUMA_MESH_OUTBOUND -p tcp ! --dport 53 -o lo -m owner ! --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -m owner --uid-owner 0 -j RETURN
-A KUMA_MESH_OUTBOUND -p tcp --dport 53 -j REDIRECT --to-ports 12345
-A KUMA_MESH_OUTBOUND -d 127.0.0.1/32 -j RETURN
-A KUMA_MESH_OUTBOUND -j KUMA_MESH_OUTBOUND_REDIRECT
-A KUMA_MESH_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001
COMMIT
"""


def _as_kuma(text: str) -> str:
    return text.replace(_COMMENT_MATCH, "")


def test_defaults_are_kumas() -> None:
    assert _as_kuma(build(TransparentProxyConfig(uid="0")).render()) == KUMA_DEFAULTS


def test_all_dns_is_kumas() -> None:
    cfg = TransparentProxyConfig(uid="0", redirect_dns=True, capture_all_dns=True, dns_port=12345)
    assert _as_kuma(build(cfg).render()) == KUMA_DNS


def test_uid_port_exclusions_are_kumas() -> None:
    """install-transparent-proxy.excludedports.txt's OUTPUT rules, from its flags."""
    entries = parse_ports_for_uids(
        ["tcp:1900,1902,1000-2000:106-108", "tcp:2900,2902,3000-5000:203", "udp:3900,3902,4000-6000:303"]
    )
    rules = _as_kuma(build(TransparentProxyConfig(uid="0", exclude_outbound_ports_for_uids=entries)).render())
    assert "\n".join(line for line in rules.splitlines() if line.startswith("-I OUTPUT")) == "\n".join(
        [
            "-I OUTPUT 1 -m multiport -p tcp --dport 1900,1902,1000:2000 -m owner --uid-owner 106:108 -j RETURN",
            "-I OUTPUT 2 -m multiport -p tcp --dport 2900,2902,3000:5000 -m owner --uid-owner 203 -j RETURN",
            "-I OUTPUT 3 -m multiport -p udp --dport 3900,3902,4000:6000 -m owner --uid-owner 303 -j RETURN",
        ]
    )


def test_every_rule_in_a_builtin_chain_carries_the_comment() -> None:
    cfg = TransparentProxyConfig(
        uid="5678", redirect_dns=True, exclude_outbound_ports_for_uids=parse_ports_for_uids(["7"])
    )
    text = build(cfg, dns_servers=["10.0.0.2", "fd00::2"]).render()
    builtin = [
        line for line in text.splitlines() if line[:2] in ("-A", "-I") and line.split()[1] in ("OUTPUT", "PREROUTING")
    ]
    assert builtin
    assert all(_COMMENT_MATCH in line for line in builtin)
    assert "fd00::2" not in text  # IPv6 resolvers go to ip6tables only
    assert "-s 10.0.0.2 -p udp --sport 53 -j CT --zone 1" in text


def test_exclusions_by_address_follow_the_family() -> None:
    from ipaddress import ip_network

    cfg = TransparentProxyConfig(
        uid="1",
        exclude_outbound_ips=(ip_network("10.0.0.0/8"), ip_network("fd00::/8")),
        exclude_inbound_ips=(ip_network("192.168.1.1"),),
    )
    v4, v6 = build(cfg).render(), build(cfg, ipv6=True).render()
    assert "-I OUTPUT 1 -m comment --comment kuma/mesh/transparent/proxy -d 10.0.0.0/8 -j RETURN" in v4
    assert "fd00::/8" in v6
    assert "fd00::/8" not in v4
    assert "-A KUMA_MESH_INBOUND -s 192.168.1.1/32 -j RETURN" in v4
    assert "::6/128" in v6
    assert "::1/128" in v6


def test_parsing_is_kumas() -> None:
    assert parse_ports("22, 443", "--x") == (22, 443)
    assert parse_ports_for_uids(["5"]) == (PortsForUids("tcp", "1:65535", "5"), PortsForUids("udp", "1:65535", "5"))
    for bad, message in [
        ("*", "can't use wildcard '*' for uids"),
        ("80:1,2", "it should either be a single item or a range"),
        ("icmp:80:1", "protocol 'icmp' is invalid or unsupported"),
        ("a:b:c:d", "format for excluding ports by uids"),
    ]:
        with pytest.raises(ConfigError, match=message.replace("*", r"\*")):
            parse_ports_for_uids([bad])
    with pytest.raises(ConfigError, match="is not valid uint16"):
        parse_ports("70000", "--exclude-inbound-ports")


SAVED = """\
# Generated by iptables-save v1.8.9 (nf_tables)
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A OUTPUT -p udp -m comment --comment kuma/mesh/transparent/proxy -m udp --dport 53 -m owner --uid-owner 5 -j CT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUMA_MESH_INBOUND - [0:0]
:KUMA_MESH_OUTBOUND - [0:0]
:OTHER - [0:0]
-A PREROUTING -p tcp -m comment --comment kuma/mesh/transparent/proxy -j KUMA_MESH_INBOUND
-A PREROUTING -p tcp -j OTHER
-A OUTPUT -p udp -m comment --comment "someone else" -j RETURN
-A OUTPUT -p tcp -j KUMA_MESH_OUTBOUND
-A KUMA_MESH_INBOUND -p tcp -j RETURN
COMMIT
"""


def test_cleanup_removes_ours_and_nothing_else() -> None:
    assert cleanup(SAVED) == (
        "*raw\n"
        "-D OUTPUT -p udp -m comment --comment kuma/mesh/transparent/proxy -m udp --dport 53 -m owner --uid-owner 5"
        " -j CT\n"
        "COMMIT\n"
        "*nat\n"
        "-D PREROUTING -p tcp -m comment --comment kuma/mesh/transparent/proxy -j KUMA_MESH_INBOUND\n"
        "-D OUTPUT -p tcp -j KUMA_MESH_OUTBOUND\n"  # a kumactl 2.7 rule: no comment, but it jumps to our chain
        "-F KUMA_MESH_INBOUND\n-F KUMA_MESH_OUTBOUND\n-X KUMA_MESH_INBOUND\n-X KUMA_MESH_OUTBOUND\n"
        "COMMIT\n"
    )
    assert cleanup("*nat\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -j OTHER\nCOMMIT\n") == ""


def test_dry_run_needs_no_root_and_prints_the_rules() -> None:
    result = CliRunner().invoke(
        app, ["install", "transparent-proxy", "--kuma-dp-uid", "5678", "--ip-family-mode", "ipv4", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "-A KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in result.output
    assert "--uid-owner 5678" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "--kuma-dp-user or --kuma-dp-uid should be supplied"),
        (["--kuma-dp-uid", "5", "--redirect-dns", "--redirect-all-dns-traffic"], "one of --redirect-dns or"),
        (["--kuma-dp-user", "no-such-user-here"], "should refer to a valid user on the host"),
        (["--kuma-dp-uid", "5", "--exclude-outbound-ports", "x"], "--exclude-outbound-ports: value 'x'"),
    ],
)
def test_kumactls_checks(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["install", "transparent-proxy", *args, "--dry-run"])
    assert result.exit_code == 1
    assert message in result.output
