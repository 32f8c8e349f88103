"""The data plane's DNS server (kuma-dp's embedded CoreDNS): what the transparent proxy's `--redirect-dns`
sends the namespace's DNS queries to, on `--dns-coredns-port` (15053), UDP and TCP.

kuma-dp's Corefile (app/kuma-dp/pkg/dataplane/dnsserver/Corefile at v2.7.29) asks the mesh's resolver first
(Envoy's DNS filter, which holds the zone's VIPs) and, when it answers NOTIMP, FORMERR, NXDOMAIN, SERVFAIL or
REFUSED, the servers of /etc/resolv.conf (`alternate`). meshgate's mesh resolver is the zone's own DNS server
(zone_cp/dns.py, `--dns-port`, 5653 by default), which answers `.mesh` names from the zone's VIP table: so the
first upstream here is the zone's DNS, and the alternates are resolv.conf's servers. A query's bytes go on
unchanged and the reply comes back unchanged; no upstream answering in `_TIMEOUT` gives SERVFAIL.

This must run as the data plane's uid (`--kuma-dp-uid`): the transparent proxy lets that uid's DNS queries out
untouched, which is what keeps this server's own upstream queries from being redirected back to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import anyio.abc
import structlog
from anyio.streams.buffered import BufferedByteReceiveStream

from meshgate.dns.responder import servfail
from meshgate.dns.upstream import Upstream, is_reply_to

__all__ = ["ALTERNATE_RCODES", "DnsProxy", "resolv_conf_servers"]

log = structlog.get_logger(__name__)

# The Corefile's `alternate NOTIMP,FORMERR,NXDOMAIN,SERVFAIL,REFUSED`.
ALTERNATE_RCODES = frozenset({4, 1, 3, 2, 5})
# Per upstream; a stub resolver retries after a second or two on its own.
_TIMEOUT = 2.0
# Queries under way at once: each holds a task and a socket for at most len(upstreams) * _TIMEOUT.
_IN_FLIGHT = 256
_TCP_IDLE = 10.0


def resolv_conf_servers(path: Path = Path("/etc/resolv.conf")) -> list[Upstream]:
    """resolv.conf's nameservers, in order (CoreDNS's `alternate ... /etc/resolv.conf`)."""
    try:
        text = path.read_text()
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                out.append(Upstream.parse(fields[1].split("%")[0]))
            except ValueError:
                continue
    return out


class DnsProxy:
    def __init__(self, mesh: Upstream, alternates: Sequence[Upstream], *, timeout: float = _TIMEOUT) -> None:
        self.mesh = mesh
        self.alternates = tuple(alternates)
        self._timeout = timeout
        self._in_flight = 0
        # One UDP socket answers every query: anyio lets one task send on it at a time (BusyResourceError
        # otherwise, e.g. glibc asking A and AAAA at once and both answers coming back together).
        self._udp_send = anyio.Lock()

    async def resolve(self, query: bytes, transport: str) -> bytes:
        """The answer to one query: the mesh resolver's, or an alternate's when the mesh's rcode says so."""
        last: bytes | None = None
        for upstream in (self.mesh, *self.alternates):
            try:
                with anyio.fail_after(self._timeout):
                    reply = await (_udp if transport == "udp" else _tcp)(upstream, query)
            except (TimeoutError, OSError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError) as exc:
                log.debug("dp.dns.upstream_failed", upstream=str(upstream), error=str(exc) or type(exc).__name__)
                continue
            if not is_reply_to(query, reply):
                continue
            last = reply
            if reply[3] & 0x0F not in ALTERNATE_RCODES:
                return reply
        return last if last is not None else servfail(query)

    async def serve(
        self, host: str, port: int, *, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Serves UDP and TCP on host:port until cancelled; reports the bound port."""
        async with await anyio.create_udp_socket(local_host=host, local_port=port) as udp:
            bound = int(udp.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610 - anyio's, not Django's
            await self._serve(udp, host, bound, task_status)

    async def _serve(
        self, udp: anyio.abc.UDPSocket, host: str, bound: int, task_status: anyio.abc.TaskStatus[int]
    ) -> None:
        async with (
            await anyio.create_tcp_listener(local_host=host, local_port=bound) as tcp,
            anyio.create_task_group() as tg,
        ):
            log.info("dp.dns.serving", port=bound, mesh=str(self.mesh), alternates=[str(a) for a in self.alternates])
            tg.start_soon(tcp.serve, self._tcp_client, tg)
            task_status.started(bound)
            async for data, addr in udp:
                if len(data) < 12:
                    continue
                if self._in_flight >= _IN_FLIGHT:
                    async with self._udp_send:
                        await udp.sendto(servfail(data), *addr)
                    continue
                self._in_flight += 1
                tg.start_soon(self._udp_query, udp, data, addr)

    async def _udp_query(self, udp: anyio.abc.UDPSocket, data: bytes, addr: tuple[str, int]) -> None:
        try:
            reply = await self.resolve(data, "udp")
            async with self._udp_send:
                await udp.sendto(reply, *addr)
        except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass
        finally:
            self._in_flight -= 1

    async def _tcp_client(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            try:
                while True:
                    with anyio.fail_after(_TCP_IDLE):
                        length = int.from_bytes(await reader.receive_exactly(2))
                        data = await reader.receive_exactly(length)
                    if len(data) < 12:
                        return
                    reply = await self.resolve(data, "tcp")
                    await stream.send(len(reply).to_bytes(2) + reply)
            except (TimeoutError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
                return


async def _udp(upstream: Upstream, data: bytes) -> bytes:
    async with await anyio.create_connected_udp_socket(upstream.host, upstream.port) as sock:
        await sock.send(data)
        return await sock.receive()


async def _tcp(upstream: Upstream, data: bytes) -> bytes:
    async with await anyio.connect_tcp(upstream.host, upstream.port) as stream:
        await stream.send(len(data).to_bytes(2) + data)
        reader = BufferedByteReceiveStream(stream)
        length = int.from_bytes(await reader.receive_exactly(2))
        return await reader.receive_exactly(length)
