"""The DNS answer core: the fast path against dnspython's, and every rcode, without sockets."""

from __future__ import annotations

from ipaddress import IPv4Address

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.dns import responder as core
from meshgate.dns.responder import Table, answer

TABLE = Table("mesh", {"echo.mesh": IPv4Address("240.0.0.1"), "echo.default.svc.80.mesh": IPv4Address("240.0.0.1")})


def ask(name: str, rdtype: str = "A", *, edns: bool = False) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else None)
    out = answer(query.to_wire(), TABLE)
    assert out is not None
    response = dns.message.from_wire(out)
    assert response.id == query.id
    return response


@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize(("rdtype", "text"), [("A", "240.0.0.1"), ("AAAA", "::ffff:240.0.0.1")])
def test_a_and_aaaa_answer_the_vip_with_a_30s_ttl(rdtype: str, text: str, edns: bool) -> None:
    response = ask("Echo.Default.SVC.80.mesh", rdtype, edns=edns)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    (rrset,) = response.answer
    assert [r.to_text() for r in rrset] == [text]
    assert rrset.ttl == 30
    assert str(rrset.name) == "Echo.Default.SVC.80.mesh."  # the question's own spelling, by pointer
    assert (response.edns >= 0) is edns


@pytest.mark.parametrize("edns", [False, True])
@pytest.mark.parametrize("rdtype", ["A", "AAAA"])
def test_the_fast_path_agrees_with_dnspython(rdtype: str, edns: bool) -> None:
    wire = dns.message.make_query("echo.mesh", rdtype, use_edns=0 if edns else None).to_wire()
    fast = core._fast(wire, TABLE)
    slow = core._slow(wire, TABLE)
    assert fast is not None
    assert slow is not None
    f, s = dns.message.from_wire(fast), dns.message.from_wire(slow)
    assert (f.rcode(), f.flags, f.question, f.answer, f.edns) == (s.rcode(), s.flags, s.question, s.answer, s.edns)


def test_unknown_names_under_the_domain_are_nxdomain() -> None:
    assert ask("nope.mesh").rcode() == dns.rcode.NXDOMAIN
    assert ask("a.echo.mesh", "AAAA").rcode() == dns.rcode.NXDOMAIN


def test_names_outside_the_domain_are_refused() -> None:
    assert ask("example.com").rcode() == dns.rcode.REFUSED
    assert ask("echo.mesh.example.com").rcode() == dns.rcode.REFUSED


def test_other_types_of_a_known_name_have_no_data() -> None:
    response = ask("echo.mesh", "TXT")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []


def test_another_opcode_is_not_implemented() -> None:
    query = dns.message.make_query("echo.mesh", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    out = answer(query.to_wire(), TABLE)
    assert out is not None
    assert dns.message.from_wire(out).rcode() == dns.rcode.NOTIMP


def test_a_truncated_header_and_a_response_are_dropped() -> None:
    wire = dns.message.make_query("echo.mesh", "A").to_wire()
    assert answer(wire[:11], TABLE) is None
    response = dns.message.make_response(dns.message.from_wire(wire))
    assert answer(response.to_wire(), TABLE) is None


def test_a_truncated_question_is_formerr() -> None:
    wire = dns.message.make_query("echo.mesh", "A").to_wire()
    out = answer(wire[:-3], TABLE)
    assert out is not None
    assert out[:2] == wire[:2]
    assert out[3] & 0x0F == dns.rcode.FORMERR


@settings(max_examples=500)
@given(st.binary(max_size=600))
def test_any_bytes_give_a_formerr_or_an_answer_or_nothing(data: bytes) -> None:
    out = answer(data, TABLE)
    if out is not None:
        assert out[:2] == data[:2]
        assert out[2] & 0x80


@settings(max_examples=300)
@given(name=st.sampled_from(["echo.mesh", "ECHO.MESH", "nope.mesh", "x.org"]), cut=st.integers(0, 60))
def test_cut_queries_never_raise(name: str, cut: int) -> None:
    wire = dns.message.make_query(name, "A", use_edns=0).to_wire()
    answer(wire[: len(wire) - cut], TABLE)
    answer(wire + b"\x00" * cut, TABLE)


LABELS = st.text(alphabet="abcXYZ019_-", min_size=1, max_size=8)


@settings(max_examples=300)
@given(
    loaded=st.lists(st.lists(LABELS, min_size=1, max_size=3), max_size=5),
    asked=st.lists(LABELS, min_size=1, max_size=3),
    suffix=st.sampled_from(["mesh", "MESH", "org"]),
    rdtype=st.sampled_from(["A", "AAAA", "TXT"]),
    edns=st.booleans(),
)
def test_the_fast_path_never_disagrees_with_the_slow_one(
    loaded: list[list[str]], asked: list[str], suffix: str, rdtype: str, edns: bool
) -> None:
    records = {".".join(labels) + ".mesh": IPv4Address(0xF0000001 + i) for i, labels in enumerate(loaded)}
    table = Table("mesh", records)
    candidates = [*records, ".".join(asked) + "." + suffix]
    for name in candidates:
        wire = dns.message.make_query(name.upper(), rdtype, use_edns=0 if edns else None).to_wire()
        out, slow = answer(wire, table), core._slow(wire, table)
        assert out is not None
        assert slow is not None
        f, s = dns.message.from_wire(out), dns.message.from_wire(slow)
        assert (f.rcode(), f.flags, f.answer) == (s.rcode(), s.flags, s.answer)


def test_a_remembered_answer_is_the_fast_paths_answer_under_the_new_queries_id() -> None:
    table = Table("mesh", {"echo.mesh": IPv4Address("240.0.0.1")})
    first = dns.message.make_query("echo.mesh", "A")
    out = answer(first.to_wire(), table)
    assert out is not None
    again = dns.message.make_query("echo.mesh", "A")
    again.id = (first.id + 1) % 65536
    wire = again.to_wire()
    cached = table.answers[wire[2:]]  # what the UDP server sends after the query's own id
    assert wire[:2] + cached == answer(wire, table)
    assert dns.message.from_wire(wire[:2] + cached).id == again.id


def test_only_answers_the_table_holds_are_remembered() -> None:
    table = Table("mesh", {"echo.mesh": IPv4Address("240.0.0.1")})
    for name, rdtype in [("nope.mesh", "A"), ("example.org", "A"), ("echo.mesh", "TXT")]:
        assert answer(dns.message.make_query(name, rdtype).to_wire(), table) is not None
    assert table.answers == {}


def test_remembered_answers_are_bounded() -> None:
    name = "echoechoechoecho.mesh"
    table = Table("mesh", {name: IPv4Address("240.0.0.1")})
    cap = 4 * 1 + 4096
    for i in range(cap + 50):
        # Each case spelling of one name is its own key: the bound keeps a client from growing the map.
        spelled = "".join(c.upper() if (i >> k) & 1 else c for k, c in enumerate(name[:16])) + ".mesh"
        assert answer(dns.message.make_query(spelled, "A").to_wire(), table) is not None
    assert len(table.answers) == cap
