"""Timeout, Retry, CircuitBreaker and HealthCheck on a builtin gateway, observed through a real Envoy (issue 13).

The real pipeline minus processes (tests/support/gateway_harness.py): Universal resources loaded with
`codec.load`, a `MeshContext` holding the policies, `generate`, the snapshot served by the real delta ADS
server to one real Envoy for the whole module. One HTTP listener routes a path prefix to a service per test, and
each policy's destination is that service only, so the tests share one config and never see each other:

| prefix | service | backend | policy |
|---|---|---|---|
| /slow | slow | answers after 3 s | Timeout `http.requestTimeout` 0.3 s |
| /flaky | flaky | 503 for the first two calls of each `x-id`, then 200 | Retry `http` 3 retries on 503 |
| /busy | busy | answers after 1 s | CircuitBreaker maxConnections 1, maxPendingRequests 1, maxRequests 1 |
| /pair | pair | two endpoints: one always 500, one 200 | CircuitBreaker totalErrors consecutive 2 |
| /hc | hc | two endpoints; one's /health can be turned to 503 | HealthCheck HTTP /health every 0.2 s |
| (TCP listener) | tcp-retry | two endpoints: a TCP echo and a closed port | Retry `tcp.maxConnectAttempts` 3 |

Bounds on time are lower bounds only (the timeout answered no sooner than it is set); everything else is
counted: statuses, calls per backend.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiohttp import web

from meshgate.xds import MeshContext, generate
from meshgate.xds.ads import ProxyId
from tests.support.envoy import Envoy, free_port, running_envoy
from tests.support.gateway_harness import (
    AdsServer,
    StreamBackend,
    ads_server,
    backend_dataplane,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    load,
    ready_probe,
    rig_in_one_task,
    rule,
    tcp_echo_backend,
    tcp_route,
    to,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDGE = ProxyId("default", "edge-1")
REQUEST_TIMEOUT = 0.3
SLOW_SECONDS = 3.0
BUSY_SECONDS = 1.0


@dataclass
class Backend:
    """An HTTP backend whose answer `respond` decides; counts every request but health checks by path."""

    name: str
    respond: Callable[[web.Request], Awaitable[web.Response]]
    port: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # path -> requests
    by_id: Counter[str] = field(default_factory=Counter)  # x-id header -> requests
    healthy: bool = True

    @property
    def traffic(self) -> int:
        return sum(n for path, n in self.calls.items() if path != "/health")


@asynccontextmanager
async def serving(backend: Backend) -> AsyncIterator[Backend]:
    async def answer(request: web.Request) -> web.Response:
        backend.calls[request.path] += 1
        backend.by_id[request.headers.get("x-id", "")] += 1
        if request.path == "/health":
            return web.Response(status=200 if backend.healthy else 503)
        return await backend.respond(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        backend.port = int(runner.addresses[0][1])
        yield backend
    finally:
        await runner.cleanup()


def answering(status: int, text: str, delay: float = 0.0) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def respond(request: web.Request) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.Response(status=status, text=text)

    return respond


def flaky(backend_ref: list[Backend]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def respond(request: web.Request) -> web.Response:
        seen = backend_ref[0].by_id[request.headers.get("x-id", "")]
        return web.Response(status=503 if seen <= 2 else 200, text=f"call {seen}")

    return respond


def policy(kind: str, name: str, service: str, conf: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": kind,
        "mesh": "default",
        "name": name,
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": service}}],
        "conf": conf,
    }


POLICIES = [
    policy("Timeout", "slow-timeout", "slow", {"connectTimeout": "1s", "http": {"requestTimeout": "0.300s"}}),
    policy("Retry", "flaky-retry", "flaky", {"http": {"numRetries": 3, "retriableStatusCodes": [503]}}),
    policy(
        "CircuitBreaker",
        "busy-limit",
        "busy",
        {"thresholds": {"maxConnections": 1, "maxPendingRequests": 1, "maxRequests": 1}},
    ),
    policy(
        "CircuitBreaker",
        "pair-eject",
        "pair",
        {
            "interval": "1s",
            "baseEjectionTime": "60s",
            "maxEjectionPercent": 50,
            "detectors": {"totalErrors": {"consecutive": 2}},
        },
    ),
    policy("Retry", "tcp-retry", "tcp-retry", {"tcp": {"maxConnectAttempts": 3}}),
    policy(
        "HealthCheck",
        "hc-active",
        "hc",
        {
            "interval": "0.200s",
            "timeout": "0.500s",
            "unhealthyThreshold": 1,
            "healthyThreshold": 1,
            "noTrafficInterval": "0.200s",
            "healthyPanicThreshold": 0,
            "http": {"path": "/health"},
        },
    ),
]


@dataclass
class Rig:
    ads: AdsServer
    envoy: Envoy
    client: httpx.AsyncClient
    port: int
    tcp_port: int
    backends: dict[str, Backend]
    echo: StreamBackend

    async def get(self, path: str, **headers: str) -> httpx.Response:
        return await self.client.get(f"http://127.0.0.1:{self.port}{path}", headers=headers)


async def _build(stack: AsyncExitStack, workdir: Path) -> Rig:
    ads = await stack.enter_async_context(ads_server())
    flaky_ref: list[Backend] = []
    specs = {
        "ready": ("ready", answering(200, "ready")),
        "slow": ("slow", answering(200, "slow", SLOW_SECONDS)),
        "flaky": ("flaky", flaky(flaky_ref)),
        "busy": ("busy", answering(200, "busy", BUSY_SECONDS)),
        "pair-bad": ("pair", answering(500, "bad")),
        "pair-good": ("pair", answering(200, "good")),
        "hc-a": ("hc", answering(200, "hc-a")),
        "hc-b": ("hc", answering(200, "hc-b")),
    }
    backends = {}
    for name, (_, respond) in specs.items():
        backends[name] = await stack.enter_async_context(serving(Backend(name, respond)))
    flaky_ref.append(backends["flaky"])
    dataplanes = [builtin_gateway_dataplane("edge-1", "edge")]
    dataplanes += [
        backend_dataplane(name, backends[name].port, service, protocol="http") for name, (service, _) in specs.items()
    ]
    echo = await stack.enter_async_context(tcp_echo_backend("echo"))
    dataplanes += [
        backend_dataplane("tcp-echo", echo.port, "tcp-retry", protocol="tcp"),
        backend_dataplane("tcp-dead", free_port(), "tcp-retry", protocol="tcp"),  # nothing listens: refused
    ]
    port, tcp_port = free_port(), free_port()
    services = sorted({service for service, _ in specs.values()})
    routes = [
        http_route(
            "resilience",
            [rule({"path": {"match": "PREFIX", "value": f"/{s}"}}, backends=to(s)) for s in services],
            selector={"kuma.io/service": "edge"},
        ),
        tcp_route("tcp", "tcp-retry", selector={"kuma.io/service": "edge"}),
    ]
    proxy = load(dataplanes[0])
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        gateways=[
            load(
                gateway(
                    "edge",
                    "edge",
                    [{"port": port, "protocol": "HTTP", "hostname": "*"}, {"port": tcp_port, "protocol": "TCP"}],
                )
            )
        ],
        routes=[load(r) for r in routes],
        dataplanes=[load(d) for d in dataplanes],
        policies=_by_kind(),
    )
    snap = generate(proxy, ctx)
    assert not snap.problems, snap.problems
    assert {a.match.winner.meta.name for a in snap.policies.applied} == {p["name"] for p in POLICIES}
    ads.store.set(EDGE, snap)
    envoy = await stack.enter_async_context(running_envoy(workdir, str(EDGE), ads.port, name="edge"))
    client = await stack.enter_async_context(httpx.AsyncClient(timeout=10.0))
    rig = Rig(ads, envoy, client, port, tcp_port, backends, echo)

    async def ready() -> bool:
        return (await rig.get("/ready")).text == "ready"

    await ready_probe(ready, envoy, what="the gateway listener serving /ready")
    return rig


def _by_kind() -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for doc in POLICIES:
        out.setdefault(doc["type"], []).append(load(doc))
    return out


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One Envoy for the module, owned by one background task (see `rig_in_one_task`)."""
    workdir = tmp_path_factory.mktemp("resilience")
    async with rig_in_one_task(lambda stack: _build(stack, workdir)) as rig:
        yield rig


# --- Timeout -------------------------------------------------------------------------------------------------


async def test_a_slow_backend_gets_504_after_the_request_timeout(rig: Rig) -> None:
    started = time.monotonic()
    response = await rig.get("/slow")
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.text == "upstream request timeout"
    assert elapsed >= REQUEST_TIMEOUT * 0.9  # no sooner than the timeout (only a lower bound: never flaky)
    assert rig.backends["slow"].traffic == 1  # no retry: a Timeout is not a Retry


# --- Retry ---------------------------------------------------------------------------------------------------


async def test_a_backend_failing_twice_then_succeeding_is_called_three_times(rig: Rig) -> None:
    response = await rig.get("/flaky", **{"x-id": "retry-1"})
    assert response.status_code == 200
    assert response.text == "call 3"
    assert rig.backends["flaky"].by_id["retry-1"] == 3


async def test_routes_without_a_retry_policy_are_not_retried(rig: Rig) -> None:
    response = await rig.get("/pair", **{"x-id": "no-retry"})  # whichever endpoint: answered once
    assert response.status_code in (200, 500)
    calls = rig.backends["pair-bad"].by_id["no-retry"] + rig.backends["pair-good"].by_id["no-retry"]
    assert calls == 1


async def test_tcp_connections_to_a_refusing_endpoint_are_retried_on_the_other(rig: Rig) -> None:
    """Round robin alternates the two endpoints; without `maxConnectAttempts` every other connection would be
    closed at once (the refused endpoint), with it each is retried on the echo."""
    for i in range(6):
        reader, writer = await asyncio.open_connection("127.0.0.1", rig.tcp_port)
        try:
            writer.write(f"line {i}\n".encode())
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 10) == f"echo:line {i}\n".encode()
        finally:
            writer.close()
            await writer.wait_closed()
    assert rig.echo.connections == 6


# --- CircuitBreaker ------------------------------------------------------------------------------------------


async def test_requests_over_the_connection_limit_get_503(rig: Rig) -> None:
    responses = await asyncio.gather(*(rig.get("/busy") for _ in range(6)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] >= 1
    assert statuses[503] >= 1
    assert set(statuses) == {200, 503}
    overflowed = [r for r in responses if r.status_code == 503]
    assert all(r.headers.get("x-envoy-overloaded") == "true" for r in overflowed)
    assert rig.backends["busy"].traffic == statuses[200]  # the 503s never reached the backend


async def test_an_endpoint_with_consecutive_5xx_is_ejected_and_gets_no_traffic(rig: Rig) -> None:
    bad = rig.backends["pair-bad"]

    async def ejected() -> bool:
        # Round robin over two endpoints: the bad one answers 500 until its second consecutive 5xx ejects it.
        responses = [await rig.get("/pair") for _ in range(4)]
        return all(r.status_code == 200 for r in responses)

    await eventually(ejected, what="the failing endpoint ejected")
    assert bad.traffic >= 2
    before = bad.traffic
    responses = [await rig.get("/pair") for _ in range(20)]
    assert [r.text for r in responses] == ["good"] * 20
    assert bad.traffic == before


# --- HealthCheck ---------------------------------------------------------------------------------------------


async def test_an_endpoint_failing_its_health_check_is_drained_and_returns_when_healthy(rig: Rig) -> None:
    a, b = rig.backends["hc-a"], rig.backends["hc-b"]
    await eventually(lambda: a.calls["/health"] > 0 and b.calls["/health"] > 0, what="both endpoints checked")

    async def served_by() -> set[str]:
        return {(await rig.get("/hc")).text for _ in range(6)}

    async def both() -> bool:
        return await served_by() == {"hc-a", "hc-b"}

    await eventually(both, what="traffic on both endpoints")
    a.healthy = False

    async def drained() -> bool:
        return await served_by() == {"hc-b"}

    await eventually(drained, what="hc-a drained after failing its health check")
    before = a.traffic
    assert await served_by() == {"hc-b"}
    assert a.traffic == before
    a.healthy = True
    await eventually(both, what="hc-a back in rotation once healthy")
