"""grpc.aio adapter for the global's side of KDS: GlobalToZoneSync and GlobalKDSService.HealthCheck.

The adapter is thin: it maps gRPC calls to the sans-IO `Sender`, reads snapshots from a shared
`SnapshotSource`, and records what happens in the `StreamRegistry`. Per stream, a reader and a writer
share one task group. Statuses a stream ends with:

    INVALID_ARGUMENT     a bad client-id, or a malformed message (meshgate.kds.limits); message bounded
    UNAUTHENTICATED      no valid zone token, at admission or at a later `ZoneAdmission.recheck`
    ALREADY_EXISTS       another instance of the zone holds a stream (meshgate/transport/kds_admission.py)
    PERMISSION_DENIED    the zone is disabled, or the global tracks as many zones as it may
    ABORTED              replaced by a newer stream of the same zone instance
    FAILED_PRECONDITION  a ProtocolError (stale nonce, ...), naming the kind and nonce

Every call is admitted (`ZoneAdmission`) before anything is read from or written to the store for it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol

import anyio
import anyio.abc
import grpc
import structlog
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import duration_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2, kds_pb2_grpc
from meshgate.auth.authenticator import ZoneAuthenticator
from meshgate.delta import Event, PerType, Sent
from meshgate.kds.errors import MalformedMessage
from meshgate.kds.limits import DEFAULT_MAX_BYTES, check_request, clip
from meshgate.kds.node import FEATURE_HASH_SUFFIX, GLOBAL_FEATURES, kds_node
from meshgate.kds.receiver import Plan, Receiver
from meshgate.kds.sender import ProtocolError, Sender
from meshgate.resources.model import ResourceKey
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import Direction, StreamRegistry, StreamSession
from meshgate.transport.kds_admission import Slot, SyncSlots, ZoneAdmission, metadata_features, metadata_value
from meshgate.transport.observer import Observer
from meshgate.transport.stream_loop import run_stream
from meshgate.transport.xds_configs import XDSConfigBroker

__all__ = ["GlobalKDSService", "KDSSyncService", "ZoneGate"]

log = structlog.get_logger(__name__)


def _status(error: ProtocolError) -> grpc.StatusCode:
    malformed = isinstance(error, MalformedMessage)
    return grpc.StatusCode.INVALID_ARGUMENT if malformed else grpc.StatusCode.FAILED_PRECONDITION


def _prefix(error: ProtocolError) -> str:
    return "malformed KDS message" if isinstance(error, MalformedMessage) else "KDS protocol error"


# Called when a zone opens a stream; returns a reason to refuse it (a disabled zone), or None.
ZoneGate = Callable[[str], Awaitable[str | None]]


class ZoneSink(Protocol):
    """Where the global keeps what a zone sends up; see global_cp/zone_sink.py."""

    async def held(self, zone: str, *, hash_suffix: bool) -> dict[str, dict[str, tuple[ResourceKey, str]]]: ...

    def receiver(self, zone: str, *, hash_suffix: bool) -> Receiver: ...

    async def apply(self, zone: str, plan: Plan) -> Plan: ...


class KDSSyncService(kds_pb2_grpc.KDSSyncServiceServicer):  # type: ignore[misc]
    def __init__(
        self,
        source: SnapshotSource,
        registry: StreamRegistry,
        *,
        on_connect: ZoneGate | None = None,
        sink: ZoneSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_bytes: int = DEFAULT_MAX_BYTES,
        authenticator: ZoneAuthenticator | None = None,
        admission: ZoneAdmission | None = None,
        max_concurrent_admissions: int = 0,
    ) -> None:
        """`admission` gates every call (give the global's one, shared with GlobalKDSService); without it,
        one is made from `authenticator` (None: no authentication, for tests of the transport alone).
        `max_concurrent_admissions`: global-to-zone streams in their initial sync at once (0: no limit)."""
        self.admission = admission or ZoneAdmission(registry, authenticator)
        self.slots = SyncSlots(max_concurrent_admissions)
        registry.metrics.admissions_waiting = lambda: self.slots.waiting
        registry.metrics.admissions_in_progress = lambda: self.slots.in_progress
        self._sink = sink
        self._max_bytes = max_bytes
        self._source = source
        self._observer = Observer("kds", registry, served=[d.name for d in source.kinds])
        self._registry = registry
        self._on_connect = on_connect
        self._clock = clock

    async def _admit(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        rpc: str,
        direction: Direction,
        request_iterator: AsyncIterator[object] | None,
    ) -> tuple[str, str, Slot | None]:
        """(zone, zone instance id, its sync slot) of an admitted call, or the call is aborted (see
        kds_admission). A global-to-zone stream waits for a slot once authenticated, before it claims the zone."""
        zone = await self.admission.identify(context, rpc, request_iterator)
        slot = await self.slots.acquire() if direction == "global-to-zone" else None
        try:
            instance = await self.admission.claim(context, zone, direction, request_iterator)
            if self._on_connect is not None:
                refusal = await self._on_connect(zone)
                if refusal:
                    await self.admission.refuse(context, grpc.StatusCode.PERMISSION_DENIED, refusal, request_iterator)
            # on_connect awaited: another instance may have been admitted meanwhile.
            busy = self.admission.busy(zone, instance)
            if busy is not None:
                await self.admission.refuse(context, grpc.StatusCode.ALREADY_EXISTS, busy, request_iterator)
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return zone, instance, slot

    async def _end(
        self,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
        session: StreamSession,
        error: ProtocolError | None,
    ) -> None:
        """Tells the zone why the stream ended, when the global ended it (an error, or `StreamRegistry.end`)."""
        if error is not None:
            self._registry.metrics.protocol_errors[session.zone] += 1
            self._registry.events.publish(session.zone, session.stream_id, session.direction, "error", error=str(error))
            await context.abort(_status(error), f"{_prefix(error)}: {error}")
        if session.ended is not None:
            await context.abort(grpc.StatusCode[session.ended.code], session.ended.message)

    async def GlobalToZoneSync(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        zone, instance, slot = await self._admit(context, "GlobalToZoneSync", "global-to-zone", request_iterator)
        assert slot is not None
        kinds = [d.name for d in self._source.kinds]
        sender = Sender(kinds, max_bytes=self._max_bytes, control_plane_id=self._registry.instance_id)
        session = self._registry.open(
            zone,
            "global-to-zone",
            context.peer(),
            sender=sender,
            zone_instance_id=instance,
            token=metadata_value(context, "authorization"),
            features=metadata_features(context),
        )
        slog = log.bind(zone=zone, stream=session.stream_id)
        slog.info(
            "kds.stream.open",
            peer=session.peer,
            type=",".join(kinds),
            instance=instance,
            features=",".join(session.features),
        )
        error: ProtocolError | None = None
        # What this zone is offered: the global's snapshots without what came from the zone itself.
        views = PerType(partial(self._source.view, zone=zone, hash_suffix=session.hash_suffix))

        observe = self._observer.stream(slog, session)

        def observed(event: Event) -> None:
            observe(event)
            if isinstance(event, Sent):  # observed once written (stream_loop)
                slot.release_when_sent(sender)

        def started(tg: anyio.abc.TaskGroup) -> None:
            session.cancel = tg.cancel_scope
            tg.start_soon(slot.expire)

        try:
            with self._source.listen() as wake:
                error = await run_stream(
                    sender,
                    request_iterator,
                    context.write,
                    lambda: views,
                    wake,
                    observed,
                    self._clock,
                    check=lambda req: check_request(req, kinds),
                    started=started,
                )
        finally:
            slot.release()
            ended = session.ended.message if session.ended else ""
            self._registry.close(session, str(error) if error else ended)
            slog.info("kds.stream.closed", error=str(error) if error else (ended or None))
        await self._end(context, session, error)

    async def ZoneToGlobalSync(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryResponse],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        """The zone opened the call but plays the server: we subscribe, apply, and ACK or NACK.
        Nothing is read from or written to the sink before the call is admitted."""
        if self._sink is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this control plane takes no resources from zones")
        assert self._sink is not None
        zone, instance, _ = await self._admit(context, "ZoneToGlobalSync", "zone-to-global", None)
        # A zone without `hash-suffix` sends names unhashed, which the global prefixes with the zone.
        hash_suffix = FEATURE_HASH_SUFFIX in metadata_features(context)
        receiver = self._sink.receiver(zone, hash_suffix=hash_suffix)
        # Kuma's global names the zone in node.id on this stream, and itself in control-plane-id
        # (pkg/kds/global/components.go: NewDeltaKDSStream(..., zoneID, rt, "", ...)).
        receiver.node = kds_node(zone, control_plane_id=self._registry.instance_id, features=GLOBAL_FEATURES)
        session = self._registry.open(
            zone,
            "zone-to-global",
            context.peer(),
            receiver=receiver,
            zone_instance_id=instance,
            token=metadata_value(context, "authorization"),
            features=metadata_features(context),
        )
        slog = log.bind(zone=zone, stream=session.stream_id)
        error: ProtocolError | None = None
        try:
            with anyio.CancelScope() as scope:
                session.cancel = scope
                for req in receiver.subscribe(await self._sink.held(zone, hash_suffix=hash_suffix)):
                    await context.write(req)
                    self._registry.events.publish(
                        zone, session.stream_id, "zone-to-global", "subscribe", kind=req.type_url
                    )
                async for resp in request_iterator:
                    plan = receiver.receive(resp)
                    if plan.unknown:
                        # A kind the global does not take (a Kuma zone's): ACKed, nothing stored.
                        if receiver.unknown[plan.kind] == 1:
                            slog.info("kds.unknown_kind", type=clip(plan.kind), resources=len(resp.resources))
                        await context.write(receiver.applied(plan))
                        continue
                    # Shielded: a recheck or replacement ends the stream between messages, never halfway
                    # through storing one (the sink and the receiver's `held` would disagree).
                    with anyio.CancelScope(shield=True):
                        plan = await self._sink.apply(zone, plan)
                        ack = receiver.applied(plan)
                    session.last_update = datetime.now(UTC)
                    self._observer.applied(slog, session, plan)
                    await context.write(ack)
        except ProtocolError as exc:
            error = exc
        finally:
            ended = session.ended.message if session.ended else ""
            self._registry.close(session, str(error) if error else ended)
            slog.info("kds.stream.closed", error=str(error) if error else (ended or None))
        await self._end(context, session, error)


class GlobalKDSService(kds_pb2_grpc.GlobalKDSServiceServicer):  # type: ignore[misc]
    """HealthCheck: the zone pings, the global records the time and says how often to ping.
    StreamXDSConfigs: the zone opens it; config-dump requests go down it (see transport/xds_configs.py)."""

    def __init__(
        self,
        registry: StreamRegistry,
        interval: float = 10.0,
        xds_configs: XDSConfigBroker | None = None,
        *,
        authenticator: ZoneAuthenticator | None = None,
        admission: ZoneAdmission | None = None,
    ) -> None:
        self.admission = admission or ZoneAdmission(registry, authenticator)
        self._registry = registry
        self._interval = interval
        self._xds_configs = xds_configs

    async def StreamXDSConfigs(
        self,
        request_iterator: AsyncIterator[kds_pb2.XDSConfigResponse],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        """The zone opens it; the global writes config-dump requests and reads the answers (XDSConfigBroker)."""
        zone = await self.admission.identify(context, "StreamXDSConfigs")
        if self._xds_configs is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "config dumps are not served by this global")
        assert self._xds_configs is not None
        # Only the instance holding the zone's sync streams may answer for its proxies.
        busy = self.admission.busy(zone, clip(metadata_value(context, "zone-instance-id")))
        if busy is not None:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, busy)
        await self._xds_configs.serve(zone, request_iterator, context.write)

    async def HealthCheck(
        self,
        request: kds_pb2.ZoneHealthCheckRequest,
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> kds_pb2.ZoneHealthCheckResponse:
        zone = await self.admission.identify(context, "HealthCheck")
        # A zone pings as its streams open, often before they are admitted, so its first ping is kept too; but
        # pings must not grow the registry without bound: untracked zones only while there is room.
        checks = self._registry.last_health_check
        tracked = zone in checks or zone in self._registry.history or self._registry.by_zone(zone)
        if tracked or len(checks) < self._registry.max_zones:
            checks[zone] = datetime.now(UTC)
        interval = duration_pb2.Duration()
        interval.FromTimedelta(timedelta(seconds=self._interval))
        return kds_pb2.ZoneHealthCheckResponse(interval=interval)
