"""A TCP access log collector for tests: an asyncio server on 127.0.0.1 that records every line it reads
(newline included) and counts its connections; it can be stopped (closing every connection, as a collector
that goes away) and started again on the same port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = ["Collector", "collector"]


class Collector:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.lines: list[bytes] = []
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def text(self) -> list[str]:
        return [line.decode(errors="replace") for line in self.lines]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stops listening and closes every connection."""
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while line := await reader.readline():
                self.lines.append(line)
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


@asynccontextmanager
async def collector(port: int = 0) -> AsyncIterator[Collector]:
    c = Collector(port)
    await c.start()
    try:
        yield c
    finally:
        await c.stop()
