"""grpc.aio adapter for Envoy's delta ADS: `AggregatedDiscoveryService.DeltaAggregatedResources`.

Thin, like the KDS server: it maps the call to the sans-IO `AdsStream`, reads the proxy's snapshot from an
`XdsSnapshotSource`, and records the stream in a `ProxyRegistry`. The proxy is named by the first request's
`node.id`, `<mesh>.<dataplane name>` as Kuma does. Per stream, a reader and a writer share one task group.

Errors at the boundary:

    missing or malformed node.id           -> INVALID_ARGUMENT
    StreamRefused from the gate            -> its status (UNAUTHENTICATED: no, bad, revoked or expired token)
                                              and reason, at open or whenever the gate's session ends
    ProtocolError (stale nonce, ...)       -> FAILED_PRECONDITION naming the type and nonce
    StreamAggregatedResources (SotW)       -> UNIMPLEMENTED: meshgate serves delta xDS only

The stream itself runs the delta engine's one loop (meshgate.transport.stream_loop), and its events become
log lines through the process's `Observer` (meshgate.transport.observer), as KDS streams do.

A snapshot source plugs in through the `XdsSnapshotSource` protocol: `snapshot(proxy)` returns the current
`Snapshot` (None while the proxy is unknown: nothing is sent and Envoy waits), and `listen(proxy)` yields a
`Wakeup` that the source sets whenever that proxy's snapshot may have changed. The writer re-reads the
snapshot on every wake, so bursts of changes coalesce into one delta. `SnapshotStore` is a ready-made source.

An optional `StreamGate` (the zone's data plane authentication, `zone_cp/dp_server.py`) admits each stream
before anything is sent: `open` gets the proxy, its first request's node (with its metadata) and the call's
gRPC metadata, and returns a `GatedSession` whose `watch()` returns a refusal when the stream must end
(a token revoked or expired) and whose `close()` runs, shielded, when the stream ends. Without a gate every
stream is served (adapter tests, and a zone run with `--dp-server-authn none`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

import anyio
import anyio.abc
import grpc
import structlog
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2, ads_pb2_grpc, discovery_pb2
from google.protobuf.message import Message

from meshgate.concurrency import Wakeup
from meshgate.observability.metrics import XdsMetrics
from meshgate.transport.observer import Observer
from meshgate.transport.stream_loop import run_stream
from meshgate.xds.ads import AdsStream, ProtocolError, ProxyId, short_type
from meshgate.xds.ads_registry import ProxyRegistry
from meshgate.xds.snapshot import Snapshot

__all__ = [
    "ADS_SERVICE_NAME",
    "AggregatedDiscoveryService",
    "GatedSession",
    "SnapshotStore",
    "StreamGate",
    "StreamRefused",
    "XdsSnapshotSource",
    "register_ads",
]

log = structlog.get_logger(__name__)

ADS_SERVICE_NAME: str = ads_pb2.DESCRIPTOR.services_by_name["AggregatedDiscoveryService"].full_name


class XdsSnapshotSource(Protocol):
    def snapshot(self, proxy: ProxyId) -> Snapshot | None: ...

    def listen(self, proxy: ProxyId) -> AbstractContextManager[Wakeup]: ...


class StreamRefused(Exception):
    """A gate's verdict: end (or never start) the stream with `status` and this message. `reason` is a short
    bounded code for logs and metrics (missing_token, bad_signature, revoked, wrong_identity, ...)."""

    def __init__(self, reason: str, message: str, status: grpc.StatusCode = grpc.StatusCode.UNAUTHENTICATED) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status


class GatedSession(Protocol):
    async def watch(self) -> StreamRefused:
        """Returns when the stream must end, with why; never returns while the proxy stays admitted."""
        ...

    async def close(self) -> None: ...


class StreamGate(Protocol):
    async def open(
        self, proxy: ProxyId, node: base_pb2.Node, metadata: Sequence[tuple[str, str | bytes]], peer: str
    ) -> GatedSession:
        """Admits the stream or raises StreamRefused."""
        ...


class SnapshotStore:
    """An `XdsSnapshotSource` holding one snapshot per proxy, set from outside (tests, a generator loop)."""

    def __init__(self) -> None:
        self._snapshots: dict[ProxyId, Snapshot] = {}
        self._listeners: dict[ProxyId, set[Wakeup]] = {}

    def snapshot(self, proxy: ProxyId) -> Snapshot | None:
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

    def set(self, proxy: ProxyId, snapshot: Snapshot | Mapping[str, Mapping[str, Message]]) -> Snapshot:
        """Accepts the generator's `Snapshot`, or type URL -> {name: message}."""
        prepared = snapshot if isinstance(snapshot, Snapshot) else Snapshot.of(snapshot)
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
        gate: StreamGate | None = None,
        metrics: XdsMetrics | None = None,
    ) -> None:
        """`metrics`: the process's xDS counters (each stream's events counted for its proxy), none by default."""
        # Wall-clock time: the read API shows when a NACK happened; latencies are differences of it.
        self._source = source
        self.registry = registry
        self._clock = clock
        self._gate = gate
        self.metrics = metrics if metrics is not None else XdsMetrics()
        self.metrics.streams_active = lambda: sum(len(r.active) for r in registry.proxies.values())
        self._observer = Observer("xds", label=short_type, xds_metrics=self.metrics)

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
        session: GatedSession | None = None
        if self._gate is not None:
            try:
                metadata = tuple(context.invocation_metadata() or ())
                session = await self._gate.open(proxy, first.node, metadata, context.peer())
            except StreamRefused as exc:
                await context.abort(exc.status, str(exc))
                raise  # abort raises; this line is for the type checker
        try:
            await self._serve(proxy, first, requests, context, session)
        finally:
            if session is not None:
                with anyio.CancelScope(shield=True):
                    await session.close()

    async def _serve(
        self,
        proxy: ProxyId,
        first: discovery_pb2.DeltaDiscoveryRequest,
        requests: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        session: GatedSession | None,
    ) -> None:
        stream = AdsStream(proxy)
        rec = self.registry.open(stream, context.peer(), self._clock())
        slog = log.bind(proxy=str(proxy), stream=rec.id)
        slog.info("xds.stream.open", peer=rec.peer, envoy=first.node.user_agent_build_version.version.patch)
        error: ProtocolError | None = None
        refused: StreamRefused | None = None

        def started(tg: anyio.abc.TaskGroup) -> None:
            async def watch(gated: GatedSession) -> None:
                nonlocal refused
                refused = await gated.watch()
                tg.cancel_scope.cancel()

            if session is not None:
                tg.start_soon(watch, session)

        try:
            with self._source.listen(proxy) as wake:
                error = await run_stream(
                    stream,
                    requests,
                    context.write,
                    lambda: self._source.snapshot(proxy),
                    wake,
                    self._observer.stream(slog, proxy=(proxy.mesh, proxy.name)),
                    self._clock,
                    first=(first,),
                    started=started,
                )
        finally:
            problem = error or refused
            self.registry.close(rec, self._clock(), str(problem) if problem else "")
            slog.info("xds.stream.closed", error=str(problem) if problem else None)
        if refused is not None:
            await context.abort(refused.status, str(refused))
        if error is not None:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"xDS protocol error: {error}")


def register_ads(service: AggregatedDiscoveryService) -> Callable[[grpc.aio.Server], None]:
    """A registrar for `meshgate.transport.grpc_server.serve_grpc`."""
    return lambda server: ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(service, server)
