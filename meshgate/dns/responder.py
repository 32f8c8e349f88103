"""The DNS answer core: query bytes in, response bytes (or None: drop) out. No sockets.

Two paths that give the same answers:

- The fast path handles the common query by hand: one question, QUERY, class IN, type A or AAAA, a name the
  table holds, no compression in the question, and either no additional record or one plain OPT (EDNS
  version 0, no options). It compares the lower-cased wire name against the table and builds the response
  bytes directly: header, the question copied verbatim, one answer pointing back at it (0xC00C), and an OPT
  when the query had one. dnspython's parse and render cap a Python server near 3k qps; this path does not
  parse into objects at all. Its answers are remembered per query (`Table.answers`, keyed by the query after
  its id, bounded), so the UDP server answers a repeated query with one lookup and one concatenation.
- Everything else goes through dnspython: other types (NOERROR, no data, for a known name), unknown names under
  the domain (NXDOMAIN), names outside it (REFUSED from `answer`; `FORWARD` from `route`, which a server with an
  upstream uses instead, so that it sends the query on), other opcodes (NOTIMP), and any query the fast path
  declined. A name under the domain is never forwarded: its NXDOMAIN is authoritative.

Malformed input: fewer than 12 bytes (no readable header) or a packet with QR set (a response: answering it
could start a loop between two servers) is dropped; anything else that does not parse gets FORMERR.
Answers are authoritative (AA), never recursive (RA clear), with a 30 s TTL (gateway.md).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from ipaddress import IPv4Address
from typing import Literal, overload

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["FORWARD", "TTL", "Forward", "Table", "answer", "route", "servfail"]

TTL = 30
_TYPE_A = 1
_TYPE_AAAA = 28
_TYPE_OPT = 41
_CLASS_IN = 1
# The UDP payload size we advertise in OPT: the DNS flag day 2020 value, which avoids IP fragmentation.
_EDNS_PAYLOAD = 1232
_OPT_RR = b"\x00" + _TYPE_OPT.to_bytes(2) + _EDNS_PAYLOAD.to_bytes(2) + b"\x00\x00\x00\x00\x00\x00"
_QR = 0x80  # in the third header byte
_AA = 0x04
_RD = 0x01
_COUNTS_NO_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x00"
_COUNTS_EDNS = b"\x00\x01\x00\x00\x00\x00\x00\x01"
_ANSWER_NO_EDNS = b"\x00\x01\x00\x01\x00\x00\x00\x00"
_ANSWER_EDNS = b"\x00\x01\x00\x01\x00\x00\x00\x01"
_MAPPED_PREFIX = b"\x00" * 10 + b"\xff\xff"
_QUESTION_A = _TYPE_A.to_bytes(2) + _CLASS_IN.to_bytes(2)
_QUESTION_AAAA = _TYPE_AAAA.to_bytes(2) + _CLASS_IN.to_bytes(2)
_FLAGS = bytes((_QR | _AA, 0))
_FLAGS_RD = bytes((_QR | _AA | _RD, 0))


def _wire(name: dns.name.Name) -> bytes:
    """The lower-cased uncompressed wire form: DNS compares names case-insensitively, in ASCII only."""
    return (name.to_wire() or b"").lower()


def _rr_tail(rtype: int, rdata: bytes) -> bytes:
    """An answer RR after its name: a pointer to the question's name at offset 12, then type, class, TTL, data."""
    return b"\xc0\x0c" + rtype.to_bytes(2) + _CLASS_IN.to_bytes(2) + TTL.to_bytes(4) + len(rdata).to_bytes(2) + rdata


class Table:
    """What the server answers: lower-case names under `domain` and their VIPs. Immutable; swap to update."""

    def __init__(self, domain: str, records: Mapping[str, IPv4Address]) -> None:
        self.domain = dns.name.from_text(domain)
        self.records = dict(records)
        # Keyed by the lower-cased wire question (name, QTYPE, QCLASS IN), which is exactly what the fast path
        # slices out of a query; the value is the answer RR that follows the copied question.
        self._tails: dict[bytes, bytes] = {}
        self._vips: dict[bytes, bytes] = {}
        # The fast path's answers by the whole query after its id (the answer after the id depends on nothing
        # else), so a repeated query costs the server one lookup (`DnsServer` looks here before anything else).
        # Only answers the fast path built go in, so a hit is always a NOERROR for a name the table holds;
        # bounded, since case and RD variants of one name are each a key.
        self.answers: dict[bytes, bytes] = {}
        self._answers_cap = 4 * len(records) + 4096
        for text, vip in records.items():
            key = _wire(dns.name.from_text(text))
            self._vips[key] = vip.packed
            self._tails[key + _QUESTION_A] = _rr_tail(_TYPE_A, vip.packed)
            self._tails[key + _QUESTION_AAAA] = _rr_tail(_TYPE_AAAA, _MAPPED_PREFIX + vip.packed)

    def __len__(self) -> int:
        return len(self._vips)

    def vip(self, wire_name: bytes) -> bytes | None:
        return self._vips.get(wire_name)

    def _remember(self, query: bytes, response: bytes) -> None:
        if len(self.answers) < self._answers_cap:
            self.answers[query[2:]] = response[2:]


class Forward(enum.Enum):
    """`route`'s verdict for a query that the upstream answers instead of this server."""

    FORWARD = "forward"


FORWARD = Forward.FORWARD


def answer(data: bytes, table: Table) -> bytes | None:
    """The response to one query, or None to drop it. A name outside the domain gets REFUSED."""
    if len(data) < 12 or data[2] & _QR:
        return None
    fast = _fast(data, table)
    if fast is not None:
        return fast
    return _slow(data, table)


def route(data: bytes, table: Table) -> bytes | Forward | None:
    """Like `answer`, for a server with an upstream: a well-formed QUERY (one question) for a name outside the
    domain is `FORWARD` instead of REFUSED. Every other query gets exactly `answer`'s response."""
    if len(data) < 12 or data[2] & _QR:
        return None
    fast = _fast(data, table)
    if fast is not None:
        return fast
    return _slow(data, table, forward=True)


def servfail(data: bytes) -> bytes:
    """SERVFAIL for a query `route` forwarded, when the upstream failed or did not answer in time."""
    try:
        response = dns.message.make_response(dns.message.from_wire(data))
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        # `route` parsed this query before it said FORWARD, so this is only a guard: a header-only answer.
        return data[:2] + bytes((_QR | (data[2] & 0x79), dns.rcode.SERVFAIL)) + b"\x00" * 8
    response.set_rcode(dns.rcode.SERVFAIL)
    response.flags &= ~(dns.flags.AA | dns.flags.RA)
    return response.to_wire()


def _fast(data: bytes, table: Table) -> bytes | None:
    """The common query's answer, or None to let the slow path decide (never a wrong answer)."""
    # Opcode QUERY (bits 3-6 of byte 2 clear) and TC clear.
    if data[2] & 0x7A:
        return None
    # The name ends at the first zero byte. If a label held a zero byte, this cut is not a whole name; it then
    # matches no table key (every key is a well-formed name), and the slow path parses the query properly.
    # Equal to a key, the cut *is* that name, label structure included, so no label walk is needed. The key
    # includes QTYPE and QCLASS, so one lookup also checks for A or AAAA in class IN.
    i = data.find(b"\x00", 12)
    if i < 0:
        return None
    q_end = i + 5
    tail = table._tails.get(data[12:q_end].lower())
    if tail is None:
        return None
    counts = data[4:12]
    flags = _FLAGS_RD if data[2] & _RD else _FLAGS
    if counts == _COUNTS_NO_EDNS:
        if q_end != len(data):
            return None
        out = data[:2] + flags + _ANSWER_NO_EDNS + data[12:q_end] + tail
        table._remember(data, out)
        return out
    # A plain OPT: root owner, type OPT, version 0, no options, and nothing after it.
    if counts != _COUNTS_EDNS or len(data) != q_end + 11 or data[q_end : q_end + 3] != b"\x00\x00\x29":
        return None
    if data[q_end + 6] != 0 or data[q_end + 9 : q_end + 11] != b"\x00\x00":
        return None
    out = data[:2] + flags + _ANSWER_EDNS + data[12:q_end] + tail + _OPT_RR
    table._remember(data, out)
    return out


def _formerr(data: bytes) -> bytes:
    # Header only: the id, QR, the query's opcode and RD, rcode FORMERR, every count zero.
    return data[:2] + bytes((_QR | (data[2] & 0x79), dns.rcode.FORMERR)) + b"\x00" * 8


@overload
def _slow(data: bytes, table: Table, *, forward: Literal[False] = False) -> bytes | None: ...
@overload
def _slow(data: bytes, table: Table, *, forward: Literal[True]) -> bytes | Forward | None: ...
def _slow(data: bytes, table: Table, *, forward: bool = False) -> bytes | Forward | None:
    try:
        query = dns.message.from_wire(data)
    except dns.message.ShortHeader:
        return None
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return _formerr(data)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    response.flags &= ~dns.flags.RA
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response.to_wire()
    if len(query.question) != 1:
        return _formerr(data)
    question = query.question[0]
    name = question.name
    outside = not name.is_subdomain(table.domain)
    if outside and forward:
        return FORWARD
    if question.rdclass != dns.rdataclass.IN or outside:
        response.set_rcode(dns.rcode.REFUSED)
        response.flags &= ~dns.flags.AA
        return response.to_wire()
    vip = table.vip(_wire(name))
    if vip is None:
        if name != table.domain:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()
    address = IPv4Address(vip)
    if question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(name, TTL, "IN", "A", str(address)))
    elif question.rdtype == dns.rdatatype.AAAA:
        response.answer.append(dns.rrset.from_text(name, TTL, "IN", "AAAA", f"::ffff:{address}"))
    return response.to_wire()
