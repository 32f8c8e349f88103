"""The DNS server on loopback port 0, asked by dnspython over real UDP and TCP, and fed garbage."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import anyio
import dns.asyncquery
import dns.message
import dns.rcode
import pytest

from meshgate.dns.responder import Table
from meshgate.dns.server import DnsServer
from meshgate.resources import codec
from meshgate.store.sqlite import SqliteStore
from meshgate.testing.factory import dataplane
from zone_cp.dns import VIPS_KIND, ZoneDns

HOST = "127.0.0.1"
TABLE = Table("mesh", {"echo.mesh": IPv4Address("240.0.0.7")})


@asynccontextmanager
async def serving(server: DnsServer) -> AsyncIterator[int]:
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(server.serve, HOST, 0)
        yield port
        tg.cancel_scope.cancel()


async def udp(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    return await dns.asyncquery.udp(dns.message.make_query(name, rdtype), HOST, port=port, timeout=5)


async def tcp(port: int, name: str, rdtype: str = "A") -> dns.message.Message:
    return await dns.asyncquery.tcp(dns.message.make_query(name, rdtype), HOST, port=port, timeout=5)


async def test_udp_answers_a_aaaa_nxdomain_and_refused() -> None:
    async with serving(DnsServer(TABLE)) as port:
        a = await udp(port, "echo.mesh")
        assert [r.to_text() for r in a.answer[0]] == ["240.0.0.7"]
        aaaa = await udp(port, "ECHO.mesh", "AAAA")
        assert [r.to_text() for r in aaaa.answer[0]] == ["::ffff:240.0.0.7"]
        assert (await udp(port, "other.mesh")).rcode() == dns.rcode.NXDOMAIN
        assert (await udp(port, "example.com")).rcode() == dns.rcode.REFUSED


async def test_tcp_answers_several_queries_on_one_connection() -> None:
    async with serving(DnsServer(TABLE)) as port:
        assert [r.to_text() for r in (await tcp(port, "echo.mesh")).answer[0]] == ["240.0.0.7"]
        query = dns.message.make_query("echo.mesh", "AAAA")
        async with await anyio.connect_tcp(HOST, port) as stream:
            wire = query.to_wire()
            await stream.send((len(wire).to_bytes(2) + wire) * 3)
            got = b""
            with anyio.fail_after(5):
                while got.count(b"\xff\xff\xf0\x00\x00\x07") < 3:
                    got += await stream.receive()


async def test_garbage_never_stops_the_server() -> None:
    """A truncated header, random bytes over UDP and TCP, then ordinary queries still get answers."""
    async with serving(DnsServer(TABLE)) as port:
        async with await anyio.create_connected_udp_socket(HOST, port) as sock:
            await sock.send(b"\x12\x34\x01")  # no readable header: dropped
            query = dns.message.make_query("echo.mesh", "A").to_wire()
            await sock.send(query[:-3])  # a cut question: FORMERR
            with anyio.fail_after(5):
                reply = await sock.receive()
            assert reply[:2] == query[:2]
            assert reply[3] & 0x0F == dns.rcode.FORMERR
            for _ in range(500):
                await sock.send(os.urandom(int.from_bytes(os.urandom(1)) + 1))
        async with await anyio.connect_tcp(HOST, port) as stream:
            await stream.send(b"\x00\x05\x01\x02\x03\x04\x05")  # a message too short for a header: closed
            with anyio.fail_after(5), pytest.raises(anyio.EndOfStream):
                await stream.receive()
        async with await anyio.connect_tcp(HOST, port) as stream:
            await stream.send(b"\x00\x40" + os.urandom(10))  # promises 64 bytes, sends 10, then leaves
        assert [r.to_text() for r in (await udp(port, "echo.mesh")).answer[0]] == ["240.0.0.7"]
        assert [r.to_text() for r in (await tcp(port, "echo.mesh")).answer[0]] == ["240.0.0.7"]


async def test_metrics_count_answers_by_rcode_and_drops() -> None:
    server = DnsServer(TABLE)
    async with serving(server) as port:
        await udp(port, "echo.mesh")
        await tcp(port, "echo.mesh", "AAAA")
        await udp(port, "other.mesh")
        await udp(port, "example.com")
        async with await anyio.create_connected_udp_socket(HOST, port) as sock:
            await sock.send(b"\x12\x34\x01")  # dropped
            query = dns.message.make_query("echo.mesh", "A").to_wire()
            await sock.send(query[:-3])  # FORMERR
            with anyio.fail_after(5):
                await sock.receive()
    lines = set(server.metrics_text().splitlines())
    assert {
        'meshgate_dns_responses_total{rcode="NOERROR"} 2',
        'meshgate_dns_responses_total{rcode="NXDOMAIN"} 1',
        'meshgate_dns_responses_total{rcode="REFUSED"} 1',
        'meshgate_dns_responses_total{rcode="FORMERR"} 1',
        'meshgate_dns_responses_total{rcode="SERVFAIL"} 0',
        "meshgate_dns_dropped_total 1",
        'meshgate_dns_forwards_total{result="answered"} 0',
        "meshgate_dns_names 1",
    } <= lines


async def test_a_swapped_table_is_answered_at_once() -> None:
    server = DnsServer(TABLE)
    async with serving(server) as port:
        server.table = Table("mesh", {"new.mesh": IPv4Address("240.0.0.9")})
        assert [r.to_text() for r in (await udp(port, "new.mesh")).answer[0]] == ["240.0.0.9"]
        assert (await udp(port, "echo.mesh")).rcode() == dns.rcode.NXDOMAIN


async def test_zone_dns_persists_vips_in_the_store_across_reopen(tmp_path: Path) -> None:
    cidr = IPv4Network("127.1.0.0/24")
    store = SqliteStore(str(tmp_path / "zone.db"))
    await store.create(codec.load({"type": "Mesh", "name": "default"}))
    for i, service in enumerate(["b", "a", "c_d"]):
        await store.create(codec.load(dataplane(f"dp-{i}", service)))
    zone = ZoneDns(store, cidr, "mesh")
    await zone.refresh()
    first = dict(zone.allocations["default"])
    assert first == {
        "a.mesh": IPv4Address("127.1.0.1"),
        "b.mesh": IPv4Address("127.1.0.2"),
        "c_d.mesh": IPv4Address("127.1.0.3"),
        "c.d.mesh": IPv4Address("127.1.0.3"),
    }
    await store.delete(codec.load(dataplane("dp-1", "a")).key)
    await zone.refresh()
    await store.close()

    reopened = SqliteStore(str(tmp_path / "zone.db"))
    (record,) = (await reopened.list(VIPS_KIND)).items
    assert record.meta.mesh == "default"
    again = ZoneDns(reopened, cidr, "mesh")
    await reopened.create(codec.load(dataplane("dp-9", "z")))
    await again.refresh()
    # b and c_d keep theirs; z takes a's freed address, the lowest free one.
    assert again.allocations["default"]["b.mesh"] == first["b.mesh"]
    assert again.allocations["default"]["c.d.mesh"] == first["c.d.mesh"]
    assert again.allocations["default"]["z.mesh"] == IPv4Address("127.1.0.1")
    await reopened.delete(codec.load({"type": "Mesh", "name": "default"}).key)
    await again.refresh()
    assert (await reopened.list(VIPS_KIND)).items == []
    assert again.allocations == {}
    await reopened.close()
