"""Forwarding to `--dns-upstream`: our DNS server on loopback port 0 in front of a real upstream (a small
dnspython server that records what reaches it, a socket that never answers, one that answers garbage), asked by
dnspython over real UDP and TCP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import anyio
import anyio.abc
import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from structlog.testing import capture_logs

from meshgate.dns.responder import Table
from meshgate.dns.server import DnsServer
from meshgate.dns.upstream import Upstream
from meshgate.store.sqlite import SqliteStore
from zone_cp.dns import ZoneDns

HOST = "127.0.0.1"
TABLE = Table("mesh", {"echo.mesh": IPv4Address("240.0.0.7")})
EXAMPLE = dns.name.from_text("example")
EXAMPLE_ADDRESS = "192.0.2.10"
CIDR = IPv4Network("240.0.0.0/24")


@dataclass
class Recorder:
    """What reached the upstream: (transport, the query's bytes) in arrival order."""

    port: int
    seen: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def upstream(self) -> Upstream:
        return Upstream(HOST, self.port)


def example_answer(data: bytes) -> bytes:
    """The upstream's answer: an A record for names under `example`, NXDOMAIN for anything else."""
    query = dns.message.from_wire(data)
    response = dns.message.make_response(query)
    question = query.question[0]
    if question.name.is_subdomain(EXAMPLE) and question.rdtype == dns.rdatatype.A:
        response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", EXAMPLE_ADDRESS))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


@asynccontextmanager
async def recording_upstream() -> AsyncIterator[Recorder]:
    """A resolver for `example` on UDP and TCP of one free port, like the upstreams we forward to."""
    for _ in range(8):
        udp = await anyio.create_udp_socket(local_host=HOST, local_port=0)
        port = udp.extra(anyio.abc.SocketAttribute.local_port)
        try:
            listener = await anyio.create_tcp_listener(local_host=HOST, local_port=port)
        except OSError:
            await udp.aclose()  # the number is taken for TCP: another free one
            continue
        break
    else:
        pytest.fail("no port free for both UDP and TCP")
    recorder = Recorder(port)

    async def serve_udp() -> None:
        async for data, (host, client_port) in udp:
            recorder.seen.append(("udp", data))
            await udp.sendto(example_answer(data), host, client_port)

    async def serve_tcp(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            data = await reader.receive_exactly(int.from_bytes(await reader.receive_exactly(2)))
            recorder.seen.append(("tcp", data))
            out = example_answer(data)
            await stream.send(len(out).to_bytes(2) + out)

    async with udp, listener, anyio.create_task_group() as tg:
        tg.start_soon(serve_udp)
        tg.start_soon(listener.serve, serve_tcp)
        yield recorder
        tg.cancel_scope.cancel()


@asynccontextmanager
async def serving(server: DnsServer) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(server.serve, HOST, 0)
        yield port
        tg.cancel_scope.cancel()


async def udp(port: int, query: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.udp(query, HOST, port=port, timeout=10)


async def tcp(port: int, query: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.tcp(query, HOST, port=port, timeout=10)


def a(name: str) -> dns.message.Message:
    return dns.message.make_query(name, "A")


def addresses(response: dns.message.Message) -> list[str]:
    return [r.to_text() for rrset in response.answer for r in rrset]


async def assert_mesh_answered(port: int) -> None:
    assert addresses(await udp(port, a("echo.mesh"))) == ["240.0.0.7"]
    assert addresses(await tcp(port, a("echo.mesh"))) == ["240.0.0.7"]


async def test_outside_names_are_forwarded_unchanged_over_the_transport_they_came_in_on() -> None:
    async with recording_upstream() as upstream:
        server = DnsServer(TABLE, upstream=upstream.upstream)
        with capture_logs() as logs:
            async with serving(server) as port:
                over_udp = a("www.example")
                response = await udp(port, over_udp)
                assert addresses(response) == [EXAMPLE_ADDRESS]
                assert response.id == over_udp.id
                over_tcp = a("api.Example")
                response = await tcp(port, over_tcp)
                assert addresses(response) == [EXAMPLE_ADDRESS]
                assert response.id == over_tcp.id
                # The upstream's own rcode is relayed: its NXDOMAIN, not ours (no AA from a forwarder's table).
                nowhere_query = a("nowhere.test")
                nowhere = await udp(port, nowhere_query)
                assert nowhere.rcode() == dns.rcode.NXDOMAIN
                assert not nowhere.flags & dns.flags.AA
        assert upstream.seen == [
            ("udp", over_udp.to_wire()),
            ("tcp", over_tcp.to_wire()),
            ("udp", nowhere_query.to_wire()),
        ]
        (serving_line,) = [e for e in logs if e["event"] == "dns.serving"]
        assert serving_line["upstream"] == f"127.0.0.1:{upstream.port}"
        metrics = server.metrics_text().splitlines()
        assert 'meshgate_dns_forwards_total{result="answered"} 3' in metrics
        assert 'meshgate_dns_forwards_total{result="failed"} 0' in metrics


async def test_mesh_names_are_answered_locally_and_never_forwarded() -> None:
    async with recording_upstream() as upstream, serving(DnsServer(TABLE, upstream=upstream.upstream)) as port:
        await assert_mesh_answered(port)
        for ask in (udp, tcp):
            response = await ask(port, a("other.mesh"))
            assert response.rcode() == dns.rcode.NXDOMAIN
            assert response.flags & dns.flags.AA
        assert upstream.seen == []


async def test_a_silent_upstream_gives_servfail_and_mesh_names_keep_answering() -> None:
    """UDP goes to a socket that never answers (SERVFAIL after the timeout); TCP finds no listener there
    (SERVFAIL at once). Meanwhile `.mesh` queries are answered."""
    async with await anyio.create_udp_socket(local_host=HOST, local_port=0) as silent:
        upstream = Upstream(HOST, silent.extra(anyio.abc.SocketAttribute.local_port))
        async with serving(DnsServer(TABLE, upstream=upstream)) as port, anyio.create_task_group() as tg:
            query = a("www.example")
            results: list[dns.message.Message] = []

            async def ask_outside() -> None:
                results.append(await udp(port, query))

            tg.start_soon(ask_outside)
            with anyio.fail_after(10):
                forwarded, _ = await silent.receive()
            assert forwarded == query.to_wire()  # the same bytes, the same ID
            await assert_mesh_answered(port)
            over_tcp = await tcp(port, a("www.example"))
            assert over_tcp.rcode() == dns.rcode.SERVFAIL
        (response,) = results
        assert response.id == query.id
        assert response.rcode() == dns.rcode.SERVFAIL
        assert response.question == query.question


async def test_garbage_from_the_upstream_gives_servfail() -> None:
    """Too short for a header, the query echoed back (no QR), a response with another ID: never relayed."""
    garbage = [b"\x01\x02\x03", None, b"other-id"]
    async with await anyio.create_udp_socket(local_host=HOST, local_port=0) as liar, anyio.create_task_group() as tg:

        async def lie() -> None:
            async for data, (host, client_port) in liar:
                kind = garbage[len(data) % len(garbage)]
                if kind is None:
                    out = data
                elif kind == b"other-id":
                    out = bytes([data[0] ^ 0xFF]) + example_answer(data)[1:]
                else:
                    out = kind
                await liar.sendto(out, host, client_port)

        tg.start_soon(lie)
        upstream = Upstream(HOST, liar.extra(anyio.abc.SocketAttribute.local_port))
        server = DnsServer(TABLE, upstream=upstream)
        async with serving(server) as port:
            # Names of three lengths in a row pick each kind of garbage once.
            for name in ("a.example", "ab.example", "abc.example"):
                response = await udp(port, a(name))
                assert response.rcode() == dns.rcode.SERVFAIL
            await assert_mesh_answered(port)
        assert 'meshgate_dns_forwards_total{result="failed"} 3' in server.metrics_text().splitlines()
        tg.cancel_scope.cancel()


async def test_forwards_beyond_the_cap_get_servfail_at_once_and_mesh_names_still_answer() -> None:
    """256 forwards hang on a silent upstream (a long timeout keeps them under way); 10 more are answered
    SERVFAIL at once, over UDP and TCP, with one warning; `.mesh` queries are answered all along."""
    async with await anyio.create_udp_socket(local_host=HOST, local_port=0) as silent:
        upstream = Upstream(HOST, silent.extra(anyio.abc.SocketAttribute.local_port))
        server = DnsServer(TABLE, upstream=upstream, forward_timeout=600)
        with capture_logs() as logs:
            async with serving(server) as port, await anyio.create_connected_udp_socket(HOST, port) as client:
                queries = [dns.message.make_query(f"n{i}.example", "A") for i in range(266)]
                for i, query in enumerate(queries):
                    query.id = i
                    await client.send(query.to_wire())
                refused = []
                with anyio.fail_after(10):
                    for _ in range(10):
                        refused.append(dns.message.from_wire(await client.receive()))
                assert {r.id for r in refused} == set(range(256, 266))
                assert {r.rcode() for r in refused} == {dns.rcode.SERVFAIL}
                assert (await tcp(port, a("over.example"))).rcode() == dns.rcode.SERVFAIL
                await assert_mesh_answered(port)
        warnings = [e for e in logs if e["event"] == "dns.upstream_failed" and e["log_level"] == "warning"]
        assert len(warnings) == 1
        assert warnings[0]["upstream"] == str(upstream)


async def test_without_an_upstream_outside_names_are_refused_as_before() -> None:
    async with serving(DnsServer(TABLE)) as port:
        for ask in (udp, tcp):
            response = await ask(port, a("www.example"))
            assert response.rcode() == dns.rcode.REFUSED
        await assert_mesh_answered(port)


async def test_the_zone_dns_server_gets_the_configured_upstream(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "zone.db"))
    try:
        upstream = Upstream("::1", 5353)
        assert ZoneDns(store, CIDR, "mesh", upstream=upstream).server.upstream == upstream
        assert ZoneDns(store, CIDR, "mesh").server.upstream is None
    finally:
        await store.close()
