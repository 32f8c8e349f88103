"""The ADS adapter's boundary over real grpc.aio on loopback, with a scripted client instead of Envoy:
how each failure maps to a gRPC status, and that a snapshot change wakes the stream."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from meshgate.transport.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, SnapshotStore, register_ads
from meshgate.transport.grpc_server import serve_grpc
from meshgate.xds.ads import CLUSTER, ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from tests.support.envoy_config import http_listener, route_config, snapshot
from tests.support.wait import eventually

PROXY = ProxyId("default", "gw")


def first(node_id: str = "default.gw", type_url: str = CLUSTER) -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url)
    req.node.id = node_id
    return req


class Script:
    """Requests sent one by one, on demand, on a stream kept open until `close`."""

    def __init__(self) -> None:
        self.send, self._recv = anyio.create_memory_object_stream[discovery_pb2.DeltaDiscoveryRequest | None](8)

    async def close(self) -> None:
        await self.send.aclose()
        await self._recv.aclose()

    async def requests(self) -> AsyncIterator[discovery_pb2.DeltaDiscoveryRequest]:
        async for req in self._recv:
            if req is None:
                return
            yield req


async def serve(tg: anyio.abc.TaskGroup) -> tuple[SnapshotStore, ProxyRegistry, grpc.aio.Channel]:
    store, registry = SnapshotStore(), ProxyRegistry()
    port = await tg.start(
        serve_grpc, [register_ads(AggregatedDiscoveryService(store, registry))], [ADS_SERVICE_NAME], "127.0.0.1", 0
    )
    return store, registry, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def resources(route_to: str = "a") -> dict:  # type: ignore[type-arg]
    return snapshot(
        {"a": (1,), "b": (2,)}, {"http": http_listener("http", 1, "r")}, {"r": route_config("r", {"/": route_to})}
    )


async def test_sotw_is_refused_as_unimplemented() -> None:
    async with anyio.create_task_group() as tg:
        _, _, channel = await serve(tg)
        async with channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
                iter([discovery_pb2.DiscoveryRequest(type_url=CLUSTER)])
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "DELTA_GRPC" in (err.value.details() or "")
        tg.cancel_scope.cancel()


@pytest.mark.parametrize("node_id", ["", "nodot", "default."])
async def test_a_node_id_that_is_not_mesh_dot_name_is_invalid_argument(node_id: str) -> None:
    async with anyio.create_task_group() as tg:
        _, registry, channel = await serve(tg)
        async with channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(iter([first(node_id)]))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert registry.describe() == {"proxies": []}
        tg.cancel_scope.cancel()


async def test_stream_follows_snapshot_changes_and_a_bad_nonce_fails_it_loudly() -> None:
    async with anyio.create_task_group() as tg:
        store, registry, channel = await serve(tg)
        script = Script()
        async with channel, contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(script.close)
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).DeltaAggregatedResources(script.requests())
            await script.send.send(first())
            # No snapshot yet: nothing is sent, the stream waits; then the first one wakes it.
            await eventually(lambda: registry.get(PROXY) is not None, what="stream registered")
            store.set(PROXY, resources())
            resp = await call.read()
            assert isinstance(resp, discovery_pb2.DeltaDiscoveryResponse)
            assert [r.name for r in resp.resources] == ["a", "b"]
            await script.send.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce=resp.nonce))
            await eventually(
                lambda: registry.describe()["proxies"][0]["streams"][0]["types"]["Cluster"]["acked"] == 1,
                what="ACK recorded",
            )
            # A cluster change wakes the stream at once.
            changed = resources()
            changed[CLUSTER].pop("b")
            store.set(PROXY, changed)
            resp = await call.read()
            assert isinstance(resp, discovery_pb2.DeltaDiscoveryResponse)
            assert list(resp.removed_resources) == ["b"]
            await script.send.send(discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, response_nonce="999"))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "nonce '999'" in (err.value.details() or "")
        record = registry.get(PROXY)
        assert record is not None
        assert not record.connected
        assert record.last is not None
        assert "nonce '999'" in record.last.error
        tg.cancel_scope.cancel()
