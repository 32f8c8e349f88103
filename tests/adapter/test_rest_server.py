"""serve_app under anyio, and the diagnostics app: readiness, liveness, Prometheus metrics."""

from __future__ import annotations

import socket

import anyio
import httpx
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from meshgate.observability.diagnostics import create_diagnostics_app
from meshgate.rest.server import serve_app
from meshgate.rest.testing import serving, serving_in_thread

TIMEOUT = 10.0


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


async def hello(_: web.Request) -> web.Response:
    return web.Response(text="hello")


def hello_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", hello)
    return app


async def test_serve_app_reports_the_bound_port_and_releases_it() -> None:
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_app, hello_app(), "127.0.0.1", 0)
        assert port > 0
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/")).text == "hello"
        tg.cancel_scope.cancel()
    assert port_is_closed(port)


async def test_serve_app_cleans_up_with_a_keep_alive_connection_open() -> None:
    """A client holding an idle keep-alive connection must not keep the server from stopping."""
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        async with serving(hello_app()) as url:
            assert (await http.get(url)).status_code == 200
        with pytest.raises(httpx.TransportError):
            await http.get(url)


def test_serving_in_thread_stops_its_server() -> None:
    with serving_in_thread(hello_app()) as (url, _):
        assert httpx.get(url, timeout=TIMEOUT).text == "hello"
        port = int(url.rsplit(":", 1)[1])
    assert port_is_closed(port)


async def test_ready_follows_the_callback() -> None:
    ready = False
    app = create_diagnostics_app(lambda: ready, registry=CollectorRegistry())
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        assert (await http.get("/ready")).status_code == 503
        ready = True
        response = await http.get("/ready")
        assert (response.status_code, response.text) == (200, "ok")
        assert (await http.get("/healthy")).status_code == 200


async def test_metrics_exposes_the_registry_and_extra_text() -> None:
    registry = CollectorRegistry()
    requests = Counter("meshgate_test_requests", "requests seen by the test", registry=registry)
    requests.inc(3)
    app = create_diagnostics_app(
        lambda: True, registry=registry, extra_text=lambda: 'meshgate_kds_streams{zone="z1"} 2'
    )
    async with serving(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "meshgate_test_requests_total 3.0" in response.text
    assert response.text.endswith('meshgate_kds_streams{zone="z1"} 2\n')
