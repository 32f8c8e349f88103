"""meshgate-dp's metrics hijacker on its Unix socket, asked as Envoy's `kuma:metrics:hijacker` cluster asks it.

Real parts: the hijacker's aiohttp server on a Unix socket, an application's own Prometheus endpoint (a real
HTTP server), and an Envoy admin port nobody listens on (Envoy down). Through a real Envoy and the zone it is
tests/e2e/test_dp_metrics.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from meshgate.dp.metrics import AGGREGATE_HEADER, MetricsHijacker, dp_registry
from tests.support.processes import free_port

pytestmark = pytest.mark.anyio

APP_METRICS = "# HELP my_app_orders_total Orders.\n# TYPE my_app_orders_total counter\nmy_app_orders_total 7\n"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def app_endpoint() -> AsyncIterator[int]:
    """An application's own /metrics."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(text=APP_METRICS, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def hijacker(tmp_path: Path) -> AsyncIterator[Path]:
    socket = tmp_path / "kuma-mh-edge-1-default.sock"
    registry, errors = dp_registry()
    # Nothing listens on this admin port: Envoy is down.
    server = MetricsHijacker(socket, free_port(), registry, errors)
    async with anyio.create_task_group() as tg:
        await tg.start(server.serve)
        yield socket
        tg.cancel_scope.cancel()
    assert not socket.exists()  # removed on the way out


async def scrape(socket: Path, headers: dict[str, str] | None = None) -> str:
    async with (
        aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(socket))) as session,
        session.get("http://localhost/?usedonly", headers=headers or {}) as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        return await resp.text()


async def test_with_envoy_down_its_own_metrics_are_served_and_the_failure_counted(tmp_path: Path) -> None:
    async with hijacker(tmp_path) as socket:
        first = await scrape(socket)
        assert "process_resident_memory_bytes" in first
        assert 'meshgate_dp_metrics_scrape_errors_total{application="envoy"} 1.0' in first
        second = await scrape(socket)
        assert 'meshgate_dp_metrics_scrape_errors_total{application="envoy"} 2.0' in second


async def test_aggregate_applications_are_merged_and_an_unreachable_one_counted(tmp_path: Path) -> None:
    async with app_endpoint() as port, hijacker(tmp_path) as socket:
        apps = [
            {"name": "orders", "address": "127.0.0.1", "port": port, "path": "/metrics"},
            {"name": "gone", "address": "127.0.0.1", "port": free_port(), "path": "/metrics"},
        ]
        text = await scrape(socket, {AGGREGATE_HEADER: json.dumps(apps)})
        assert "my_app_orders_total 7" in text
        assert 'meshgate_dp_metrics_scrape_errors_total{application="gone"} 1.0' in text
        assert "# TYPE process_resident_memory_bytes gauge" in text


async def test_a_socket_that_cannot_be_made_is_logged_and_does_not_stop_the_proxy(tmp_path: Path) -> None:
    """A Unix socket path holds at most 107 bytes: a longer one fails to bind, and `serve` returns."""
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    registry, errors = dp_registry()
    server = MetricsHijacker(deep / "kuma-mh-edge-1-default.sock", free_port(), registry, errors)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(server.serve)
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["dp.metrics.failed"]
