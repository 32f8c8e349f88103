"""meshgate-dp's access log streamer (meshgate.dp.access_logs) on a real FIFO, with real TCP collectors that go
away and come back.

Lines are written to the FIFO as Envoy's file access logger writes them (`<address>;<line>\\n`, appended by a
writer that opened the path); collectors (tests/support/log_collector.py) are tiny asyncio servers on loopback
that record each line they get and count their connections. Reconnects back off from 50 ms here (the default
starts at 0.5 s).
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import anyio
import pytest

from meshgate.backoff import Backoff
from meshgate.dp.access_logs import AccessLogStreamer
from tests.support.envoy import free_port
from tests.support.log_collector import Collector, collector
from tests.support.wait import eventually


@asynccontextmanager
async def streaming(path: Path, **options: object) -> AsyncIterator[AccessLogStreamer]:
    streamer = AccessLogStreamer(path, backoff=lambda: Backoff(0.05, 0.2), **options)  # type: ignore[arg-type]
    with streamer.open():
        async with anyio.create_task_group() as tg:
            await tg.start(streamer.run)
            try:
                yield streamer
            finally:
                tg.cancel_scope.cancel()


@contextmanager
def envoy_writer(path: Path) -> Iterator[int]:
    """The FIFO opened for appending, as Envoy's file access logger opens its path."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        yield fd
    finally:
        os.close(fd)


async def write(fd: int, *lines: str) -> None:
    """In a thread, as Envoy's flush thread writes: a write larger than the pipe waits for the streamer to read."""
    data = "".join(f"{line}\n" for line in lines).encode()
    while data:
        data = data[await anyio.to_thread.run_sync(os.write, fd, data) :]


async def test_each_line_goes_newline_terminated_to_its_address_on_one_connection_each(tmp_path: Path) -> None:
    path = tmp_path / "kuma-al-gw-1-default.sock"
    async with collector() as a, collector() as b, streaming(path) as streamer:
        assert stat.S_ISFIFO(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with envoy_writer(path) as fd:
            await write(fd, f"{a.address};GET /one 200", f"{b.address};GET /two 200", f"{a.address};x;y;z")
            await write(fd, *(f"{b.address};line {i}" for i in range(100)))
            await eventually(lambda: len(a.lines) == 2 and len(b.lines) == 101, what="every line at its collector")
        assert a.lines == [b"GET /one 200\n", b"x;y;z\n"]
        assert b.lines == [b"GET /two 200\n", *(f"line {i}\n".encode() for i in range(100))]
        assert (a.connections, b.connections) == (1, 1)
        assert streamer.stats(b.address).sent == 101
        assert streamer.malformed == 0


async def test_lines_survive_envoy_closing_and_reopening_the_pipe(tmp_path: Path) -> None:
    """Envoy reopens its access logs (SIGUSR1, a restart): the streamer keeps the pipe and goes on reading."""
    path = tmp_path / "al.sock"
    async with collector() as c, streaming(path):
        with envoy_writer(path) as fd:
            await write(fd, f"{c.address};first")
        with envoy_writer(path) as fd:
            await write(fd, f"{c.address};second")
        await eventually(lambda: c.lines == [b"first\n", b"second\n"], what="both lines")


async def test_malformed_and_overlong_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "al.sock"
    async with collector() as c, streaming(path, max_line=1000) as streamer:
        with envoy_writer(path) as fd:
            await write(fd, "no address here", f"{c.address.replace(':', '-')};bad address", f"{c.address};ok 1")
            # Longer than the limit and longer than a pipe read: dropped whole, in pieces, up to its newline.
            await write(fd, f"{c.address};" + "x" * 200_000, f"{c.address};ok 2")
            await eventually(lambda: c.lines == [b"ok 1\n", b"ok 2\n"], what="the well-formed lines")
        assert streamer.malformed == 3
        assert streamer.stats(c.address).sent == 2


async def test_a_collector_that_stops_and_restarts_gets_the_lines_written_meanwhile(tmp_path: Path) -> None:
    path = tmp_path / "al.sock"
    port = free_port()
    c = Collector(port)
    await c.start()
    try:
        async with streaming(path) as streamer:
            with envoy_writer(path) as fd:
                await write(fd, f"{c.address};before")
                await eventually(lambda: c.lines == [b"before\n"], what="the first line")
                await c.stop()
                # The streamer reads the connection: it sees the collector close without writing to it.
                await eventually(lambda: not streamer.stats(c.address).connected, what="the streamer to notice")
                await write(fd, *(f"{c.address};while down {i}" for i in range(5)))
                await anyio.sleep(0.3)  # let a few reconnects fail (no assertion rides on this)
                await c.start()
                await write(fd, f"{c.address};after")
                expected = [b"before\n", *(f"while down {i}\n".encode() for i in range(5)), b"after\n"]
                await eventually(lambda: c.lines == expected, what="the queued lines, then the new one")
            assert c.connections == 2
            assert streamer.stats(c.address).connections == 2
            assert streamer.stats(c.address).dropped == 0
    finally:
        await c.stop()


async def test_lines_for_an_absent_collector_are_bounded_and_dropped_with_a_count(tmp_path: Path) -> None:
    path = tmp_path / "al.sock"
    port = free_port()  # nothing listens there yet
    address = f"127.0.0.1:{port}"
    line = "y" * 99  # 100 bytes with its newline
    async with streaming(path, outbox_bytes=1000) as streamer:
        with envoy_writer(path) as fd:
            await write(fd, *(f"{address};{line}" for _ in range(25)))
            await eventually(lambda: streamer.stats(address).dropped == 15, what="the lines past 1000 bytes dropped")
            async with collector(port) as c:
                await eventually(lambda: len(c.lines) == 10, what="the 10 lines that fit")
                await write(fd, f"{address};later")
                await eventually(lambda: len(c.lines) == 11)
        assert c.lines == [f"{line}\n".encode()] * 10 + [b"later\n"]
        assert streamer.stats(address).dropped == 15


async def test_the_pipe_replaces_what_was_there_and_is_removed_when_the_streamer_stops(tmp_path: Path) -> None:
    path = tmp_path / "al.sock"
    path.write_text("a stale plain file: Envoy would have appended to it")
    async with streaming(path):
        assert stat.S_ISFIFO(path.stat().st_mode)
    assert not path.exists()


async def test_the_pipe_cannot_be_made_where_a_directory_is(tmp_path: Path) -> None:
    path = tmp_path / "al.sock"
    path.mkdir()
    with pytest.raises(OSError, match="directory"), AccessLogStreamer(path).open():
        pass
    assert path.is_dir()
