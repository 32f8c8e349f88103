"""The DNS server: thin UDP and TCP adapters around `meshgate.dns.responder.answer` on one port.

UDP is an asyncio datagram protocol: a datagram is answered inside `datagram_received`, with no task and no
await per query, which is what lets the server approach a bare UDP echo's rate. TCP uses anyio streams with
the 2-byte length prefix (RFC 1035 4.2.2). Both read `server.table`, which the owner swaps whole, so a query
sees either the old table or the new one.

Nothing a client sends can stop the server: the responder turns bad input into FORMERR or a drop, an
exception it raises anyway (a bug) is logged and the query dropped, a UDP send buffer over its high-water
mark drops answers instead of growing, and a TCP client gets `_TCP_IDLE` seconds per message
and `_TCP_CLIENTS` connections at most, so slow clients cannot pile up.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, cast

import anyio
import anyio.abc
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream

from meshgate.dns.responder import Table, answer

__all__ = ["DnsServer"]

log = structlog.get_logger("meshgate.dns")

# TCP is the fallback for truncated answers; a handful of resolvers use it. 128 connections bound the fds and
# tasks that clients can hold open.
_TCP_CLIENTS = 128
_TCP_IDLE = 10.0
# Port 0 binds UDP first, then TCP on the same number; that number may be taken for TCP, so try a few.
_BIND_ATTEMPTS = 8


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None
        # Set while the transport's unsent bytes are over its high-water mark (asyncio's default, 64 KiB, about
        # a thousand answers): answers are dropped then, as a congested network would drop them, instead of
        # growing the buffer without bound.
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint always gets a datagram transport (asyncio's selector one does not subclass it).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            out = answer(data, self._server.table)
        except Exception:
            log.exception("dns.answer_failed", transport="udp")
            return
        transport = self._transport
        if out is None or transport is None or self._paused:
            return
        transport.sendto(out, addr)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False

    def error_received(self, exc: Exception) -> None:
        # ICMP errors from a client that went away: nothing to do, and never fatal.
        pass


class DnsServer:
    def __init__(self, table: Table) -> None:
        self.table = table
        self._tcp_clients = 0

    async def serve(
        self, host: str, port: int, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serves UDP and TCP on one port until cancelled; reports the port (0 picks a free one)."""
        loop = asyncio.get_running_loop()
        for attempt in range(_BIND_ATTEMPTS):
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self), local_addr=(host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET
            )
            bound = int(transport.get_extra_info("sockname")[1])
            try:
                listener = await anyio.create_tcp_listener(local_host=host, local_port=bound, reuse_port=False)
            except OSError:
                transport.close()
                if port != 0 or attempt == _BIND_ATTEMPTS - 1:
                    raise
                continue
            break
        try:
            async with listener, anyio.create_task_group() as tg:
                log.info("dns.serving", host=host, port=bound, names=len(self.table))
                task_status.started(bound)
                await listener.serve(self._tcp_client, task_group=tg)
        finally:
            transport.close()

    async def _tcp_client(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            if self._tcp_clients >= _TCP_CLIENTS:
                return
            self._tcp_clients += 1
            try:
                reader = BufferedByteReceiveStream(stream)
                while True:
                    with anyio.fail_after(_TCP_IDLE):
                        length = int.from_bytes(await reader.receive_exactly(2))
                        data = await reader.receive_exactly(length)
                    try:
                        out = answer(data, self.table)
                    except Exception:
                        log.exception("dns.answer_failed", transport="tcp")
                        return
                    if out is None:
                        return
                    with anyio.fail_after(_TCP_IDLE):
                        await stream.send(len(out).to_bytes(2) + out)
            except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
                return
            finally:
                self._tcp_clients -= 1
