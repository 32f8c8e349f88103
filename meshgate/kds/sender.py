"""The sending side of one KDS stream, as a state machine with no I/O.

On GlobalToZoneSync the global is the sender; on ZoneToGlobalSync the zone is. Per kind:

    state          input              next state     effect
    UNSUBSCRIBED   SUBSCRIBE          IDLE           remember initial_resource_versions as `known`
    IDLE           (snapshot differs) AWAITING       a response goes out (one per kind in flight)
    AWAITING       ACK(nonce)         IDLE           counters; peer holds what was sent
    AWAITING       NACK(nonce)        IDLE           counters; rejected names recorded, not re-sent
                                                      until their version changes
    any other (state, input) pair is a ProtocolError: the adapter closes the stream loudly.

The first response per kind is always sent, even when empty, so the receiver learns it is in sync.

A subscription to a kind this side does not serve is answered as Kuma's cache answers it: an empty first
response, then nothing (`Sender.unknown`, `unknown_responses`), under the same transitions. A Kuma zone
subscribes to 36 kinds and restarts its whole KDS client on a stream error, so refusing one would make it
loop forever. How many unknown kinds a stream may name is bounded (meshgate.kds.limits.MAX_UNKNOWN_KINDS).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import error_details_pb2

from meshgate.kds.delta import DEFAULT_MAX_BYTES, compute_delta
from meshgate.kds.errors import ProtocolError
from meshgate.kds.limits import check_unknown_kind, clip
from meshgate.kds.snapshot import KindSnapshot

__all__ = [
    "Input",
    "KindStats",
    "NackRecord",
    "ProtocolError",
    "Sender",
    "SenderKind",
    "State",
    "classify",
    "rejected_names",
]


# Rejected names a closed stream keeps from its last NACK per kind, for its insight.
_KEPT_NACK_NAMES = 10
_KEPT_NACK_TEXT = 1024


class State(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    IDLE = "idle"
    AWAITING = "awaiting"


class Input(StrEnum):
    SUBSCRIBE = "subscribe"
    ACK = "ack"
    NACK = "nack"


def classify(req: discovery_pb2.DeltaDiscoveryRequest) -> Input:
    if not req.response_nonce:
        return Input.SUBSCRIBE
    if req.error_detail.code or req.error_detail.message:
        return Input.NACK
    return Input.ACK


def rejected_names(req: discovery_pb2.DeltaDiscoveryRequest) -> dict[str, str]:
    """Rejected resource names from a NACK's error_detail.details (google.rpc.BadRequest), if present.

    Kuma leaves `details` empty; meshgate zones fill it, so the sender knows exactly which were bad.
    """
    out: dict[str, str] = {}
    for detail in req.error_detail.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            for v in bad.field_violations:
                out[v.field] = v.description
    return out


_TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.UNSUBSCRIBED, Input.SUBSCRIBE): State.IDLE,
    (State.AWAITING, Input.ACK): State.IDLE,
    (State.AWAITING, Input.NACK): State.IDLE,
}


@dataclass(slots=True)
class NackRecord:
    nonce: str
    error: str
    names: dict[str, str]  # name -> reason (empty when the peer did not say)
    at: float


@dataclass(slots=True)
class KindStats:
    responses_sent: int = 0
    acks: int = 0
    nacks: int = 0
    resources_sent: int = 0
    removals_sent: int = 0
    bytes_sent: int = 0
    last_nonce: str = ""
    last_ack_latency: float | None = None
    last_nack: NackRecord | None = None


@dataclass(slots=True)
class InFlight:
    nonce: str
    sent_at: float
    revision: int
    complete: bool
    upserts: dict[str, str]  # name -> version
    removals: tuple[str, ...]


@dataclass(slots=True)
class SenderKind:
    kind: str
    state: State = State.UNSUBSCRIBED
    # What the peer holds, name -> version, as far as this stream knows (optimistic: updated on send).
    known: dict[str, str] = field(default_factory=dict)
    # Snapshot revision at which `known` equalled the snapshot, enabling change-log deltas.
    synced_revision: int | None = None
    in_flight: InFlight | None = None
    first_sent: bool = False
    # What the peer confirmed holding: its initial_resource_versions, then whatever it ACKed. This is
    # "the version the zone reports" in `kds trace`; `known` runs ahead of it while a response is in flight.
    confirmed: dict[str, str] = field(default_factory=dict)
    # name -> (nonce, monotonic time) of the last response that carried it (upsert or removal).
    sent: dict[str, tuple[str, float]] = field(default_factory=dict)
    # Versions the peer rejected, with its reason (name -> (version, reason)), and oversized ones we refused
    # to send (name -> version): neither is re-sent until its version changes.
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    oversized: dict[str, str] = field(default_factory=dict)
    stats: KindStats = field(default_factory=KindStats)

    @property
    def in_flight_since(self) -> float | None:
        return self.in_flight.sent_at if self.in_flight else None


class Sender:
    """Sender state for all kinds of one stream. Feed it requests and snapshots; it emits responses."""

    def __init__(self, kinds: Iterable[str], *, max_bytes: int = DEFAULT_MAX_BYTES, control_plane_id: str = "") -> None:
        """`control_plane_id` goes in every response's `control_plane.identifier`, as Kuma's control planes set
        it (pkg/util/xds/v3/control_plane_id_callbacks.go): the sender's instance id."""
        self.kinds: dict[str, SenderKind] = {k: SenderKind(k) for k in kinds}
        self.control_plane_id = control_plane_id
        # Kinds the peer subscribed to that this side does not serve: answered empty once, then silent.
        self.unknown: dict[str, SenderKind] = {}
        self.max_bytes = max_bytes
        self._nonce = 0

    def _kind(self, type_url: str, inp: Input) -> SenderKind:
        ks = self.kinds.get(type_url) or self.unknown.get(type_url)
        if ks is not None:
            return ks
        if inp is not Input.SUBSCRIBE:
            raise ProtocolError(f"{inp.value} for kind {clip(type_url)!r}, which this stream never subscribed to")
        check_unknown_kind(type_url, self.unknown)
        ks = self.unknown[type_url] = SenderKind(type_url)
        return ks

    def receive(self, req: discovery_pb2.DeltaDiscoveryRequest, now: float) -> tuple[SenderKind, Input]:
        """Applies one request. Raises ProtocolError on any pair outside the transition table, and
        MalformedMessage on a subscription to one unknown kind too many (meshgate.kds.limits)."""
        inp = classify(req)
        ks = self._kind(req.type_url, inp)
        nxt = _TRANSITIONS.get((ks.state, inp))
        if nxt is None:
            raise ProtocolError(
                f"{inp.value} for {ks.kind} in state {ks.state.value}"
                + (f" (nonce {req.response_nonce!r})" if req.response_nonce else "")
            )
        if inp is Input.SUBSCRIBE:
            ks.known = dict(req.initial_resource_versions)
            ks.confirmed = dict(ks.known)
        else:
            flight = ks.in_flight
            assert flight is not None  # AWAITING implies a response in flight
            if req.response_nonce != flight.nonce:
                raise ProtocolError(
                    f"{inp.value} for {ks.kind} names nonce {req.response_nonce!r}, but {flight.nonce!r} is in flight"
                )
            ks.stats.last_ack_latency = now - flight.sent_at
            if inp is Input.ACK:
                ks.stats.acks += 1
                for name in flight.upserts:
                    ks.rejected.pop(name, None)
                ks.confirmed.update(flight.upserts)
            else:
                ks.stats.nacks += 1
                named = rejected_names(req)
                ks.stats.last_nack = NackRecord(flight.nonce, req.error_detail.message, named, now)
                # Rejected names keep the sent version in `known`: the peer keeps its old copy, and
                # resending identical content would only be rejected again. A new version goes out.
                # A peer that names nothing (Kuma) is taken to have rejected the whole response.
                bad = named.keys() & flight.upserts.keys() if named else flight.upserts.keys()
                for name, version in flight.upserts.items():
                    if name in bad:
                        ks.rejected[name] = (version, named.get(name, req.error_detail.message))
                    else:
                        ks.rejected.pop(name, None)
                        ks.confirmed[name] = version
            for name in flight.removals:
                ks.confirmed.pop(name, None)
            ks.in_flight = None
        ks.state = nxt
        return ks, inp

    def next_response(self, snapshot: KindSnapshot, now: float) -> discovery_pb2.DeltaDiscoveryResponse | None:
        """The response to send for `snapshot.kind` now, or None (not subscribed, in flight, nothing new)."""
        ks = self.kinds.get(snapshot.kind) or self.unknown.get(snapshot.kind)
        if ks is None or ks.state is not State.IDLE:
            return None
        delta = compute_delta(
            snapshot,
            ks.known,
            since_revision=ks.synced_revision,
            skip=ks.oversized,
            max_bytes=self.max_bytes,
        )
        ks.oversized.update(delta.oversized)
        if delta.empty and ks.first_sent:
            ks.synced_revision = snapshot.revision if delta.complete else None
            return None
        self._nonce += 1
        nonce = str(self._nonce)
        resp = discovery_pb2.DeltaDiscoveryResponse(
            type_url=snapshot.kind,
            nonce=nonce,
            system_version_info=str(snapshot.revision),
            resources=[e.wire for e in delta.upserts],
            removed_resources=delta.removals,
        )
        if self.control_plane_id:
            resp.control_plane.identifier = self.control_plane_id
        upserts = {e.name: e.version for e in delta.upserts}
        ks.known.update(upserts)
        stamp = (nonce, now)
        ks.sent.update(dict.fromkeys(upserts, stamp))
        for name in delta.removals:
            ks.known.pop(name, None)
            ks.rejected.pop(name, None)
            ks.sent[name] = stamp
        ks.synced_revision = snapshot.revision if delta.complete else None
        ks.in_flight = InFlight(nonce, now, snapshot.revision, delta.complete, upserts, delta.removals)
        ks.state = State.AWAITING
        ks.first_sent = True
        st = ks.stats
        st.responses_sent += 1
        st.resources_sent += len(upserts)
        st.removals_sent += len(delta.removals)
        st.bytes_sent += resp.ByteSize()
        st.last_nonce = nonce
        return resp

    def is_unknown(self, kind: str) -> bool:
        return kind in self.unknown

    def unknown_responses(self, now: float) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """The empty first response of every unknown kind subscribed since the last call: such a kind has an
        empty snapshot, so after its first response nothing more is ever sent for it."""
        out = []
        for kind in self.unknown:
            resp = self.next_response(KindSnapshot(kind), now)
            if resp is not None:
                out.append(resp)
        return out

    def forget(self) -> None:
        """Drops this (closed) stream's per-resource state, keeping each kind's counters and state: what a
        peer that is gone held is of no use, and a peer can make it as large as its initial versions."""
        for ks in (*self.kinds.values(), *self.unknown.values()):
            ks.known, ks.confirmed, ks.sent, ks.rejected, ks.oversized = {}, {}, {}, {}, {}
            ks.synced_revision = None
            if ks.in_flight is not None:
                ks.in_flight.upserts, ks.in_flight.removals = {}, ()
            if ks.stats.last_nack is not None:
                ks.stats.last_nack.names = dict(list(ks.stats.last_nack.names.items())[:_KEPT_NACK_NAMES])
                ks.stats.last_nack.error = ks.stats.last_nack.error[:_KEPT_NACK_TEXT]

    def oversized(self) -> Mapping[str, Mapping[str, str]]:
        return {k: dict(ks.oversized) for k, ks in self.kinds.items() if ks.oversized}
