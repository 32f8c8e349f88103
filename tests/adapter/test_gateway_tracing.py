"""TrafficTrace and the Mesh's zipkin backend on a builtin gateway, through a real Envoy and a tiny Zipkin collector
(issue 15).

The pipeline of tests/support/gateway_harness.py: one gateway Envoy for the module, one HTTP listener whose route
`/web` reaches a recording backend; the Mesh has one zipkin backend, the collector of tests/support/zipkin.py,
and the TrafficTrace `trace-edge` selects the gateway with no `conf` (so the Mesh's `defaultBackend`). Envoy
accepting the config is part of every test: the snapshot is pushed, the route answers, spans arrive.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
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
)
from tests.support.wait import eventually
from tests.support.zipkin import ZipkinCollector, zipkin_collector

pytestmark = pytest.mark.asyncio(loop_scope="module")

EDGE = ProxyId("default", "edge-1")
HOST = "gw.example.com"
# The gateway HCM's stat prefix (listeners.stat_prefix of the gateway's service): Envoy counts its tracing
# decisions under `http.edge.tracing.*`.
TRACING_STATS = "http.edge.tracing."


@dataclass
class Rig:
    ads: AdsServer
    envoy: Envoy
    port: int
    web: RecordingBackend
    collector: ZipkinCollector
    client: httpx.AsyncClient
    resources: dict[str, list[Resource]]

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(f"http://127.0.0.1:{self.port}{path}", headers={"Host": HOST})

    def push(self, sampling: float | None) -> Snapshot:
        backend: dict[str, Any] = {
            "name": "zipkin",
            "type": "zipkin",
            "conf": {"url": self.collector.url, "traceId128bit": True, "apiVersion": "httpJson"},
        }
        if sampling is not None:
            backend["sampling"] = sampling
        mesh = load(factory.mesh(tracing={"defaultBackend": "zipkin", "backends": [backend]}))
        proxy = self.resources["proxy"][0]
        ctx = MeshContext.build(
            "default",
            zone="zone-1",
            mesh_resource=mesh,
            gateways=self.resources["gateways"],
            routes=self.resources["routes"],
            dataplanes=self.resources["dataplanes"],
            policies={"TrafficTrace": [load(factory.traffic_trace("trace-edge", service="edge"))]},
        )
        snap = generate(proxy, ctx)
        assert not snap.problems, snap.problems
        self.ads.store.set(EDGE, snap)
        return snap

    async def tracing_stats(self) -> dict[str, int]:
        resp = await self.envoy.client.get("/stats", params={"filter": f"^{TRACING_STATS}", "format": "json"})
        resp.raise_for_status()
        return {s["name"].removeprefix(TRACING_STATS): int(s["value"]) for s in resp.json()["stats"] if "value" in s}

    async def sampling_applied(self, value: float) -> bool:
        """Whether Envoy runs the gateway listener with `overall_sampling` `value` (ADS applied the push)."""
        section = await self.envoy.dump_section("ListenersConfigDump")
        for listener in section.get("dynamic_listeners", []):
            active = listener.get("active_state", {}).get("listener", {})
            for chain in active.get("filter_chains", []):
                for f in chain.get("filters", []):
                    tracing = f.get("typed_config", {}).get("tracing", {})
                    if tracing and tracing.get("overall_sampling", {}).get("value", 0) == value:
                        return True
        return False


async def _build(stack: AsyncExitStack, workdir: Path) -> Rig:
    ads = await stack.enter_async_context(ads_server())
    web = await stack.enter_async_context(recording_backend("web"))
    collector = await stack.enter_async_context(zipkin_collector())
    port = free_port()
    listeners = [{"port": port, "protocol": "HTTP", "hostname": "*", "tags": {"listener": "main"}}]
    backends = [{"weight": 1, "destination": {"kuma.io/service": "web", "kuma.io/protocol": "http"}}]
    rules = [rule({"path": {"match": "PREFIX", "value": "/web"}}, backends=backends)]
    resources = {
        "proxy": [load(builtin_gateway_dataplane("edge-1", "edge"))],
        "gateways": [load(gateway("edge", "edge", listeners))],
        "routes": [load(http_route("main", rules, selector={"kuma.io/service": "edge", "listener": "main"}))],
        "dataplanes": [load(backend_dataplane("web", web.port, "web", protocol="http"))],
    }
    envoy = await stack.enter_async_context(running_envoy(workdir, str(EDGE), ads.port, name="edge"))
    # A connection per request: an HTTP connection Envoy accepted before a listener update stays on the old
    # filter chain (its old sampling) until it closes, so a kept-alive one would not see the new config.
    no_keep_alive = httpx.Limits(max_keepalive_connections=0)
    client = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0, limits=no_keep_alive))
    rig = Rig(ads, envoy, port, web, collector, client, resources)
    rig.push(100.0)

    async def ready() -> bool:
        return (await rig.get("/web/ready")).status_code == 200

    await ready_probe(ready, envoy, what="traffic through the gateway")
    return rig


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    """One gateway Envoy for the module, owned by one task (see `rig_in_one_task` for why)."""
    workdir = tmp_path_factory.mktemp("gateway-tracing")
    async with rig_in_one_task(lambda stack: _build(stack, workdir)) as rig:
        yield rig


def _spans_of(collector: ZipkinCollector, url: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The gateway's span of the request to `url` (SERVER, tagged with the URL) and its upstream span (CLIENT,
    its child), once both have arrived."""
    for server in collector.with_tag("http.url", url):
        if server.get("kind") != "SERVER":
            continue
        for client in collector.spans:
            if client.get("kind") == "CLIENT" and client.get("parentId") == server["id"]:
                return server, client
    return None


async def _request_spans(rig: Rig, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    url = f"http://{HOST}{path}"
    await eventually(
        lambda: _spans_of(rig.collector, url) is not None,
        what=f"the spans of {url} at the collector ({len(rig.collector.spans)} spans so far)",
    )
    found = _spans_of(rig.collector, url)
    assert found is not None
    return found


async def test_a_request_through_the_gateway_reaches_the_collector_as_a_server_and_an_upstream_span(rig: Rig) -> None:
    path = "/web/traced-1"
    assert (await rig.get(path)).status_code == 200
    server, client = await _request_spans(rig, path)  # spawn_upstream_span: the gateway's upstream call

    # One trace, 128-bit ids (traceId128bit).
    assert server["traceId"] == client["traceId"]
    assert len(server["traceId"]) == 32
    # Envoy's names and tags (Kuma sets neither): the host the route served, the cluster it chose.
    assert server["name"] == HOST
    assert client["name"].startswith("router web-")
    assert client["name"].endswith(" egress")
    tags = server["tags"]
    assert (tags["http.method"], tags["http.url"], tags["http.status_code"]) == ("GET", f"http://{HOST}{path}", "200")
    assert tags["node_id"] == str(EDGE)
    assert tags["upstream_cluster"].startswith("web-")
    assert client["tags"]["upstream_cluster"] == tags["upstream_cluster"]
    assert server["localEndpoint"]["serviceName"] == str(EDGE)
    # The backend got the same trace in its B3 headers, the upstream span as its parent.
    seen = [r for r in rig.web.requests if r.path == path]
    assert [(r.headers["x-b3-traceid"], r.headers["x-b3-spanid"]) for r in seen] == [(client["traceId"], client["id"])]


async def test_an_incoming_b3_trace_is_continued(rig: Rig) -> None:
    trace_id = "463ac35c9f6413ad48485a3953bb6124"
    parent = "a2fb4a1d1a96d312"
    path = "/web/continued"
    headers = {"Host": HOST, "x-b3-traceid": trace_id, "x-b3-spanid": parent, "x-b3-sampled": "1"}
    assert (await rig.client.get(f"http://127.0.0.1:{rig.port}{path}", headers=headers)).status_code == 200
    server, client = await _request_spans(rig, path)
    assert (server["traceId"], client["traceId"]) == (trace_id, trace_id)
    # `sharedSpanContext` unset: Envoy's default, the gateway's span shares the caller's span id.
    assert (server["id"], server.get("shared")) == (parent, True)


async def test_sampling_zero_traces_no_request(rig: Rig) -> None:
    """`sampling: 0` (overall_sampling 0%): Envoy decides every request not traceable, and no span of those
    requests reaches the collector, while spans of requests after `sampling: 100` do."""
    rig.push(0.0)
    await eventually(lambda: rig.sampling_applied(0.0), what="overall_sampling 0 in Envoy")
    before = await rig.tracing_stats()
    untraced = [f"/web/untraced-{i}" for i in range(6)]
    for path in untraced:
        assert (await rig.get(path)).status_code == 200
    after = await rig.tracing_stats()
    assert after["not_traceable"] - before["not_traceable"] == len(untraced)
    assert after["random_sampling"] == before["random_sampling"]
    assert all("x-b3-sampled" not in r.headers or r.headers["x-b3-sampled"] == "0"
               for r in rig.web.requests if r.path in untraced)  # fmt: skip

    # Back to 100%: these requests' spans arrive, and none of the untraced ones did before or with them.
    rig.push(100.0)
    await eventually(lambda: rig.sampling_applied(100.0), what="overall_sampling 100 in Envoy")
    traced = [f"/web/traced-again-{i}" for i in range(3)]
    for path in traced:
        assert (await rig.get(path)).status_code == 200
    for path in traced:
        await _request_spans(rig, path)
    assert not [s for s in rig.collector.spans if "/web/untraced-" in s.get("tags", {}).get("http.url", "")]
