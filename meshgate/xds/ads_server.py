"""grpc.aio adapter for Envoy's delta ADS: `AggregatedDiscoveryService.DeltaAggregatedResources`.

Thin, like the KDS server: it maps the call to the sans-IO `AdsStream`, reads the proxy's snapshot from an
`XdsSnapshotSource`, and records the stream in a `ProxyRegistry`. The proxy is named by the first request's
`node.id`, `<mesh>.<dataplane name>` as Kuma does. Per stream, a reader and a writer share one task group.

Errors at the boundary:

    missing or malformed node.id           -> INVALID_ARGUMENT
    ProtocolError (stale nonce, ...)       -> FAILED_PRECONDITION naming the type and nonce
    StreamAggregatedResources (SotW)       -> UNIMPLEMENTED: meshgate serves delta xDS only

A snapshot source plugs in through the `XdsSnapshotSource` protocol: `snapshot(proxy)` returns the current
`ProxySnapshot` (None while the proxy is unknown: nothing is sent and Envoy waits), and `listen(proxy)` yields a
`Wakeup` that the source sets whenever that proxy's snapshot may have changed. The writer re-reads the
snapshot on every wake, so bursts of changes coalesce into one delta. `SnapshotStore` is a ready-made source.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import anyio
import grpc
import structlog
from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc, discovery_pb2
from google.protobuf.message import Message

from meshgate.transport.wakeup import Wakeup
from meshgate.xds.ads import AdsStream, Input, ProtocolError, ProxyId, ProxySnapshot, short_type
from meshgate.xds.ads_registry import ProxyRegistry, StreamRecord

__all__ = [
    "ADS_SERVICE_NAME",
    "AggregatedDiscoveryService",
    "HasResources",
    "SnapshotStore",
    "XdsSnapshotSource",
    "register_ads",
]

log = structlog.get_logger("meshgate.xds.ads")

ADS_SERVICE_NAME: str = ads_pb2.DESCRIPTOR.services_by_name["AggregatedDiscoveryService"].full_name


class HasResources(Protocol):
    """What `meshgate.xds.generate` returns (`Snapshot`): resources by type URL and name."""

    @property
    def resources(self) -> Mapping[str, Mapping[str, Message]]: ...


class XdsSnapshotSource(Protocol):
    def snapshot(self, proxy: ProxyId) -> ProxySnapshot | None: ...

    def listen(self, proxy: ProxyId) -> AbstractContextManager[Wakeup]: ...


class SnapshotStore:
    """An `XdsSnapshotSource` holding one snapshot per proxy, set from outside (tests, a generator loop)."""

    def __init__(self) -> None:
        self._snapshots: dict[ProxyId, ProxySnapshot] = {}
        self._listeners: dict[ProxyId, set[Wakeup]] = {}

    def snapshot(self, proxy: ProxyId) -> ProxySnapshot | None:
        return self._snapshots.get(proxy)

    @contextmanager
    def listen(self, proxy: ProxyId) -> Iterator[Wakeup]:
        wake = Wakeup()
        self._listeners.setdefault(proxy, set()).add(wake)
        try:
            yield wake
        finally:
            listeners = self._listeners.get(proxy, set())
            listeners.discard(wake)
            if not listeners:
                self._listeners.pop(proxy, None)

    def set(
        self, proxy: ProxyId, snapshot: ProxySnapshot | HasResources | Mapping[str, Mapping[str, Message]]
    ) -> ProxySnapshot:
        """Accepts a prepared snapshot, the generator's `meshgate.xds.Snapshot`, or type URL -> {name: message}."""
        if isinstance(snapshot, ProxySnapshot):
            prepared = snapshot
        elif isinstance(snapshot, Mapping):
            prepared = ProxySnapshot.of(snapshot)
        else:
            prepared = ProxySnapshot.of(snapshot.resources)
        self._snapshots[proxy] = prepared
        self._wake(proxy)
        return prepared

    def remove(self, proxy: ProxyId) -> None:
        if self._snapshots.pop(proxy, None) is not None:
            self._wake(proxy)

    def _wake(self, proxy: ProxyId) -> None:
        for wake in self._listeners.get(proxy, ()):
            wake.set()


class AggregatedDiscoveryService(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        source: XdsSnapshotSource,
        registry: ProxyRegistry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Wall-clock time: the read API shows when a NACK happened; latencies are differences of it.
        self._source = source
        self.registry = registry
        self._clock = clock

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "meshgate serves delta xDS only: set ads_config.api_type DELTA_GRPC"
        )

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        requests = aiter(request_iterator)
        try:
            first = await anext(requests)
        except StopAsyncIteration:
            return
        try:
            proxy = ProxyId.parse(first.node.id)
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            raise  # abort raises; this line is for the type checker
        stream = AdsStream(proxy)
        rec = self.registry.open(stream, context.peer(), self._clock())
        slog = log.bind(proxy=str(proxy), stream=rec.id)
        slog.info("xds.stream.open", peer=rec.peer, envoy=first.node.user_agent_build_version.version.patch)
        error: ProtocolError | None = None
        try:
            with self._source.listen(proxy) as wake:
                async with anyio.create_task_group() as tg:

                    async def read() -> None:
                        nonlocal error
                        try:
                            async for req in requests:
                                self._receive(rec, req, slog)
                                wake.set()
                        except ProtocolError as exc:
                            error = exc
                        tg.cancel_scope.cancel()

                    self._receive(rec, first, slog)
                    tg.start_soon(read)
                    while True:
                        for resp in stream.next_responses(self._source.snapshot(proxy), self._clock()):
                            await context.write(resp)
                            slog.debug(
                                "xds.response.sent",
                                type=short_type(resp.type_url),
                                nonce=resp.nonce,
                                upserts=[r.name for r in resp.resources],
                                removals=list(resp.removed_resources),
                            )
                        await wake.wait()
        except ProtocolError as exc:  # from the first request, applied outside the reader
            error = exc
        finally:
            self.registry.close(rec, self._clock(), str(error) if error else "")
            slog.info("xds.stream.closed", error=str(error) if error else None)
        if error is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"xDS protocol error: {error}")

    def _receive(
        self, rec: StreamRecord, req: discovery_pb2.DeltaDiscoveryRequest, slog: structlog.typing.FilteringBoundLogger
    ) -> None:
        flight = rec.stream.types[req.type_url].in_flight if req.type_url in rec.stream.types else None
        ts, inp = rec.stream.receive(req, self._clock())
        kind = short_type(req.type_url)
        if inp is Input.SUBSCRIBE or inp is Input.UPDATE:
            slog.debug(
                f"xds.{inp.value}",
                type=kind,
                subscribe=list(req.resource_names_subscribe),
                unsubscribe=list(req.resource_names_unsubscribe),
                initial_versions=len(req.initial_resource_versions),
            )
            return
        assert flight is not None
        latency_ms = round((ts.stats.last_ack_latency or 0.0) * 1000, 3)
        if inp is Input.ACK:
            # One INFO line per delivered change: delivery is provable from the logs alone.
            slog.info(
                "xds.delivered",
                type=kind,
                nonce=req.response_nonce,
                upserts=len(flight.upserts),
                removals=len(flight.removals),
                latency_ms=latency_ms,
            )
            return
        nack = ts.stats.last_nack
        slog.warning(
            "xds.nack",
            type=kind,
            nonce=req.response_nonce,
            rejected=list(nack.rejected) if nack else [],
            error=req.error_detail.message,
        )


def register_ads(service: AggregatedDiscoveryService) -> Callable[[grpc.aio.Server], None]:
    """A registrar for `meshgate.transport.grpc_server.serve_grpc`."""
    return lambda server: ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(service, server)
