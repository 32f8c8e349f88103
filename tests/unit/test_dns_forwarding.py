"""Forwarding without sockets: the `--dns-upstream` address, what `route` forwards, SERVFAIL, the reply check,
and the zone's command line parsing the flag and its variable."""

from __future__ import annotations

from ipaddress import IPv4Address

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest
import typer
import typer.core

from meshgate.dns.responder import FORWARD, Table, answer, route, servfail
from meshgate.dns.upstream import Upstream, is_reply_to
from zone_cp.cli import app

TABLE = Table("mesh", {"echo.mesh": IPv4Address("240.0.0.1")})


@pytest.mark.parametrize(
    ("text", "host", "port", "shown"),
    [
        ("10.0.0.1", "10.0.0.1", 53, "10.0.0.1:53"),
        ("10.0.0.1:5353", "10.0.0.1", 5353, "10.0.0.1:5353"),
        ("[::1]:53", "::1", 53, "[::1]:53"),
        ("[::1]", "::1", 53, "[::1]:53"),
        ("::1", "::1", 53, "[::1]:53"),
        ("[2001:DB8::1]:5300", "2001:db8::1", 5300, "[2001:db8::1]:5300"),
        (" 127.0.0.1:65535 ", "127.0.0.1", 65535, "127.0.0.1:65535"),
    ],
)
def test_upstream_addresses_parse_with_port_53_by_default(text: str, host: str, port: int, shown: str) -> None:
    upstream = Upstream.parse(text)
    assert upstream == Upstream(host, port)
    assert str(upstream) == shown
    assert Upstream.parse(str(upstream)) == upstream


@pytest.mark.parametrize(
    "text",
    ["", "dns.google:53", "localhost", "10.0.0.1:", "10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:x", "[::1", "[::1]53"],
)
def test_anything_but_an_ip_and_port_is_rejected_saying_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected IP\[:PORT\] or \[IPv6\]\[:PORT\]"):
        Upstream.parse(text)


def wire(name: str, rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype).to_wire()


def test_route_forwards_only_names_outside_the_domain() -> None:
    assert route(wire("example.com"), TABLE) is FORWARD
    assert route(wire("example.com", "TXT"), TABLE) is FORWARD
    assert route(wire("."), TABLE) is FORWARD
    for query in (wire("echo.mesh"), wire("other.mesh"), wire("mesh", "SOA"), wire("echo.mesh", "AAAA")):
        assert route(query, TABLE) == answer(query, TABLE)
    out = route(wire("other.mesh"), TABLE)
    assert isinstance(out, bytes)
    assert dns.message.from_wire(out).rcode() == dns.rcode.NXDOMAIN


def test_route_forwards_no_malformed_or_non_query_message() -> None:
    notify = dns.message.make_query("example.com", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    out = route(notify.to_wire(), TABLE)
    assert isinstance(out, bytes)
    assert dns.message.from_wire(out).rcode() == dns.rcode.NOTIMP
    query = wire("example.com")
    out = route(query[:-3], TABLE)
    assert isinstance(out, bytes)
    assert out[3] & 0x0F == dns.rcode.FORMERR
    assert route(query[:11], TABLE) is None
    response = dns.message.make_response(dns.message.from_wire(query)).to_wire()
    assert route(response, TABLE) is None  # QR set: never answered, never forwarded


def test_answer_still_refuses_names_outside_the_domain() -> None:
    out = answer(wire("example.com"), TABLE)
    assert out is not None
    assert dns.message.from_wire(out).rcode() == dns.rcode.REFUSED


def test_servfail_answers_the_query_with_its_id_and_question() -> None:
    query = dns.message.make_query("www.example.com", "AAAA", use_edns=0)
    response = dns.message.from_wire(servfail(query.to_wire()))
    assert response.id == query.id
    assert response.rcode() == dns.rcode.SERVFAIL
    assert response.question == query.question
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.RD
    assert not response.flags & (dns.flags.AA | dns.flags.RA)
    assert response.edns == 0


def test_only_a_response_with_the_querys_id_is_relayed() -> None:
    query = dns.message.make_query("www.example.com", "A")
    reply = dns.message.make_response(query).to_wire()
    data = query.to_wire()
    assert is_reply_to(data, reply)
    assert not is_reply_to(data, data)  # QR clear: a query, not a response
    assert not is_reply_to(data, reply[:11])
    assert not is_reply_to(data, bytes([reply[0] ^ 1]) + reply[1:])
    assert not is_reply_to(data, b"")


def run_params(*args: str) -> dict[str, object]:
    """The `run` command's parameters as the command line parses them, without running a zone."""
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)
    ctx = command.commands["run"].make_context("run", ["--zone", "z", "--global-address", "grpc://g:5685", *args])
    return ctx.params


def test_the_zone_takes_dns_upstream_from_its_flag_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHGATE_DNS_UPSTREAM", raising=False)
    assert run_params()["dns_upstream"] is None
    assert run_params("--dns-upstream", "[::1]:5353")["dns_upstream"] == Upstream("::1", 5353)
    assert run_params("--dns-upstream", "10.0.0.2")["dns_upstream"] == Upstream("10.0.0.2", 53)
    monkeypatch.setenv("MESHGATE_DNS_UPSTREAM", "10.0.0.3:5300")
    assert run_params()["dns_upstream"] == Upstream("10.0.0.3", 5300)
    assert run_params("--dns-upstream", "10.0.0.4")["dns_upstream"] == Upstream("10.0.0.4", 53)


def test_the_zone_rejects_a_bad_dns_upstream_naming_the_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHGATE_DNS_UPSTREAM", raising=False)
    with pytest.raises(typer.BadParameter, match="host names are not resolved") as info:
        run_params("--dns-upstream", "resolver.local:53")
    assert info.value.param is not None
    assert "--dns-upstream" in info.value.param.opts
