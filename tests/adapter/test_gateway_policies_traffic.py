"""RateLimit, FaultInjection, TrafficLog and ProxyTemplate on a builtin gateway, through a real Envoy (issue 13).

The pipeline of tests/support/gateway_harness.py, with policies in the `MeshContext`: one gateway Envoy for the
module, one HTTP listener `main` whose routes each reach their own service, so that each policy (matched by its
destination service) shapes one route. Tests observe effects: statuses and headers counted over requests,
delays measured against generous lower bounds only.

| path | service | policy |
|---|---|---|
| `/rl-default` | rl-default | RateLimit: 3 requests a minute, Kuma's defaults on limit (429) |
| `/rl-custom` | rl-custom | RateLimit: 3 requests a minute, `onRateLimit` status 503 and two headers |
| `/free` | free | none |
| `/abort-all`, `/abort-none`, `/abort-half` | the same names | FaultInjection abort 503 at 100%, 0%, 50% |
| `/delay` | delay | FaultInjection delay 1s at 100% |
| `/slow` | slow | FaultInjection response bandwidth 1kbps at 100% |

TrafficLog `log-all` (every source, every destination) sends every filter chain's access log to the Mesh's
default logging backend, a file in the test's directory, in Kuma's default formats; a TCP listener `tcp`
proxies to an echo backend so that its TCP proxy logs too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import MeshContext, Snapshot, generate
from meshgate.xds.ads import ProxyId
from tests.support.envoy import Envoy, free_port, running_envoy
from tests.support.gateway_harness import (
    AdsServer,
    RecordingBackend,
    StreamBackend,
    ads_server,
    backend_dataplane,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    load,
    ready_probe,
    recording_backend,
    rig_in_one_task,
    rule,
    tcp_echo_backend,
    tcp_route,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDGE = ProxyId("default", "edge-1")
HTTP = "http"
SERVICES = ("rl-default", "rl-custom", "free", "abort-all", "abort-none", "abort-half", "delay", "slow")
LIMIT = 3
DELAY_SECONDS = 1.0


LUA_FILTER = """
name: envoy.filters.http.lua
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
  default_source_code:
    inline_string: |
      function envoy_on_response(handle)
        handle:headers():add("x-proxy-template", "lua")
      end
"""


def to_http(service: str) -> list[dict[str, Any]]:
    """A backend whose destination names the protocol, as Kuma's FaultInjection destinations must."""
    return [{"weight": 1, "destination": {"kuma.io/service": service, "kuma.io/protocol": HTTP}}]


def policies() -> list[dict[str, Any]]:
    limited = {"http": {"requests": LIMIT, "interval": "60s"}}
    custom = {
        "http": {
            "requests": LIMIT,
            "interval": "60s",
            "onRateLimit": {
                "status": 503,
                "headers": [{"key": "x-kuma-rate-limited", "value": "true"}, {"key": "x-limit", "value": "3",
                                                                               "append": True}],
            },
        }
    }  # fmt: skip
    return [
        factory.rate_limit("rl-default", destination="rl-default", conf=limited),
        factory.rate_limit("rl-custom", destination="rl-custom", conf=custom),
        factory.fault_injection("abort-all", destination="abort-all",
                                conf={"abort": {"percentage": 100, "httpStatus": 503}}),
        factory.fault_injection("abort-none", destination="abort-none",
                                conf={"abort": {"percentage": 0, "httpStatus": 503}}),
        factory.fault_injection("abort-half", destination="abort-half",
                                conf={"abort": {"percentage": 50, "httpStatus": 503}}),
        factory.fault_injection("delay", destination="delay",
                                conf={"delay": {"percentage": 100, "value": f"{DELAY_SECONDS:g}s"}}),
        factory.fault_injection("slow", destination="slow",
                                conf={"responseBandwidth": {"percentage": 100, "limit": "1kbps"}}),
        factory.traffic_log("log-all"),
        factory.proxy_template("lua", service="edge", conf={"imports": ["gateway-proxy"], "modifications": [
            {"httpFilter": {"operation": "addBefore", "match": {"name": "envoy.filters.http.router"},
                            "value": LUA_FILTER}},
        ]}),
    ]  # fmt: skip


def by_kind(docs: Sequence[Mapping[str, Any]]) -> dict[str, list[Resource]]:
    out: dict[str, list[Resource]] = {}
    for doc in docs:
        out.setdefault(str(doc["type"]), []).append(load(doc))
    return out


@dataclass
class Rig:
    ads: AdsServer
    envoy: Envoy
    port: int
    tcp_port: int
    backends: dict[str, RecordingBackend]
    echo: StreamBackend
    access_log: Path
    client: httpx.AsyncClient
    snapshot: Snapshot

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(f"http://127.0.0.1:{self.port}{path}", headers={"Host": "gw.example.com"})


def push(ads: AdsServer, resources: Mapping[str, Sequence[Resource]], policy_docs: Sequence[Mapping[str, Any]],
         mesh: Resource | None = None) -> Snapshot:  # fmt: skip
    proxy = resources["proxy"][0]
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=mesh,
        gateways=resources["gateways"],
        routes=resources["routes"],
        dataplanes=resources["dataplanes"],
        policies=by_kind(policy_docs),
    )
    snap = generate(proxy, ctx)
    assert not snap.problems, snap.problems
    ads.store.set(EDGE, snap)
    return snap


async def _build(stack: AsyncExitStack, workdir: Path) -> Rig:
    ads = await stack.enter_async_context(ads_server())
    backends = {s: await stack.enter_async_context(recording_backend(s)) for s in SERVICES}
    echo = await stack.enter_async_context(tcp_echo_backend("echo"))
    port, tcp_port = free_port(), free_port()
    listeners = [
        {"port": port, "protocol": "HTTP", "hostname": "*", "tags": {"listener": "main"}},
        {"port": tcp_port, "protocol": "TCP", "tags": {"listener": "tcp"}},
    ]
    rules = [rule({"path": {"match": "PREFIX", "value": f"/{s}"}}, backends=to_http(s)) for s in SERVICES]
    resources = {
        "proxy": [load(builtin_gateway_dataplane("edge-1", "edge"))],
        "gateways": [load(gateway("edge", "edge", listeners))],
        "routes": [
            load(http_route("main", rules, selector={"kuma.io/service": "edge", "listener": "main"})),
            load(tcp_route("tcp", "echo", selector={"kuma.io/service": "edge", "listener": "tcp"})),
        ],
        "dataplanes": [
            *(load(backend_dataplane(s, b.port, s, protocol=HTTP)) for s, b in backends.items()),
            load(backend_dataplane("echo", echo.port, "echo")),
        ],
    }
    access_log = workdir / "access.log"
    logging = {"defaultBackend": "file", "backends": [{"name": "file", "type": "file",
                                                       "conf": {"path": str(access_log)}}]}  # fmt: skip
    mesh = load(factory.mesh(logging=logging))
    snap = push(ads, resources, policies(), mesh)
    envoy = await stack.enter_async_context(running_envoy(workdir, str(EDGE), ads.port, name="edge"))
    client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
    rig = Rig(ads, envoy, port, tcp_port, backends, echo, access_log, client, snap)

    async def ready() -> bool:
        return (await rig.get("/free")).status_code == 200

    await ready_probe(ready, envoy, what="traffic through the gateway")
    return rig


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One gateway Envoy for the module, owned by one task (see `rig_in_one_task` for why)."""
    workdir = tmp_path_factory.mktemp("gateway-policies")
    async with rig_in_one_task(lambda stack: _build(stack, workdir)) as rig:
        yield rig


# --- RateLimit -------------------------------------------------------------------------------------------


async def test_rate_limit_answers_429_to_the_request_over_the_bucket(rig: Rig) -> None:
    statuses = [(await rig.get("/rl-default")).status_code for _ in range(LIMIT + 2)]
    assert statuses == [200] * LIMIT + [429, 429]
    assert len(rig.backends["rl-default"].requests) == LIMIT  # the limited ones never reached the backend


async def test_rate_limit_answers_kumas_on_rate_limit_status_and_headers(rig: Rig) -> None:
    for _ in range(LIMIT):
        assert (await rig.get("/rl-custom")).status_code == 200
    limited = await rig.get("/rl-custom")
    assert limited.status_code == 503
    assert limited.headers["x-kuma-rate-limited"] == "true"
    assert limited.headers.get_list("x-limit") == ["3"]


async def test_rate_limit_is_per_route_and_leaves_other_routes_alone(rig: Rig) -> None:
    statuses = {(await rig.get("/free")).status_code for _ in range(LIMIT * 3)}
    assert statuses == {200}


# --- FaultInjection --------------------------------------------------------------------------------------


async def test_abort_at_100_percent_answers_its_status_and_never_reaches_the_backend(rig: Rig) -> None:
    statuses = {(await rig.get("/abort-all")).status_code for _ in range(20)}
    assert statuses == {503}
    assert rig.backends["abort-all"].requests == []


async def test_abort_at_0_percent_never_aborts(rig: Rig) -> None:
    statuses = {(await rig.get("/abort-none")).status_code for _ in range(20)}
    assert statuses == {200}


async def test_abort_at_50_percent_aborts_about_half(rig: Rig) -> None:
    total = 200
    aborted = sum([(await rig.get("/abort-half")).status_code == 503 for _ in range(total)])
    # Binomial(200, 0.5): 60..140 is more than 5 standard deviations (7.1) either side of 100.
    assert 60 <= aborted <= 140, aborted
    assert len(rig.backends["abort-half"].requests) == total - aborted


async def test_delay_holds_the_request_for_at_least_the_delay(rig: Rig) -> None:
    started = time.monotonic()
    resp = await rig.get("/delay")
    elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert elapsed >= DELAY_SECONDS * 0.9, elapsed  # Envoy's timer may fire a hair early


async def test_response_bandwidth_slows_a_large_response(rig: Rig) -> None:
    # The backend echoes the path: 4 KiB through 1 kbps (Envoy's KiB per second) takes about 3 s or more.
    path = "/slow?" + "x" * 4096
    started = time.monotonic()
    resp = await rig.get(path)
    elapsed = time.monotonic() - started
    assert resp.status_code == 200
    assert len(resp.content) > 4096
    assert elapsed >= 1.5, elapsed


# --- TrafficLog ------------------------------------------------------------------------------------------


def log_lines(rig: Rig) -> list[str]:
    return rig.access_log.read_text().splitlines() if rig.access_log.exists() else []


async def test_access_log_has_one_line_per_http_request_in_kumas_default_format(rig: Rig) -> None:
    paths = [f"/free/logged-{i}" for i in range(3)]
    for path in paths:
        assert (await rig.get(path)).status_code == 200

    async def logged() -> bool:
        return all(any(p in line for line in log_lines(rig)) for p in paths)

    await eventually(logged, what="the requests in the access log")  # Envoy flushes its log every second
    for path in paths:
        (line,) = [line for line in log_lines(rig) if f" {path} " in line]
        # [time] mesh "GET path protocol" status flags received sent duration upstream-time "xff" "ua" "trace"
        # "request id" "authority" "source service" "destination service" "source address" "upstream host"
        assert f'] default "GET {path} HTTP/1.1" 200 - ' in line
        assert '"gw.example.com" "edge" "*" "127.0.0.1"' in line
        assert line.endswith(f'"127.0.0.1:{rig.backends["free"].port}"')


async def test_access_log_has_one_line_per_tcp_connection_in_kumas_default_format(rig: Rig) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.tcp_port)
    writer.write(b"ping\n")
    assert await reader.readline() == b"echo:ping\n"
    writer.close()
    await writer.wait_closed()
    upstream = f"127.0.0.1:{rig.echo.port}"

    async def logged() -> bool:
        return any(f"->{upstream}(*)" in line for line in log_lines(rig))

    await eventually(logged, what="the TCP connection in the access log")
    (line,) = [line for line in log_lines(rig) if f"->{upstream}(*)" in line]
    assert f"] - default 127.0.0.1(edge)->{upstream}(*) took " in line
    assert "sent 10 bytes, received: 5 bytes" in line  # "echo:ping\n" back, "ping\n" in


# --- ProxyTemplate ---------------------------------------------------------------------------------------


async def test_proxy_template_http_filter_is_in_the_config_and_acts(rig: Rig) -> None:
    section = await rig.envoy.dump_section("ListenersConfigDump")
    (main,) = [d for d in section["dynamic_listeners"] if d["name"] == f"edge:HTTP:{rig.port}"]
    (hcm,) = main["active_state"]["listener"]["filter_chains"][0]["filters"]
    names = [f["name"] for f in hcm["typed_config"]["http_filters"]]
    assert names[-2:] == ["envoy.filters.http.lua", "envoy.filters.http.router"]
    resp = await rig.get("/free/templated")
    assert resp.status_code == 200
    assert resp.headers["x-proxy-template"] == "lua"
