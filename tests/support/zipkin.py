"""A tiny Zipkin collector for tests: `POST /api/v2/spans` (Zipkin's JSON v2, what Envoy's zipkin tracer sends
with `HTTP_JSON`) on 127.0.0.1 and a free port; every span it gets is kept, in arrival order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["ZipkinCollector", "zipkin_collector"]

SPANS_PATH = "/api/v2/spans"


@dataclass
class ZipkinCollector:
    port: int = 0
    spans: list[dict[str, Any]] = field(default_factory=list)
    reports: int = 0  # POSTs received

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SPANS_PATH}"

    def with_tag(self, key: str, value_contains: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if value_contains in s.get("tags", {}).get(key, "")]


@asynccontextmanager
async def zipkin_collector() -> AsyncIterator[ZipkinCollector]:
    collector = ZipkinCollector()

    async def spans(request: web.Request) -> web.Response:
        body = await request.json()
        collector.reports += 1
        collector.spans.extend(body if isinstance(body, list) else [body])
        return web.Response(status=202)  # Zipkin's answer

    app = web.Application()
    app.router.add_post(SPANS_PATH, spans)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        collector.port = int(runner.addresses[0][1])
        yield collector
    finally:
        await runner.cleanup()
