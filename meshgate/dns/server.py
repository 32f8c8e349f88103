"""The DNS server: thin UDP and TCP adapters around `meshgate.dns.responder` on one port.

UDP is an asyncio datagram protocol: a datagram is answered inside `datagram_received`, with no task and no
await per query, which is what lets the server approach a bare UDP echo's rate. TCP uses anyio streams with
the 2-byte length prefix (RFC 1035 4.2.2). Both read `server.table`, which the owner swaps whole, so a query
sees either the old table or the new one.

With an upstream (`--dns-upstream`), a query for a name outside the domain is forwarded: its bytes, unchanged,
go to the upstream over the transport the query came in on, each forward in a task of its own, so `.mesh`
answers never wait for one. The upstream's response is relayed as it is; a timeout (`_FORWARD_TIMEOUT`), an
error, a reply that is not a response to the query, or more than `_FORWARDS` forwards under way gives the
client SERVFAIL. Over TCP, answers on one connection may then leave out of order, as RFC 7766 6.2.1 allows.

Nothing a client sends can stop the server: the responder turns bad input into FORMERR or a drop, an
exception it raises anyway (a bug) is logged and the query dropped, a UDP send buffer over its high-water
mark drops answers instead of growing, and a TCP client gets `_TCP_IDLE` seconds per message
and `_TCP_CLIENTS` connections at most, so slow clients cannot pile up.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from typing import Any, cast

import anyio
import anyio.abc
import dns.rcode
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream

from meshgate.dns.responder import Forward, Table, answer, route, servfail
from meshgate.dns.upstream import Upstream, is_reply_to

__all__ = ["DnsServer"]

log = structlog.get_logger(__name__)

# TCP is the fallback for truncated answers; a handful of resolvers use it. 128 connections bound the fds and
# tasks that clients can hold open.
_TCP_CLIENTS = 128
_TCP_IDLE = 10.0
# Port 0 binds UDP first, then TCP on the same number; that number may be taken for TCP, so try a few.
_BIND_ATTEMPTS = 8
# A stub resolver retries after a second or two on its own (glibc: 5 s, dig: 5 s, dnspython: 2 s per try), so a
# forward that has not been answered in 2 s is given up on rather than left holding a socket.
_FORWARD_TIMEOUT = 2.0
# Forwards under way at once, UDP and TCP together. Each holds a task and a socket (an fd) for at most
# _FORWARD_TIMEOUT, so 256 bounds them well under the usual 1024-fd limit, beside _TCP_CLIENTS, and still allows
# 128 forwards a second against an upstream that answers nothing at all.
_FORWARDS = 256
# Rcodes /metrics always lists, even at 0, so dashboards see a series from the start.
_ALWAYS_SHOWN_RCODES = frozenset({0, 1, 2, 3, 4, 5})  # NOERROR FORMERR SERVFAIL NXDOMAIN NOTIMP REFUSED
# An unreachable upstream fails every forward: one warning a minute says so, with the count since the last one.
_WARN_INTERVAL = 60.0

_Respond = Callable[[bytes, Table], bytes | Forward | None]
# Sends a forward's result to the client the query came from.
_Reply = Callable[[bytes], Awaitable[None]]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer, forwards: anyio.abc.TaskGroup) -> None:
        self._server = server
        self._forwards = forwards
        self._transport: asyncio.DatagramTransport | None = None
        # Set while the transport's unsent bytes are over its high-water mark (asyncio's default, 64 KiB, about
        # a thousand answers): answers are dropped then, as a congested network would drop them, instead of
        # growing the buffer without bound.
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint always gets a datagram transport (asyncio's selector one does not subclass it).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        server = self._server
        # A query answered before (the common case under load): one lookup, no parsing. `Table.answers` holds
        # only NOERROR answers the fast path built, keyed by everything after the query's id.
        cached = server.table.answers.get(data[2:])
        if cached is not None:
            server.rcodes[0] += 1
            transport = self._transport
            if transport is not None and not self._paused:
                transport.sendto(data[:2] + cached, addr)
            return
        try:
            out = server._respond(data, server.table)
        except Exception:
            log.exception("dns.answer_failed", transport="udp")
            return
        if out.__class__ is bytes:
            # The common case, kept short: this path is most of the server's CPU per answer.
            assert isinstance(out, bytes)  # for mypy; `out.__class__ is bytes` is the cheaper test at runtime
            server.rcodes[out[3] & 0x0F] += 1
            transport = self._transport
            if transport is not None and not self._paused:
                transport.sendto(out, addr)
            return
        if isinstance(out, Forward):

            async def reply(response: bytes) -> None:
                self.send(response, addr)

            out = server._forward(self._forwards, data, "udp", reply)
            if out is not None:  # SERVFAIL at once: too many forwards under way
                server.rcodes[out[3] & 0x0F] += 1
                self.send(out, addr)
            return
        server.dropped += 1

    def send(self, out: bytes, addr: Any) -> None:
        transport = self._transport
        if transport is None or self._paused or transport.is_closing():
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
    def __init__(
        self, table: Table, *, upstream: Upstream | None = None, forward_timeout: float = _FORWARD_TIMEOUT
    ) -> None:
        """`upstream`: where names outside the table's domain are forwarded; None answers them REFUSED."""
        self.table = table
        self.upstream = upstream
        self._forward_timeout = forward_timeout
        # The answer path is chosen once: without an upstream, UDP queries take `answer`, exactly as before.
        self._respond: _Respond = answer if upstream is None else route
        self._tcp_clients = 0
        self._forwards = 0
        self._failures = 0
        # For /metrics (`metrics_text`): plain ints, so counting costs the fast path next to nothing.
        self.rcodes = [0] * 16  # responses this server answered itself, by rcode
        self.dropped = 0  # queries dropped without an answer
        self.forwarded = 0  # forwards the upstream answered
        self.forward_failed = 0  # forwards answered SERVFAIL instead (timeout, error, garbage, over the cap)
        self._warned_at: float | None = None

    async def serve(
        self, host: str, port: int, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serves UDP and TCP on one port until cancelled; reports the port (0 picks a free one)."""
        loop = asyncio.get_running_loop()
        # One task group holds the TCP clients and the UDP forwards, so cancelling `serve` ends them all.
        async with anyio.create_task_group() as tg:
            for attempt in range(_BIND_ATTEMPTS):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self, tg),
                    local_addr=(host, port),
                    family=socket.AF_INET6 if ":" in host else socket.AF_INET,
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
                async with listener:
                    upstream = {} if self.upstream is None else {"upstream": str(self.upstream)}
                    log.info("dns.serving", host=host, port=bound, names=len(self.table), **upstream)
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
                # The connection's forwards finish (within _FORWARD_TIMEOUT) before the connection closes: a
                # client that has sent its last query and waits still gets every answer.
                async with anyio.create_task_group() as forwards:
                    await self._tcp_queries(stream, forwards)
            finally:
                self._tcp_clients -= 1

    async def _tcp_queries(self, stream: anyio.abc.SocketStream, forwards: anyio.abc.TaskGroup) -> None:
        # Answers and forwards' replies share the stream; anyio refuses two concurrent sends on it.
        sending = anyio.Lock(fast_acquire=True)

        async def send(out: bytes) -> None:
            async with sending:
                with anyio.fail_after(_TCP_IDLE):
                    await stream.send(len(out).to_bytes(2) + out)

        async def reply(out: bytes) -> None:
            # The client may have gone away while its query was forwarded.
            with contextlib.suppress(TimeoutError, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                await send(out)

        try:
            reader = BufferedByteReceiveStream(stream)
            while True:
                with anyio.fail_after(_TCP_IDLE):
                    length = int.from_bytes(await reader.receive_exactly(2))
                    data = await reader.receive_exactly(length)
                try:
                    out = self._respond(data, self.table)
                except Exception:
                    log.exception("dns.answer_failed", transport="tcp")
                    return
                if isinstance(out, Forward):
                    out = self._forward(forwards, data, "tcp", reply)
                    if out is None:
                        continue
                if out is None:
                    self.dropped += 1
                    return
                self.rcodes[out[3] & 0x0F] += 1
                await send(out)
        except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
            return

    def _forward(self, tg: anyio.abc.TaskGroup, data: bytes, transport: str, reply: _Reply) -> bytes | None:
        """Starts forwarding `data` in `tg`; returns SERVFAIL to send at once instead when `_FORWARDS` are under
        way. Synchronous, so that the UDP protocol can call it: the count goes up before this returns."""
        if self._forwards >= _FORWARDS:
            self._upstream_failed(transport, "too many forwards under way")
            self.forward_failed += 1
            return servfail(data)
        tg.start_soon(self._forward_one, data, transport, reply)
        self._forwards += 1
        return None

    async def _forward_one(self, data: bytes, transport: str, reply: _Reply) -> None:
        upstream = self.upstream
        assert upstream is not None  # `route` says FORWARD only when there is an upstream
        try:
            try:
                with anyio.fail_after(self._forward_timeout):
                    if transport == "udp":
                        out = await _exchange_udp(upstream, data)
                    else:
                        out = await _exchange_tcp(upstream, data)
                if not is_reply_to(data, out):
                    raise _NotAReplyError
                self.forwarded += 1
                log.debug("dns.forwarded", transport=transport, upstream=str(upstream), id=int.from_bytes(data[:2]))
            except (
                TimeoutError,
                OSError,
                anyio.EndOfStream,
                anyio.IncompleteRead,
                anyio.BrokenResourceError,
                _NotAReplyError,
            ) as exc:
                self._upstream_failed(transport, _describe(exc))
                self.forward_failed += 1
                out = servfail(data)
            except Exception:
                # A bug rather than the upstream's doing: logged loudly, and the client still gets its answer.
                log.exception("dns.forward_failed", transport=transport, upstream=str(upstream))
                self.forward_failed += 1
                out = servfail(data)
            await reply(out)
        except Exception:
            log.exception("dns.reply_failed", transport=transport)
        finally:
            self._forwards -= 1

    def metrics_text(self) -> str:
        """The server's counters in the Prometheus text format (appended to the zone's `/metrics`)."""
        shown = [i for i, n in enumerate(self.rcodes) if n or i in _ALWAYS_SHOWN_RCODES]
        lines = [
            "# HELP meshgate_dns_responses_total DNS responses the zone answered itself, by rcode",
            "# TYPE meshgate_dns_responses_total counter",
            *(f'meshgate_dns_responses_total{{rcode="{_rcode_name(i)}"}} {self.rcodes[i]}' for i in shown),
            "# HELP meshgate_dns_dropped_total Queries dropped without an answer (no readable header, or a response)",
            "# TYPE meshgate_dns_dropped_total counter",
            f"meshgate_dns_dropped_total {self.dropped}",
            "# HELP meshgate_dns_forwards_total Queries for names outside the domain sent to --dns-upstream, by result",
            "# TYPE meshgate_dns_forwards_total counter",
            f'meshgate_dns_forwards_total{{result="answered"}} {self.forwarded}',
            f'meshgate_dns_forwards_total{{result="failed"}} {self.forward_failed}',
            "# HELP meshgate_dns_names Names the zone's DNS answers (aliases included)",
            "# TYPE meshgate_dns_names gauge",
            f"meshgate_dns_names {len(self.table)}",
        ]
        return "\n".join(lines) + "\n"

    def _upstream_failed(self, transport: str, error: str) -> None:
        self._failures += 1
        now = anyio.current_time()
        if self._warned_at is not None and now - self._warned_at < _WARN_INTERVAL:
            log.debug("dns.upstream_failed", upstream=str(self.upstream), transport=transport, error=error)
            return
        log.warning(
            "dns.upstream_failed",
            upstream=str(self.upstream),
            transport=transport,
            error=error,
            # Failures (each answered SERVFAIL) since the last warning; the next comes _WARN_INTERVAL later at least.
            failures=self._failures,
        )
        self._warned_at = now
        self._failures = 0


def _rcode_name(rcode: int) -> str:
    try:
        return dns.rcode.to_text(dns.rcode.Rcode(rcode))
    except ValueError:
        return str(rcode)  # 11-15 have no name in the 4-bit header field


class _NotAReplyError(Exception):
    def __str__(self) -> str:
        return "the upstream's reply is not a response to the query"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return str(exc) or type(exc).__name__


async def _exchange_udp(upstream: Upstream, data: bytes) -> bytes:
    # A socket per forward: a fresh source port per query, as a resolver uses against spoofed replies (RFC 5452).
    async with await anyio.create_connected_udp_socket(upstream.host, upstream.port) as sock:
        await sock.send(data)
        return await sock.receive()


async def _exchange_tcp(upstream: Upstream, data: bytes) -> bytes:
    async with await anyio.connect_tcp(upstream.host, upstream.port) as stream:
        await stream.send(len(data).to_bytes(2) + data)
        reader = BufferedByteReceiveStream(stream)
        length = int.from_bytes(await reader.receive_exactly(2))
        return await reader.receive_exactly(length)
