"""Who may open a KDS call on the global, as whom, and for how long: the gate every KDS RPC passes first.

In order, each step refusing the call with a gRPC status and a bounded message (nothing a client sent is
repeated beyond `meshgate.kds.limits.ECHO_LIMIT` characters):

1. `client-id` must be a zone name the REST API accepts for a Zone (the Zone kind's own validator), so every
   zone the global records can be read, disabled and deleted through the API: INVALID_ARGUMENT.
2. With a `ZoneAuthenticator` (`--kds-auth cp-token`, the default), the zone token in `authorization` must
   prove that name: UNAUTHENTICATED, a WARN line and a count in `meshgate_kds_auth_failures`.
3. For the sync streams (`claim`): one zone instance at a time. While any instance of a zone holds a stream
   open on this global or on another replica (`StreamRegistry.holder`, fed by global_cp/replicas.py), another
   instance is refused with ALREADY_EXISTS; the same instance (metadata `zone-instance-id`) reconnecting
   replaces its own old stream of that direction. So a stolen name cannot replace a connected zone's state.

Between steps 2 and 3, a global-to-zone stream waits for one of `SyncSlots` (`--kds-max-concurrent-admissions`):
at most that many zones run their initial sync or resume at once, the rest wait their turn in arrival order
(their call stays open; health checks are not gated). A slot is given back once the stream's first response of
every kind is written (building and writing those is the global's share of a sync: a zone's own pace to apply
and ACK them must not hold the door), when the stream ends, or after `SLOT_HOLD_MAX` seconds at most. So after
a global restart the reconnect storm is let in at the rate the global can serve it, and zones already in sync
keep getting their changes meanwhile.

Only then does a stream touch the sink or the zone records. While it stays open, `recheck` (every
`interval`, and on demand) asks the authenticator again about the token it was admitted with, and ends a
stream whose token no longer passes (expired since, or revoked) with UNAUTHENTICATED and the reason.

The standard health and reflection services are other servicers and stay open.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any, NoReturn

import anyio
import grpc
import structlog

from meshgate.auth.authenticator import ZoneAuthenticator
from meshgate.delta import DeltaStream
from meshgate.kds.limits import clip
from meshgate.kds.node import FEATURES_KEY, parse_features
from meshgate.resources import registry as kinds
from meshgate.resources.model import Meta, Resource
from meshgate.sync.streams import Direction, StreamRegistry, StreamSession

__all__ = [
    "INSTANCE_METADATA",
    "SLOT_HOLD_MAX",
    "Slot",
    "SyncSlots",
    "ZoneAdmission",
    "client_id_problem",
    "count_auth_failure",
    "metadata_features",
    "metadata_value",
    "zone_of",
]

log = structlog.get_logger(__name__)

# The metadata a meshgate zone sends with its instance id (Kuma puts it in node.metadata, on the first request
# only; metadata is there before any message, which admission needs).
INSTANCE_METADATA = "zone-instance-id"

# Before refusing a stream, how long to take in what the zone is already sending: the first message may come
# after the zone has read its store, the rest of its burst (one subscribe per kind) comes back to back.
_DRAIN_FIRST = 2.0
_DRAIN_IDLE = 0.1
# ...and at most this many messages, so a refused peer cannot keep us reading.
_DRAIN_MAX_MESSAGES = 64
# Distinct claimed zones counted by name in meshgate_kds_auth_failures; later ones count as zone="other".
_MAX_ZONE_LABELS = 64

Context = grpc.aio.ServicerContext[Any, Any]


def metadata_value(context: Context, key: str) -> str:
    for k, value in context.invocation_metadata() or ():
        if k == key and value:
            return str(value)
    return ""


# Features kept from a call's metadata (Kuma 2.7 knows three), each clipped: the zone writes them.
_MAX_FEATURES = 16


def metadata_features(context: Context) -> tuple[str, ...]:
    """The features a zone advertises in its call's metadata: one per `features` value, as Kuma's zones send
    them (pkg/kds/mux/client.go, matched exactly by pkg/kds/features.go), or comma-joined, as meshgate zones
    did before. Bounded in number and length."""
    values = [str(v) for k, v in context.invocation_metadata() or () if k == FEATURES_KEY]
    return tuple(clip(f) for f in parse_features(values)[:_MAX_FEATURES])


def zone_of(context: Context) -> str:
    return metadata_value(context, "client-id")


def client_id_problem(zone: str) -> str | None:
    """Why `zone` cannot be a zone's name (the REST API's rules for a Zone's name), or None."""
    if not zone:
        return "missing client-id metadata (the zone name)"
    spec = kinds.get("Zone").spec_type()
    violations = kinds.get("Zone").validate(Resource("Zone", Meta(name=zone), spec))
    if not violations:
        return None
    why = "; ".join(v.message for v in violations if v.field == "name") or str(violations[0])
    return f"client-id {clip(zone)!r} is not a valid zone name (the Zone name rules of the API): {clip(why, 200)}"


async def _drain(request_iterator: AsyncIterator[object]) -> None:
    """Reads and drops what the client sent before we refuse it. A grpc client whose write is still pending
    when the call ends reports INTERNAL "Internal error from Core" instead of our status (its core drops the
    trailers), so without this the zone would never learn why it was refused."""
    with anyio.move_on_after(_DRAIN_FIRST):
        for i in range(_DRAIN_MAX_MESSAGES):
            with anyio.move_on_after(_DRAIN_IDLE if i else _DRAIN_FIRST) as idle:
                try:
                    await anext(request_iterator)
                except StopAsyncIteration:
                    return
            if idle.cancelled_caught:
                return


def count_auth_failure(failures: Counter[tuple[str, str]], zone: str, code: str) -> None:
    """Counts a refusal by (claimed zone, reason). The zone is unauthenticated, so it must not mint label values
    at will: past `_MAX_ZONE_LABELS` distinct zones, new ones count as zone "other"."""
    zones = {z for z, _ in failures}
    key = (zone, code) if zone in zones or len(zones) < _MAX_ZONE_LABELS else ("other", code)
    failures[key] += 1


class ZoneAdmission:
    def __init__(self, registry: StreamRegistry, authenticator: ZoneAuthenticator | None = None) -> None:
        self._registry = registry
        self.authenticator = authenticator

    async def refuse(
        self,
        context: Context,
        code: grpc.StatusCode,
        message: str,
        request_iterator: AsyncIterator[object] | None,
    ) -> NoReturn:
        """Aborts the call with `code` and `message`, after draining `request_iterator` (see `_drain`)."""
        if request_iterator is not None:
            await _drain(request_iterator)
        await context.abort(code, message)
        raise AssertionError("context.abort returned")  # pragma: no cover (abort always raises)

    async def identify(self, context: Context, rpc: str, request_iterator: AsyncIterator[object] | None = None) -> str:
        """The call's zone, once its `client-id` is a valid zone name that its token proves (steps 1 and 2).
        Give the `request_iterator` of a stream the zone writes to unprompted, so a refusal reaches it intact."""
        zone = zone_of(context)
        problem = client_id_problem(zone)
        if problem is not None:
            log.warning("kds.client_id.refused", rpc=rpc, error=problem, peer=context.peer())
            await self.refuse(context, grpc.StatusCode.INVALID_ARGUMENT, problem, request_iterator)
        if self.authenticator is None:
            return zone
        failure = self.authenticator.check(zone, metadata_value(context, "authorization"))
        if failure is None:
            return zone
        count_auth_failure(self._registry.metrics.auth_failures, zone, failure.code)
        log.warning(
            "kds.auth.refused", zone=zone, rpc=rpc, reason=failure.code, error=failure.message, peer=context.peer()
        )
        await self.refuse(context, grpc.StatusCode.UNAUTHENTICATED, failure.message, request_iterator)

    def busy(self, zone: str, instance: str) -> str | None:
        """Why `instance` of `zone` may not open a stream now (another instance holds one), or None."""
        holder = self._registry.holder(zone)
        if holder is None or holder[0] == instance:
            return None
        other, where = holder
        return (
            f"zone {zone!r} already has a KDS stream from instance {clip(other, 64)!r} on {where}; a zone syncs"
            f" from one instance at a time: stop the other instance (it may be a stolen name), or wait for its"
            f" stream to close"
        )

    async def claim(
        self,
        context: Context,
        zone: str,
        direction: Direction,
        request_iterator: AsyncIterator[object] | None = None,
    ) -> str:
        """Step 3: the caller's zone instance id once no other instance of `zone` holds a stream; ends this
        instance's older stream of `direction` (a reconnect whose old stream the global has not noticed closing)."""
        instance = clip(metadata_value(context, INSTANCE_METADATA))
        refusal = self.busy(zone, instance)
        if refusal is not None:
            log.warning("kds.stream.refused_busy", zone=zone, type=direction, instance=instance, peer=context.peer())
            await self.refuse(context, grpc.StatusCode.ALREADY_EXISTS, refusal, request_iterator)
        for old in self._registry.by_zone(zone):
            if old.direction == direction:
                log.info("kds.stream.replaced", zone=zone, stream=old.stream_id, type=direction, instance=instance)
                self._registry.end(old, "ABORTED", "replaced by a newer stream from the same zone instance")
        return instance

    def recheck(self) -> list[StreamSession]:
        """Asks the authenticator again about every open stream's token; ends (UNAUTHENTICATED) and returns
        those that no longer pass. A no-op without authentication."""
        if self.authenticator is None:
            return []
        ended = []
        for session in list(self._registry.active.values()):
            if session.ended is not None:
                continue
            failure = self.authenticator.check(session.zone, session.token)
            if failure is None:
                continue
            count_auth_failure(self._registry.metrics.auth_failures, session.zone, failure.code)
            log.warning(
                "kds.auth.recheck_failed",
                zone=session.zone,
                stream=session.stream_id,
                type=session.direction,
                reason=failure.code,
                error=failure.message,
            )
            self._registry.end(session, "UNAUTHENTICATED", f"zone token no longer valid: {failure.message}")
            ended.append(session)
        return ended

    async def run(
        self, interval: float, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Re-checks every `interval` seconds: a token expires, or is revoked, while its stream stays open."""
        task_status.started()
        while True:
            await anyio.sleep(interval)
            self.recheck()


# Seconds a stream may hold an admission slot at most: writing a full sync of 10k routes to one zone takes well
# under a second on a quiet global, so this only ends the hold of a zone that stopped reading (gRPC flow control
# then blocks the write).
SLOT_HOLD_MAX = 30.0


class Slot:
    """One admitted stream's hold on a `SyncSlots` place; `release` is idempotent."""

    def __init__(self, slots: SyncSlots) -> None:
        self._slots = slots
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._slots.in_progress -= 1
            if self._slots.semaphore is not None:
                self._slots.semaphore.release()

    def release_when_sent(self, stream: DeltaStream) -> None:
        """Gives the slot back once every kind's first response was written: call it after each write."""
        if not self.released and all(ts.first_sent for ts in stream.types.values()):
            self.release()

    async def expire(self, after: float = SLOT_HOLD_MAX) -> None:
        await anyio.sleep(after)
        self.release()


class SyncSlots:
    """At most `limit` global-to-zone streams in their initial sync or resume at once (0: no limit); the
    others wait in arrival order (anyio's Semaphore is FIFO)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.semaphore = anyio.Semaphore(limit) if limit > 0 else None
        self.waiting = 0
        self.in_progress = 0

    async def acquire(self) -> Slot:
        if self.semaphore is not None:
            self.waiting += 1
            try:
                await self.semaphore.acquire()
            finally:
                self.waiting -= 1
        self.in_progress += 1
        return Slot(self)
