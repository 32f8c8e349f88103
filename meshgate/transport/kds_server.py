"""grpc.aio adapter for the global's side of KDS: GlobalToZoneSync and GlobalKDSService.HealthCheck.

The adapter is thin: it maps gRPC calls to the sans-IO `Sender`, reads snapshots from a shared
`SnapshotSource`, and records what happens in a `StreamRegistry`. Per stream, a reader and a writer
share one task group; a ProtocolError closes the stream with FAILED_PRECONDITION and a message that
names the kind and nonce, rather than leaving it silently stuck.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import anyio
import grpc
import structlog
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import duration_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2, kds_pb2_grpc
from meshgate.kds.delta import DEFAULT_MAX_BYTES
from meshgate.kds.sender import Input, ProtocolError, Sender
from meshgate.observability.metrics import KDSMetrics
from meshgate.transport.snapshots import SnapshotSource

__all__ = ["GlobalKDSService", "KDSSyncService", "StreamRegistry", "StreamSession", "zone_of"]

log = structlog.get_logger("meshgate.kds.server")

_stream_ids = itertools.count(1)


def zone_of(context: grpc.aio.ServicerContext) -> str:  # type: ignore[type-arg]
    for key, value in context.invocation_metadata() or ():
        if key == "client-id" and value:
            return str(value)
    return ""


@dataclass(slots=True)
class StreamSession:
    zone: str
    stream_id: str
    direction: str
    peer: str
    sender: Sender
    connected_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    disconnected_at: datetime | None = None
    warnings: list[str] = field(default_factory=list)


class StreamRegistry:
    """The live streams of this process, for insights, metrics and the stall watchdog."""

    def __init__(self, metrics: KDSMetrics) -> None:
        self.active: dict[str, StreamSession] = {}
        self.last_health_check: dict[str, datetime] = {}
        self.metrics = metrics
        metrics.streams_active = lambda: len(self.active)

    def by_zone(self, zone: str) -> list[StreamSession]:
        return [s for s in self.active.values() if s.zone == zone]


OnZone = Callable[[str], Awaitable[None]]


class KDSSyncService(kds_pb2_grpc.KDSSyncServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        source: SnapshotSource,
        registry: StreamRegistry,
        *,
        on_connect: OnZone | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._max_bytes = max_bytes
        self._source = source
        self._registry = registry
        self._on_connect = on_connect
        self._clock = clock

    async def GlobalToZoneSync(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        zone = zone_of(context)
        if not zone:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "missing client-id metadata (the zone name)")
        stream_id = f"{zone}-{next(_stream_ids)}"
        kinds = [d.name for d in self._source.kinds]
        sender = Sender(kinds, max_bytes=self._max_bytes)
        session = StreamSession(zone, stream_id, "global-to-zone", context.peer(), sender)
        slog = log.bind(zone=zone, stream=stream_id)
        if self._on_connect is not None:
            await self._on_connect(zone)
        self._registry.active[stream_id] = session
        slog.info("kds.stream.open", peer=session.peer, type=",".join(kinds))
        error: ProtocolError | None = None
        try:
            with self._source.listen() as wake:
                async with anyio.create_task_group() as tg:

                    async def read() -> None:
                        nonlocal error
                        try:
                            async for req in request_iterator:
                                _ks, inp = session.sender.receive(req, self._clock())
                                self._record(session, req, inp, slog)
                                wake.set()
                        except ProtocolError as exc:
                            error = exc
                        tg.cancel_scope.cancel()

                    tg.start_soon(read)
                    while True:
                        await self._send_pending(session, context, slog)
                        await wake.wait()
        finally:
            session.disconnected_at = datetime.now(UTC)
            self._registry.active.pop(stream_id, None)
            slog.info("kds.stream.closed", error=str(error) if error else None)
        if error is not None:
            self._registry.metrics.protocol_errors[zone] += 1
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"KDS protocol error: {error}")

    async def _send_pending(
        self,
        session: StreamSession,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        slog: structlog.typing.FilteringBoundLogger,
    ) -> None:
        """Sends, in kind order (Mesh first), every response the sender has ready."""
        for kind, ks in session.sender.kinds.items():
            snapshot = self._source.snapshots[kind]
            oversized_before = len(ks.oversized)
            resp = session.sender.next_response(snapshot, self._clock())
            if len(ks.oversized) > oversized_before:
                for name, version in ks.oversized.items():
                    entry = snapshot.entries.get(name)
                    if entry is not None and entry.version == version:
                        slog.error(
                            "kds.resource.oversized",
                            type=kind,
                            name=name,
                            bytes=entry.size,
                            limit=session.sender.max_bytes,
                        )
                        session.warnings.append(f"{kind} {name} is {entry.size} bytes: too big for one message")
            if resp is None:
                continue
            await context.write(resp)
            self._registry.metrics.responses_sent[kind] += 1
            slog.debug(
                "kds.response.sent",
                type=kind,
                nonce=resp.nonce,
                upserts=len(resp.resources),
                removals=len(resp.removed_resources),
            )

    def _record(
        self,
        session: StreamSession,
        req: discovery_pb2.DeltaDiscoveryRequest,
        inp: Input,
        slog: structlog.typing.FilteringBoundLogger,
    ) -> None:
        kind = req.type_url
        if inp is Input.SUBSCRIBE:
            slog.info("kds.subscribe", type=kind, initial_versions=len(req.initial_resource_versions))
            return
        confirmation = "ACK" if inp is Input.ACK else "NACK"
        self._registry.metrics.requests_received[(kind, confirmation)] += 1
        if inp is Input.NACK:
            slog.warning("kds.nack", type=kind, nonce=req.response_nonce, error=req.error_detail.message)
        else:
            slog.debug("kds.ack", type=kind, nonce=req.response_nonce)


class GlobalKDSService(kds_pb2_grpc.GlobalKDSServiceServicer):  # type: ignore[misc]
    """HealthCheck: the zone pings, the global records the time and says how often to ping."""

    def __init__(self, registry: StreamRegistry, interval: float = 10.0) -> None:
        self._registry = registry
        self._interval = interval

    async def HealthCheck(
        self,
        request: kds_pb2.ZoneHealthCheckRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> kds_pb2.ZoneHealthCheckResponse:
        zone = zone_of(context)
        if zone:
            self._registry.last_health_check[zone] = datetime.now(UTC)
        interval = duration_pb2.Duration()
        interval.FromTimedelta(timedelta(seconds=self._interval))
        return kds_pb2.ZoneHealthCheckResponse(interval=interval)
