"""The KDS streams of one control-plane process: who is connected, what crossed, and a live event feed.

Every KDS adapter registers its streams here and publishes a `KDSEvent` for each thing that crosses
(connect, subscribe, response, ACK, NACK, stall, error, disconnect). Insights, `kds watch`, `kds trace`,
the stall watchdog and the metrics all read from this one place, so they never disagree.

What it keeps is bounded, because zones choose their names and what they send: a closed stream keeps its
counters only (its Sender or Receiver `forget`s per-resource state), at most `ZoneHistory.closed`'s few
closed streams per zone, and the history of at most `max_zones` zones (the oldest inactive ones go first).
Only admitted zones get here at all (meshgate/transport/kds_admission.py).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from meshgate.kds.node import FEATURE_HASH_SUFFIX
from meshgate.kds.receiver import Receiver
from meshgate.kds.sender import Sender
from meshgate.observability.metrics import KDSMetrics

__all__ = [
    "Direction",
    "EventBus",
    "KDSEvent",
    "RemoteZone",
    "StreamEnd",
    "StreamRegistry",
    "StreamSession",
    "ZoneHistory",
]

Direction = Literal["global-to-zone", "zone-to-global"]
EventType = Literal[
    "connect", "disconnect", "subscribe", "response", "ack", "nack", "stall", "error", "oversized", "health"
]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class KDSEvent:
    seq: int
    at: datetime
    zone: str
    stream: str
    direction: Direction
    event: EventType
    kind: str = ""
    nonce: str = ""
    upserts: tuple[tuple[str, str], ...] = ()  # (wire name, version)
    removals: tuple[str, ...] = ()
    latency_ms: float | None = None
    error: str = ""
    rejected: tuple[tuple[str, str], ...] = ()  # (wire name, reason)
    # Names left out of upserts, removals and rejected (EventBus.EVENT_NAMES each at most).
    more: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "seq": self.seq,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "zone": self.zone,
            "stream": self.stream,
            "direction": self.direction,
            "event": self.event,
        }
        for key, value in (
            ("kind", self.kind),
            ("nonce", self.nonce),
            ("upserts", [{"name": n, "version": v} for n, v in self.upserts]),
            ("removals", list(self.removals)),
            ("latencyMs", self.latency_ms),
            ("error", self.error),
            ("rejected", [{"name": n, "reason": r} for n, r in self.rejected]),
            ("more", self.more or None),
        ):
            if value is not None and value != "" and value != []:
                out[key] = value
        return out


class EventBus:
    """Fan-out of KDSEvents to live watchers, with a short history for late joiners.

    A watcher's queue is bounded (WATCHER_BUFFER): a slow `kds watch` client must never slow a KDS
    stream, so when its queue is full the event is dropped for that watcher and counted.
    """

    WATCHER_BUFFER = 1000
    HISTORY = 500
    # Names an event keeps per list. An event is a debugging aid, and the history holds HISTORY of them: a
    # response that removes every one of 30,000 names a zone offered must not keep 30,000 names in memory
    # (500 such events were hundreds of MB, never released). The count of what was left out is kept.
    EVENT_NAMES = 100

    def __init__(self) -> None:
        self._seq = itertools.count(1)
        self._watchers: dict[MemoryObjectSendStream[KDSEvent], list[int]] = {}
        self.history: deque[KDSEvent] = deque(maxlen=self.HISTORY)

    @property
    def watching(self) -> bool:
        return bool(self._watchers)

    def publish(self, zone: str, stream: str, direction: Direction, event: EventType, **fields: Any) -> KDSEvent:
        more = 0
        for key in ("upserts", "removals", "rejected"):
            names = fields.get(key)
            if names is not None and len(names) > self.EVENT_NAMES:
                more += len(names) - self.EVENT_NAMES
                fields[key] = tuple(names[: self.EVENT_NAMES])
        ev = KDSEvent(next(self._seq), _now(), zone, stream, direction, event, more=more, **fields)
        self.history.append(ev)
        for send, dropped in self._watchers.items():
            try:
                send.send_nowait(ev)
            except anyio.WouldBlock:
                dropped[0] += 1
        return ev

    @contextmanager
    def watch(self) -> Iterator[tuple[MemoryObjectReceiveStream[KDSEvent], list[int]]]:
        """Yields (events, dropped counter as a one-item list)."""
        send, receive = anyio.create_memory_object_stream[KDSEvent](self.WATCHER_BUFFER)
        dropped = [0]
        self._watchers[send] = dropped
        try:
            yield receive, dropped
        finally:
            del self._watchers[send]
            send.close()
            receive.close()


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The global's reason to end an open stream: a gRPC status code's name and a message for the zone."""

    code: str  # a grpc.StatusCode name: UNAUTHENTICATED, ALREADY_EXISTS, ...
    message: str


@dataclass(slots=True)
class StreamSession:
    zone: str
    stream_id: str
    direction: Direction
    peer: str
    # Global-to-zone on the global holds a Sender; zone-to-global on the global holds a Receiver.
    sender: Sender | None = None
    receiver: Receiver | None = None
    zone_instance_id: str = ""
    global_instance_id: str = ""
    connected_at: datetime = field(default_factory=_now)
    disconnected_at: datetime | None = None
    last_update: datetime | None = None
    warnings: list[str] = field(default_factory=list)
    # Cancels the stream's task group: used to cut a disabled zone off. Set by the adapter.
    cancel: anyio.CancelScope | None = None
    # The `authorization` metadata the stream was admitted with, re-checked while it is open (dropped on close).
    token: str = field(default="", repr=False)
    # Why the global ended the stream (`StreamRegistry.end`), so the adapter can tell the zone.
    ended: StreamEnd | None = None
    # The features the zone advertised in the call's metadata (meshgate.kds.node), e.g. "zone-ping-health".
    features: tuple[str, ...] = ()

    @property
    def hash_suffix(self) -> bool:
        """Whether the zone takes hash-suffixed names (meshgate.kds.ownership): every Kuma 2.7 and meshgate
        zone does; an older zone gets names as stored."""
        return FEATURE_HASH_SUFFIX in self.features

    def warn(self, message: str) -> None:
        """Adds a warning once (the watchdog re-checks every few seconds)."""
        if message not in self.warnings:
            self.warnings.append(message)


@dataclass(slots=True)
class ZoneHistory:
    """What a zone's past streams left behind, kept after they close (bounded)."""

    first_connected: datetime | None = None
    last_connected: datetime | None = None
    last_disconnected: datetime | None = None
    closed: deque[StreamSession] = field(default_factory=lambda: deque(maxlen=5))


@dataclass(slots=True)
class RemoteZone:
    """A zone's streams as other global replicas report them (see global_cp/replicas.py)."""

    subscriptions: list[dict[str, Any]] = field(default_factory=list)
    streaming: bool = False  # some replica streams global-to-zone to it
    health_last_seen: datetime | None = None
    replicas: set[str] = field(default_factory=set)
    # replica instance id -> its API URL, so one replica can ask another (kds trace).
    api_urls: dict[str, str] = field(default_factory=dict)


class StreamRegistry:
    """The live streams of this process, for insights, metrics, `kds watch`/`trace` and the watchdog."""

    # Zones whose history is kept by default; the global passes its --kds-max-zones.
    MAX_ZONES = 1000

    def __init__(self, metrics: KDSMetrics, instance_id: str = "", *, max_zones: int = MAX_ZONES) -> None:
        self.instance_id = instance_id
        self.max_zones = max_zones
        self.active: dict[str, StreamSession] = {}
        self.history: dict[str, ZoneHistory] = {}
        self.last_health_check: dict[str, datetime] = {}
        self.metrics = metrics
        self.events = EventBus()
        # Zones whose streams other replicas hold, refreshed by global_cp.replicas (empty on one replica).
        self.remote: dict[str, RemoteZone] = {}
        # Whether this replica runs the singleton work (always true on one replica); set by the app.
        self.leader: Callable[[], bool] = lambda: True
        self._ids = itertools.count(1)
        metrics.streams_active = lambda: len(self.active)

    def open(self, zone: str, direction: Direction, peer: str, **fields: Any) -> StreamSession:
        stream_id = f"{zone}:{direction}:{next(self._ids)}"
        session = StreamSession(zone, stream_id, direction, peer, global_instance_id=self.instance_id, **fields)
        self.active[stream_id] = session
        hist = self.history.setdefault(zone, ZoneHistory())
        hist.first_connected = hist.first_connected or session.connected_at
        hist.last_connected = session.connected_at
        self._evict()
        self.events.publish(zone, stream_id, direction, "connect", error=peer and f"peer {peer}")
        return session

    def close(self, session: StreamSession, error: str = "") -> None:
        session.disconnected_at = _now()
        self.active.pop(session.stream_id, None)
        # Counters only from here on: a closed stream must not hold what its peer sent (see the docstring).
        session.token = ""
        if session.sender is not None:
            session.sender.forget()
        if session.receiver is not None:
            session.receiver.forget()
        hist = self.history.pop(session.zone, None) or ZoneHistory()
        self.history[session.zone] = hist  # re-inserted: the dict's order is least recently closed first
        hist.last_disconnected = session.disconnected_at
        hist.closed.append(session)
        self._evict()
        self.events.publish(session.zone, session.stream_id, session.direction, "disconnect", error=error)

    def _evict(self) -> None:
        """Forgets the zones that closed longest ago while more than `max_zones` have a history, and health
        checks of zones that never had a stream once there are as many."""
        busy = {s.zone for s in self.active.values()}
        if len(self.last_health_check) >= self.max_zones:
            for zone in [z for z in self.last_health_check if z not in self.history and z not in busy]:
                del self.last_health_check[zone]
        if len(self.history) <= self.max_zones:
            return
        for zone in [z for z in self.history if z not in busy][: len(self.history) - self.max_zones]:
            del self.history[zone]
            self.last_health_check.pop(zone, None)

    def end(self, session: StreamSession, code: str, message: str) -> None:
        """Ends an open stream from outside it (token no longer valid, replaced): the adapter tells the zone
        `code` and `message` once its task group is cancelled."""
        session.ended = StreamEnd(code, message)
        if session.cancel is not None:
            session.cancel.cancel()

    def holder(self, zone: str) -> tuple[str, str] | None:
        """(zone instance id, where) of whichever instance of `zone` holds a stream open on any replica, or
        None. `where` is "this global" or "global replica <id>"."""
        for s in self.active.values():
            if s.zone == zone:
                return s.zone_instance_id, "this global"
        remote = self.remote.get(zone)
        for sub in remote.subscriptions if remote is not None else ():
            if not sub.get("disconnectTime"):
                return str(sub.get("zoneInstanceId", "")), f"global replica {sub.get('globalInstanceId', '?')}"
        return None

    def by_zone(self, zone: str) -> list[StreamSession]:
        return [s for s in self.active.values() if s.zone == zone]

    def zones(self) -> set[str]:
        return {s.zone for s in self.active.values()} | set(self.history) | set(self.remote)

    def streaming(self, zone: str) -> bool:
        """Whether any replica (this one or another) has a global-to-zone stream open to `zone`."""
        local = any(s.direction == "global-to-zone" for s in self.by_zone(zone))
        return local or (zone in self.remote and self.remote[zone].streaming)

    def connected(self, zone: str) -> bool:
        """Whether `zone` has any open stream on any replica."""
        return bool(self.by_zone(zone)) or bool(self.remote.get(zone) and self.remote[zone].subscriptions)

    def health_last_seen(self, zone: str) -> datetime | None:
        seen = [
            t for t in (self.last_health_check.get(zone), self.remote.get(zone, RemoteZone()).health_last_seen) if t
        ]
        return max(seen) if seen else None
