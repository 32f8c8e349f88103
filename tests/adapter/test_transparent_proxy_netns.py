"""`meshgatectl install/uninstall transparent-proxy` in real network namespaces, with real iptables.

Two namespaces joined by a veth: `tp` gets the rules, `peer` holds 10.1.2.3 (echo servers on :80 and :81
answering "peer"), 10.1.2.53 (a resolver for `example`) and a zone-like DNS on 10.1.2.3:5653 for `mesh`. In
`tp`, a plain listener on :15001 stands in for Envoy's outbound capture listener and reports each connection's
SO_ORIGINAL_DST. uid 5678 is the data plane's (`--kuma-dp-uid`, Kuma's default uid; no such user is needed:
the programs drop to the number, see tests/support/netns_programs.py), uid 1234 an application's, uid 65534
(nobody) the non-root operator.

These need root, iproute2 and iptables: without them they skip on a developer machine and fail under CI
(meshgate.testing.tools: NETNS, IPTABLES_RESTORE).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import pytest

from meshgate.testing.tools import IPTABLES_RESTORE, require
from meshgate.transparentproxy.rules import COMMENT
from tests.support.netns import Netns, netns, veth

DP_UID = 5678
APP_UID = 1234
NOBODY = 65534
_COUNTERS = re.compile(r" \[\d+:\d+\]$")


@pytest.fixture
def pair() -> Iterator[tuple[Netns, Netns]]:
    require(IPTABLES_RESTORE)
    with netns("tp") as tp, netns("peer") as peer, veth(tp, ["10.1.2.1/24"], peer, ["10.1.2.3/24", "10.1.2.53/24"]):
        tp.sh("ip", "route", "add", "default", "via", "10.1.2.3")
        peer.start("echo-server", "10.1.2.3", "80", "peer")
        peer.start("echo-server", "10.1.2.3", "81", "peer")
        yield tp, peer


def _rules(ns: Netns) -> set[str]:
    """The rules and user chains `iptables-save` shows (counters and comments left out), both families."""
    out = set()
    for save in ("iptables-save", "ip6tables-save"):
        for line in ns.sh(save).stdout.splitlines():
            if line.startswith("-A ") or (line.startswith(":") and line.split()[1] != "ACCEPT"):
                out.add(save + ": " + _COUNTERS.sub("", line))
    return out


def _install(ns: Netns, *flags: str) -> None:
    done = ns.run("meshgatectl", "install", "transparent-proxy", "--kuma-dp-uid", str(DP_UID), *flags)
    assert done.returncode == 0, done.stdout + done.stderr


def _connect(ns: Netns, port: int, uid: int) -> str:
    return ns.run("connect", "10.1.2.3", str(port), uid=uid).stdout.strip()


def test_outbound_is_captured_except_the_dp_uid_and_excluded_ports_and_uninstall_restores(
    pair: tuple[Netns, Netns],
) -> None:
    tp, _ = pair
    before = _rules(tp)
    tp.start("orig-dst-server", "0.0.0.0", "15001")  # Envoy binds 0.0.0.0:15001 too
    assert _connect(tp, 80, APP_UID) == "peer"  # nothing installed yet

    _install(tp, "--exclude-outbound-ports", "81")

    assert _connect(tp, 80, APP_UID) == "10.1.2.3:80"  # captured on 15001, original destination intact
    assert _connect(tp, 80, DP_UID) == "peer"  # the data plane's own connections leave as they are
    assert _connect(tp, 81, APP_UID) == "peer"  # --exclude-outbound-ports
    installed = _rules(tp)
    assert any("KUMA_MESH_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports 15001" in r for r in installed)

    # A second install is refused, as kumactl 2.7's restore fails on the existing chains; nothing doubles.
    again = tp.run("meshgatectl", "install", "transparent-proxy", "--kuma-dp-uid", str(DP_UID))
    assert again.returncode == 1
    assert "already installed" in again.stderr
    assert "meshgatectl uninstall transparent-proxy" in again.stderr
    assert _rules(tp) == installed

    done = tp.run("meshgatectl", "uninstall", "transparent-proxy")
    assert done.returncode == 0, done.stderr
    saved = tp.sh("iptables-save").stdout + tp.sh("ip6tables-save").stdout
    assert "KUMA_" not in saved
    assert COMMENT not in saved
    assert _rules(tp) == before
    assert _connect(tp, 80, APP_UID) == "peer"  # the redirect is gone


@pytest.mark.parametrize(
    ("flag", "resolver"),
    [("--redirect-dns", "10.1.2.53"), ("--redirect-all-dns-traffic", "10.7.7.7")],
    ids=["resolv-conf-servers", "all-dns"],
)
def test_dns_goes_to_the_data_planes_dns_server(pair: tuple[Netns, Netns], flag: str, resolver: str) -> None:
    """--redirect-dns captures queries to resolv.conf's servers, --redirect-all-dns-traffic any query; both
    land on meshgate-dp's DNS server (port 15053, run as the dp uid), which answers .mesh from the zone's DNS
    and asks resolv.conf's server for other names without being captured itself."""
    tp, peer = pair
    tp.resolv_conf("nameserver 10.1.2.53\n")
    peer.start("zone-dns", "10.1.2.53", "53", "example", "www.example=10.9.9.9")
    peer.start("zone-dns", "10.1.2.3", "5653", "mesh", "backend.mesh=240.0.0.7")
    tp.start("dp-dns", "15053", "10.1.2.3:5653", "10.1.2.53", uid=DP_UID)
    assert tp.run("dig", "10.1.2.53", "backend.mesh", uid=APP_UID).stdout.strip() == "REFUSED"  # not yet

    _install(tp, flag)

    assert tp.run("dig", resolver, "backend.mesh", uid=APP_UID).stdout.strip() == "240.0.0.7"
    assert tp.run("dig", resolver, "www.example", uid=APP_UID).stdout.strip() == "10.9.9.9"
    # The data plane's own queries go to the resolver itself, which knows nothing of .mesh.
    assert tp.run("dig", "10.1.2.53", "backend.mesh", uid=DP_UID).stdout.strip() == "REFUSED"
    assert tp.run("meshgatectl", "uninstall", "transparent-proxy").returncode == 0
    assert tp.run("dig", "10.1.2.53", "backend.mesh", uid=APP_UID).stdout.strip() == "REFUSED"


def test_non_root_is_refused_with_what_it_needs(pair: tuple[Netns, Netns]) -> None:
    tp, _ = pair
    env = {**os.environ, "HOME": "/nonexistent"}  # nobody's; root's config is not readable
    for verb in ("install", "uninstall"):
        done = tp.run("meshgatectl", verb, "transparent-proxy", "--kuma-dp-uid", "5678", uid=NOBODY, env=env)
        if verb == "uninstall":
            done = tp.run("meshgatectl", verb, "transparent-proxy", uid=NOBODY, env=env)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "CAP_NET_ADMIN" in done.stderr
        assert "root" in done.stderr
    assert "KUMA_" not in tp.sh("iptables-save").stdout
