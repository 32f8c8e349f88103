"""GlobalKDSService/StreamXDSConfigs over real grpc.aio on loopback: the global's broker and the zone's answerer.

The zone's Envoy admin is replaced by a fake dumper; the end-to-end test (tests/e2e/test_config_dump.py) runs a
real Envoy through meshgate-dp.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import grpc
import pytest

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.dp.cli import load_dataplane, with_admin_port
from meshgate.observability.metrics import KDSMetrics
from meshgate.store import MemoryStore
from meshgate.sync.streams import StreamRegistry
from meshgate.transport.grpc_server import serve_grpc
from meshgate.transport.kds_server import GlobalKDSService
from meshgate.transport.xds_configs import (
    MAX_CONFIG_BYTES,
    VIRTUAL_IPS,
    ConfigDumpAnswerer,
    ConfigDumpError,
    DataplaneNotFound,
    XDSConfigBroker,
    ZoneOffline,
)
from tests.support.wait import eventually
from zone_cp.envoy_admin import EnvoyAdminDumper

NAMES = ["kuma.mesh.v1alpha1.GlobalKDSService"]


class FakeDumper(EnvoyAdminDumper):
    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(MemoryStore(), lambda mesh, name: None)
        self.delay = delay
        self.asked: list[tuple[str, str, bool]] = []

    async def dump(self, mesh: str, name: str, include_eds: bool = False) -> bytes:
        self.asked.append((mesh, name, include_eds))
        await anyio.sleep(self.delay)
        if name == "missing":
            raise DataplaneNotFound(f'Dataplane "{name}" not found in mesh "{mesh}"')
        if name == "boom":
            raise RuntimeError("a bug")
        if name == "huge":
            return b"x" * (MAX_CONFIG_BYTES + 1)
        return f'{{"proxy": "{mesh}.{name}", "eds": {str(include_eds).lower()}}}'.encode()


@asynccontextmanager
async def linked(broker: XDSConfigBroker, dumper: FakeDumper, zone: str = "zone-1") -> AsyncIterator[anyio.CancelScope]:
    """A global serving the broker and a zone answering on its own channel; yields the zone's cancel scope."""
    health = GlobalKDSService(StreamRegistry(KDSMetrics()), 0.2, broker)
    register = [lambda s: kds_pb2_grpc.add_GlobalKDSServiceServicer_to_server(health, s)]
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_grpc, register, NAMES, "127.0.0.1", 0)
        zone_scope = anyio.CancelScope()

        async def run_zone() -> None:
            with zone_scope:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    await ConfigDumpAnswerer(dumper, zone).run(channel, (("client-id", zone),))

        tg.start_soon(run_zone)
        await eventually(lambda: broker.connected(zone), what="the zone's config-dump stream")
        yield zone_scope
        tg.cancel_scope.cancel()


async def test_requests_are_answered_with_the_config_or_the_zones_error() -> None:
    broker = XDSConfigBroker(timeout=5)
    dumper = FakeDumper()
    async with linked(broker, dumper):
        assert await broker.request("zone-1", "default", "edge-1") == b'{"proxy": "default.edge-1", "eds": false}'
        assert b'"eds": true' in await broker.request("zone-1", "default", "edge-1", include_eds=True)
        with pytest.raises(ConfigDumpError, match='Dataplane "missing" not found'):
            await broker.request("zone-1", "default", "missing")
        # A bug on the zone is answered as an error; the stream survives it.
        with pytest.raises(ConfigDumpError, match="internal error: a bug"):
            await broker.request("zone-1", "default", "boom")
        # Over the KDS message limit: named, not a dead stream.
        with pytest.raises(ConfigDumpError, match=r"over the \d+-byte KDS limit"):
            await broker.request("zone-1", "default", "huge")
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            results[i] = await broker.request("zone-1", "default", f"dp-{i}")

        async with anyio.create_task_group() as tg:
            for i in range(20):
                tg.start_soon(one, i)
        assert all(results[i] == f'{{"proxy": "default.dp-{i}", "eds": false}}'.encode() for i in range(20))


async def test_a_zone_without_a_stream_is_offline() -> None:
    with pytest.raises(ZoneOffline, match='zone "zone-9" is offline'):
        await XDSConfigBroker().request("zone-9", "default", "edge-1")


async def test_a_slow_zone_times_out() -> None:
    broker = XDSConfigBroker(timeout=0.2)
    async with linked(broker, FakeDumper(delay=2)):
        with pytest.raises(TimeoutError, match=r'zone "zone-1" did not answer within 0\.2s'):
            await broker.request("zone-1", "default", "edge-1")


async def test_a_zone_that_disconnects_fails_its_pending_requests_at_once() -> None:
    broker = XDSConfigBroker(timeout=30)
    async with linked(broker, FakeDumper(delay=30)) as zone:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                failure: list[BaseException] = []

                async def ask() -> None:
                    try:
                        await broker.request("zone-1", "default", "edge-1")
                    except ZoneOffline as exc:
                        failure.append(exc)

                tg.start_soon(ask)
                await anyio.sleep(0.2)
                zone.cancel()
        assert len(failure) == 1
        assert "disconnected" in str(failure[0])
        await eventually(lambda: not broker.connected("zone-1"), what="the stream gone")


def test_meshgate_dp_reports_its_admin_port_unless_the_dataplane_has_one() -> None:
    doc = '{"type": "Dataplane", "mesh": "default", "name": "edge-1", "networking": {"address": "127.0.0.1",'
    gw = ' "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}'
    plain = load_dataplane(doc + gw + "}}")
    resource, port = with_admin_port(plain, 9999)
    assert port == 9999
    assert resource.spec.networking.admin.port == 9999  # type: ignore[attr-defined]
    assert plain.spec.networking.admin.port == 0  # type: ignore[attr-defined]  # the input is not changed
    own = load_dataplane(doc + ' "admin": {"port": 7777},' + gw + "}}")
    assert with_admin_port(own, 9999)[1] == 7777


async def test_the_same_stream_answers_which_vip_a_zone_gives_a_name() -> None:
    def names(mesh: str, name: str) -> dict[str, object] | None:
        known: dict[str, dict[str, object]] = {
            "echo.mesh": {"name": "echo.mesh", "mesh": "default", "vip": "240.0.0.1", "ports": [80]}
        }
        entry = known.get(name)
        return entry if entry is not None and mesh in ("", "default") else None

    broker = XDSConfigBroker(timeout=5)
    dumper = FakeDumper()
    answerer = ConfigDumpAnswerer(dumper, "zone-1", names)
    health = GlobalKDSService(StreamRegistry(KDSMetrics()), 0.2, broker)
    register = [lambda s: kds_pb2_grpc.add_GlobalKDSServiceServicer_to_server(health, s)]
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_grpc, register, NAMES, "127.0.0.1", 0)

        async def run_zone() -> None:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await answerer.run(channel, (("client-id", "zone-1"),))

        tg.start_soon(run_zone)
        await eventually(lambda: broker.connected("zone-1"), what="the zone's stream")
        raw = await broker.request("zone-1", "", "echo.mesh", resource_type=VIRTUAL_IPS, wait=5)
        assert json.loads(raw)["vip"] == "240.0.0.1"
        with pytest.raises(ConfigDumpError, match=r"nope\.mesh has no VIP in zone 'zone-1'"):
            await broker.request("zone-1", "", "nope.mesh", resource_type=VIRTUAL_IPS)
        assert dumper.asked == []  # never mistaken for a config dump
        tg.cancel_scope.cancel()
