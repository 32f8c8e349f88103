"""The access log streamer: the TrafficLog lines Envoy writes for a Mesh's `tcp` logging backend, sent on to that
backend over TCP, as kuma-dp's streamer does (`app/kuma-dp/pkg/dataplane/accesslogs/streamer.go`).

    zone        a TrafficLog whose backend is `tcp`: Envoy's file access logger at the path this process sent in
                its node metadata (`accessLogSocketPath`, meshgate.sockets), each line `<address>;<line>`
    meshgate-dp `AccessLogStreamer.open` makes a FIFO there (before Envoy starts, so Envoy never creates a plain
                file in its place) -> `run` reads it -> each line split at its first ';' -> the sender of that
                address -> `<line>\\n` over one TCP connection per address
    stop        the task is cancelled: connections closed, the FIFO closed and removed

A sender connects (5 s timeout, kuma-dp's), writes what its outbox holds, and notices at once when the collector
closes the connection (it reads it: a collector sends nothing), then reconnects after a jittered backoff
(`meshgate.backoff.Backoff`, `RECONNECT_INITIAL` growing to `RECONNECT_MAXIMUM`). While it is disconnected, lines
wait in its outbox, bounded in bytes (`OUTBOX_BYTES`): one that does not fit is dropped, counted and logged
(`dp.access_logs.dropped`, at most once per `DROP_LOG_INTERVAL` per address, with the count), so memory never
grows with an absent collector. Lines written or being written when a connection breaks are lost too (TCP gives
no receipt), and counted the same way. The reader never waits for a sender: Envoy's writes never block on a
slow collector.

What differs from kuma-dp: kuma-dp drops a line whose collector it cannot reach and tries to connect again for
the next line, with no backoff and no buffer (`streamer.go:146-173`); here lines wait, bounded, and reconnects
back off. kuma-dp's FIFO is mode 0666 (`streamer.go:53`); here 0600, since whoever can write the pipe chooses
where this process connects. kuma-dp also accepts JSON lines `{"address", "message"}` (its MeshAccessLog
backend, `streamer.go:110-139`); meshgate has no MeshAccessLog, so a line is `<address>;<line>` only, and
anything else is counted as malformed (`dp.access_logs.malformed`) and skipped.

Errors: `open` raises OSError when the FIFO cannot be made (meshgate-dp then does not start Envoy); nothing else
escapes `run`: a collector's failures are logged and retried.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import anyio.abc
import structlog

from meshgate.backoff import Backoff
from meshgate.concurrency import Wakeup

__all__ = ["AccessLogStreamer", "SenderStats", "parse_address", "split_line"]

log = structlog.get_logger(__name__)

CONNECT_TIMEOUT: Final = 5.0  # kuma-dp's defaultConnectTimeout (sender.go:11)
RECONNECT_INITIAL: Final = 0.5
RECONNECT_MAXIMUM: Final = 30.0
# Per collector: about 3,000 lines of Kuma's default HTTP format (~300 bytes), a few seconds of a busy gateway
# while a collector restarts; at most MAX_COLLECTORS times this in all.
OUTBOX_BYTES: Final = 1024 * 1024
# A line longer than this is dropped: Envoy's request headers are at most 60 KiB by default, so a line of Kuma's
# formats fits, and a partial line never holds more than this.
MAX_LINE: Final = 64 * 1024
# Distinct collector addresses: a Mesh has a handful of logging backends; lines for more are dropped.
MAX_COLLECTORS: Final = 32
_READ_SIZE: Final = 64 * 1024  # a pipe holds 64 KiB on Linux: one read empties it
_WRITE_SIZE: Final = 64 * 1024
DROP_LOG_INTERVAL: Final = 10.0


def split_line(line: bytes) -> tuple[str, bytes] | None:
    """(address, line) of one line Envoy wrote (without its newline), split at the first ';' as kuma-dp
    splits it (`streamer.go:118`); None when it has no ';' or no address."""
    address, sep, rest = line.partition(b";")
    if not sep or not address:
        return None
    try:
        return address.decode("ascii"), rest
    except UnicodeDecodeError:
        return None


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `[v6]:port` (Go's net.SplitHostPort), or None."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        return None  # an IPv6 address needs brackets, as in Go
    return (host, int(port)) if host else None


@dataclass(slots=True)
class SenderStats:
    """What one collector's sender did: lines sent, dropped (outbox full or connection broken), connections made,
    and whether it is connected now."""

    sent: int = 0
    dropped: int = 0
    connections: int = 0
    connected: bool = False


class _Outbox:
    """Lines waiting for one collector, at most `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lines: deque[bytes] = deque()
        self._bytes = 0
        self._ready = Wakeup()

    def __len__(self) -> int:
        return len(self._lines)

    def put(self, line: bytes) -> bool:
        if self._bytes + len(line) > self._limit:
            return False
        self._lines.append(line)
        self._bytes += len(line)
        self._ready.set()
        return True

    async def take(self, size: int) -> list[bytes]:
        """At least one line, and more while they fit in `size` bytes; waits for one."""
        while not self._lines:
            await self._ready.wait()
        out = [self._lines.popleft()]
        taken = len(out[0])
        while self._lines and taken + len(self._lines[0]) <= size:
            out.append(self._lines.popleft())
            taken += len(out[-1])
        self._bytes -= taken
        return out


class _Sender:
    def __init__(self, address: str, host: str, port: int, streamer: AccessLogStreamer) -> None:
        self.address, self.host, self.port = address, host, port
        self.outbox = _Outbox(streamer.outbox_bytes)
        self.stats = SenderStats()
        self._streamer = streamer
        self._in_flight = 0  # lines taken from the outbox and not yet known written
        self._dropped_logged = 0
        self._next_drop_log = 0.0
        self._log = log.bind(address=address)

    def offer(self, line: bytes) -> None:
        if not self.outbox.put(line):
            self.drop(1, "outbox full: the collector is not connected or not reading")

    def drop(self, lines: int, reason: str) -> None:
        self.stats.dropped += lines
        now = time.monotonic()
        if now >= self._next_drop_log:
            self._next_drop_log = now + DROP_LOG_INTERVAL
            self._log.warning("dp.access_logs.dropped", lines=self.stats.dropped - self._dropped_logged, reason=reason)
            self._dropped_logged = self.stats.dropped

    async def run(self) -> None:
        backoff = self._streamer.backoff()
        failures = 0
        while True:
            try:
                with anyio.fail_after(self._streamer.connect_timeout):
                    stream = await anyio.connect_tcp(self.host, self.port)
            except OSError as exc:  # refused, unreachable, unresolvable, or the timeout's TimeoutError
                failures += 1
                if failures == 1:  # once per outage; the drops say how long it lasts
                    self._log.warning("dp.access_logs.connect_failed", error=str(exc) or type(exc).__name__)
                await anyio.sleep(backoff.next_delay())
                continue
            failures = 0
            self.stats.connections += 1
            # `dropped`: the total so far, including drops since the last rate-limited `dropped` warning.
            self._log.info("dp.access_logs.connected", waiting=len(self.outbox), dropped=self.stats.dropped)
            started = time.monotonic()
            self.stats.connected = True
            try:
                async with stream, anyio.create_task_group() as tg:
                    tg.start_soon(self._watch, stream, tg.cancel_scope)
                    await self._write(stream)
                    tg.cancel_scope.cancel()
            finally:
                self.stats.connected = False
            if self._in_flight:
                self.drop(self._in_flight, "connection broken while sending")
                self._in_flight = 0
            backoff.session_ended(time.monotonic() - started)
            await anyio.sleep(backoff.next_delay())

    async def _write(self, stream: anyio.abc.SocketStream) -> None:
        while True:
            lines = await self.outbox.take(_WRITE_SIZE)
            self._in_flight = len(lines)
            try:
                await stream.send(b"".join(lines))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                self._log.warning("dp.access_logs.disconnected", error=str(exc) or type(exc).__name__)
                return
            self.stats.sent += len(lines)
            self._in_flight = 0

    async def _watch(self, stream: anyio.abc.SocketStream, writer: anyio.CancelScope) -> None:
        """Ends the connection when the collector closes it; what it sends is read and ignored."""
        with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            while True:
                await stream.receive()
        self._log.warning("dp.access_logs.disconnected", error="the collector closed the connection")
        writer.cancel()


class AccessLogStreamer:
    """Reads the FIFO at `path` and sends each line to the collector it names. `open()` first (before Envoy
    starts), then `run()` in a task group until cancelled; leaving `open()` removes the FIFO."""

    def __init__(
        self,
        path: Path,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        backoff: Callable[[], Backoff] = lambda: Backoff(RECONNECT_INITIAL, RECONNECT_MAXIMUM),
        outbox_bytes: int = OUTBOX_BYTES,
        max_line: int = MAX_LINE,
        max_collectors: int = MAX_COLLECTORS,
    ) -> None:
        self.path = path
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self.outbox_bytes = outbox_bytes
        self.max_line = max_line
        self.max_collectors = max_collectors
        self.senders: dict[str, _Sender] = {}
        self.malformed = 0  # lines skipped: no address, a bad address, too long, too many collectors
        self._next_malformed_log = 0.0
        self._fds: tuple[int, int] | None = None
        self._tg: anyio.abc.TaskGroup | None = None

    def stats(self, address: str) -> SenderStats:
        sender = self.senders.get(address)
        return sender.stats if sender is not None else SenderStats()

    @contextlib.contextmanager
    def open(self) -> Iterator[AccessLogStreamer]:
        """Makes the FIFO (replacing whatever is at the path, as kuma-dp does) and opens it, so that Envoy's
        open for writing neither blocks nor creates a file; closes and removes it on the way out."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.mkfifo(self.path, 0o600)
        try:
            reader = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            try:
                # Our own writer keeps the pipe open between Envoy's writers (a restart, a reopen): without one a
                # reader sees end-of-file, and a non-blocking one would then spin.
                keeper = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                os.close(reader)
                raise
        except OSError:
            self._remove()
            raise
        self._fds = (reader, keeper)
        log.info("dp.access_logs.open", path=str(self.path))
        try:
            yield self
        finally:
            self._fds = None
            os.close(keeper)
            os.close(reader)
            self._remove()

    def _remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISFIFO(self.path.lstat().st_mode):
                self.path.unlink()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Reads until cancelled; the senders live as long."""
        if self._fds is None:
            raise RuntimeError("AccessLogStreamer.run() outside open()")
        reader = self._fds[0]
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                while True:
                    try:
                        await self._read(reader)
                    except Exception as exc:  # a bug here must not stop Envoy, nor leave the pipe undrained
                        log.error("dp.access_logs.read_failed", error=repr(exc), path=str(self.path))
                        await anyio.sleep(1.0)
        finally:
            self._tg = None
            self.senders.clear()

    async def _read(self, fd: int) -> None:
        pending = bytearray()
        skipping = False  # inside a line already dropped as too long: skip to its end
        while True:
            await anyio.wait_readable(fd)
            try:
                chunk = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            pending += chunk
            *lines, rest = bytes(pending).split(b"\n")
            pending = bytearray(rest)
            for line in lines:
                if skipping:
                    skipping = False
                    continue
                self._dispatch(line)
            if len(pending) > self.max_line:
                if not skipping:  # counted once, however many reads it spans
                    self._malformed("a line longer than the limit", bytes(pending[:80]))
                pending.clear()
                skipping = True

    def _dispatch(self, line: bytes) -> None:
        if len(line) > self.max_line:
            self._malformed("a line longer than the limit", line[:80])
            return
        split = split_line(line)
        if split is None:
            self._malformed("expected <address>;<line>", line[:80])
            return
        address, body = split
        sender = self.senders.get(address)
        if sender is None:
            sender = self._sender(address)
            if sender is None:
                return
        sender.offer(body + b"\n")

    def _sender(self, address: str) -> _Sender | None:
        parsed = parse_address(address)
        if parsed is None:
            self._malformed("the address is not host:port", address[:80].encode())
            return None
        if len(self.senders) >= self.max_collectors:
            self._malformed(f"more than {self.max_collectors} collector addresses", address[:80].encode())
            return None
        assert self._tg is not None
        sender = _Sender(address, *parsed, self)
        self.senders[address] = sender
        self._tg.start_soon(sender.run)
        return sender

    def _malformed(self, reason: str, sample: bytes) -> None:
        self.malformed += 1
        now = time.monotonic()
        if now >= self._next_malformed_log:
            self._next_malformed_log = now + DROP_LOG_INTERVAL
            log.warning(
                "dp.access_logs.malformed",
                reason=reason,
                sample=sample.decode(errors="replace"),
                total=self.malformed,
                path=str(self.path),
            )
