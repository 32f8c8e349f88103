"""The per-type state of one delta stream, and its transitions as a table. No I/O.

Per type URL (a KDS kind, an Envoy type):

    state          input       next state   effect
    UNSUBSCRIBED   SUBSCRIBE   IDLE         subscription set up; initial_resource_versions become `known`
    IDLE           UPDATE      IDLE         subscription changes (delta xDS only: names (un)subscribed)
    AWAITING       UPDATE      AWAITING     the same, while a response is in flight
    AWAITING       ACK         IDLE         the peer holds what was sent (`confirmed`)
    AWAITING       NACK        IDLE         the rejected versions are recorded and not re-sent until they change
    any other (state, input) pair is a ProtocolError: the adapter closes the stream loudly.

IDLE -> AWAITING is the sender's own move: a response goes out (one per type in flight).

What a stream keeps per resource (`known`, `confirmed`, `sent`) are mappings. They start as plain dicts; a
stream configured with a `cursor` (KDS) turns them into views on the shared snapshot once the peer has
ACKed a complete response at revision R (`synced_revision`) with nothing in flight, rejected or oversized:
`known` and `confirmed` become `Versions` on snapshot R with empty overlays, `sent` becomes `Stamps` (runs
of one stamp per response over R's names). The per-zone memory the global pays is then independent of the
resource count (issue 12 item 7). Readers go through the mapping interface and never see the difference.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from enum import StrEnum

from envoy.service.discovery.v3 import discovery_pb2

from meshgate.delta.snapshot import KindSnapshot
from meshgate.delta.stamps import Stamp
from meshgate.delta.subscription import NOTHING, Subscription

__all__ = [
    "TRANSITIONS",
    "InFlight",
    "Input",
    "NackRecord",
    "ProtocolError",
    "State",
    "TypeState",
    "TypeStats",
    "classify",
]


class ProtocolError(Exception):
    """The peer broke the protocol (an ACK for nothing in flight, a nonce never sent, a second subscription
    where the protocol has none): fatal for the stream."""


class State(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    IDLE = "idle"
    AWAITING = "awaiting"


class Input(StrEnum):
    SUBSCRIBE = "subscribe"
    UPDATE = "update"
    ACK = "ack"
    NACK = "nack"


TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.UNSUBSCRIBED, Input.SUBSCRIBE): State.IDLE,
    (State.IDLE, Input.UPDATE): State.IDLE,
    (State.AWAITING, Input.UPDATE): State.AWAITING,
    (State.AWAITING, Input.ACK): State.IDLE,
    (State.AWAITING, Input.NACK): State.IDLE,
}


def classify(req: discovery_pb2.DeltaDiscoveryRequest, state: State, *, updates: bool = True) -> Input:
    """A request with a nonce answers a response; one without subscribes, or (where the protocol allows
    subscription changes, `updates`) updates a subscription already set up. KDS has no UPDATE: a second
    subscription is a SUBSCRIBE in IDLE, outside the table."""
    if req.response_nonce:
        return Input.NACK if req.error_detail.code or req.error_detail.message else Input.ACK
    return Input.UPDATE if updates and state is not State.UNSUBSCRIBED else Input.SUBSCRIBE


@dataclass(slots=True)
class NackRecord:
    nonce: str
    error: str
    names: dict[str, str]  # rejected name -> reason, as far as the peer said (empty when it did not)
    at: float


@dataclass(slots=True)
class TypeStats:
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
    # The snapshot the response was computed from: an ACK that leaves the peer holding all of it settles
    # the stream onto it (`cursor` streams only; None otherwise and once the stream is forgotten).
    snapshot: KindSnapshot | None = field(default=None, repr=False)


@dataclass(slots=True)
class TypeState:
    type_url: str
    state: State = State.UNSUBSCRIBED
    subscription: Subscription = NOTHING
    # What the peer holds as far as this stream knows: optimistic, updated when a response is sent. A rejected
    # version stays here, so identical content is not sent again only to be rejected again.
    known: MutableMapping[str, str] = field(default_factory=dict)
    # What the peer confirmed holding: its initial_resource_versions, then whatever it ACKed. This is "the
    # version the zone reports" in `kds trace`; `known` runs ahead of it while a response is in flight.
    confirmed: MutableMapping[str, str] = field(default_factory=dict)
    # Versions the peer rejected, with its reason (name -> (version, reason)), and oversized ones we refused
    # to send (name -> version): neither is re-sent until its version changes.
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    oversized: dict[str, str] = field(default_factory=dict)
    # Names to send even when the peer holds their version (xDS: endpoints of a cluster just re-sent).
    force: set[str] = field(default_factory=set)
    in_flight: InFlight | None = None
    first_sent: bool = False
    # Snapshot revision at which `known` equalled the snapshot, enabling change-log deltas.
    synced_revision: int | None = None
    # name -> (nonce, time) of the last response that carried it (upsert or removal).
    sent: MutableMapping[str, Stamp] = field(default_factory=dict)
    stats: TypeStats = field(default_factory=TypeStats)
    # The snapshot the stream last found nothing to send of, in step, with nothing about this type changed
    # since (no request, no forced name): while it is offered that very snapshot again, there is nothing to
    # compute. Every stream wakes at every change of any type, and most types did not change.
    quiet_on: KindSnapshot | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        """The type URL under its KDS name."""
        return self.type_url

    @property
    def in_flight_since(self) -> float | None:
        return self.in_flight.sent_at if self.in_flight else None
