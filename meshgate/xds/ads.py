"""Delta ADS for Envoy, as a per-stream state machine with no I/O.

One `AdsStream` per `DeltaAggregatedResources` call. Requests go in (`receive`), responses come out
(`next_responses`, given the proxy's current `ProxySnapshot`). Per type URL:

    state          input       next state   effect
    UNSUBSCRIBED   SUBSCRIBE   IDLE         subscription set up; initial_resource_versions become `known`
    IDLE           UPDATE      IDLE         subscription changes (names subscribed / unsubscribed)
    AWAITING       UPDATE      AWAITING     the same, while a response is in flight
    AWAITING       ACK         IDLE         Envoy holds what was sent (`confirmed`)
    AWAITING       NACK        IDLE         the rejected versions are recorded and not re-sent until they change
    any other (state, input) pair is a ProtocolError: the adapter closes the stream loudly.

An ACK or NACK may carry subscription changes too (Envoy folds pending ones into it); they are applied.

Subscriptions follow the delta xDS rules: the first request of a wildcard-capable type (CDS, LDS) that names
nothing is a "legacy wildcard" subscription; `*` subscribes to everything explicitly. EDS and RDS are asked for
by name, as Envoy discovers the clusters and route configurations that need them.

Ordering, so Envoy never references what it does not hold (xDS "eventual consistency considerations"):
- pushes go out in the order CDS, EDS, (SDS), LDS, RDS, one response in flight per type;
- LDS and RDS upserts wait while CDS has a response in flight or upserts still to send, so a listener or a
  route never names a cluster Envoy has not ACKed;
- CDS and EDS removals wait while LDS or RDS are not in step, so a cluster (or its endpoints) goes only after
  what referenced it;
- every time a cluster is (re)sent, its ClusterLoadAssignment is re-sent too, even unchanged: Envoy keeps an
  updated EDS cluster warming until it receives its endpoints again.

Versions are content hashes of the deterministic serialization, so a reconnecting Envoy that reports its
`initial_resource_versions` receives only what changed.

Errors: `ProtocolError` (the peer broke the protocol; fatal for the stream) and `ValueError` from
`ProxyId.parse` / `ProxySnapshot.of` for malformed input from the caller.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshgate.kds.snapshot import Entry

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "PUSH_ORDER",
    "ROUTE",
    "SECRET",
    "AdsStream",
    "Delta",
    "Input",
    "NackRecord",
    "ProtocolError",
    "ProxyId",
    "ProxySnapshot",
    "State",
    "Subscription",
    "TypeState",
    "TypeStats",
    "classify",
    "compute_delta",
    "content_version",
    "short_type",
]

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"
SECRET = _PREFIX + "envoy.extensions.transport_sockets.tls.v3.Secret"

# The safe push order (see the module docstring). Types not listed go last, in name order.
PUSH_ORDER = (CLUSTER, ENDPOINT, SECRET, LISTENER, ROUTE)
# Types whose first request, when it names nothing, is a legacy wildcard subscription.
WILDCARD_TYPES = frozenset({CLUSTER, LISTENER})
WILDCARD = "*"


class ProtocolError(Exception):
    """Envoy broke the delta xDS protocol (an ACK for nothing in flight, a nonce we never sent)."""


def short_type(type_url: str) -> str:
    """`Cluster` for `type.googleapis.com/envoy.config.cluster.v3.Cluster`: for logs and the read API."""
    return type_url.rsplit(".", 1)[-1]


@dataclass(frozen=True, slots=True, order=True)
class ProxyId:
    """A proxy as Kuma names it in `node.id`: `<mesh>.<dataplane name>` (the name may contain dots)."""

    mesh: str
    name: str

    @classmethod
    def parse(cls, node_id: str) -> ProxyId:
        mesh, dot, name = node_id.partition(".")
        if not dot or not mesh or not name:
            raise ValueError(f"node.id {node_id!r} is not <mesh>.<dataplane name>")
        return cls(mesh, name)

    def __str__(self) -> str:
        return f"{self.mesh}.{self.name}"


def content_version(message: Message) -> str:
    """Hash of the deterministic serialization: equal content, equal version, across processes."""
    return hashlib.blake2b(message.SerializeToString(deterministic=True), digest_size=10).hexdigest()


def _wire(name: str, message: Message) -> discovery_pb2.Resource:
    packed = any_pb2.Any()
    packed.Pack(message)
    return discovery_pb2.Resource(name=name, version=content_version(message), resource=packed)


@dataclass(frozen=True, slots=True)
class ProxySnapshot:
    """Everything one proxy should hold, pre-serialized and versioned: type URL -> name -> Entry.

    Immutable by convention; build a new one for every change (`of` hashes each resource once).
    """

    resources: Mapping[str, Mapping[str, Entry]]
    # Cluster name -> the EDS name Envoy subscribes to for it (EDS clusters only).
    eds_names: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Mapping[str, Mapping[str, Message]]) -> ProxySnapshot:
        """From type URL -> {name: Envoy message}; every message must be of its key's type."""
        out: dict[str, dict[str, Entry]] = {}
        eds_names: dict[str, str] = {}
        for type_url, named in resources.items():
            entries: dict[str, Entry] = {}
            for name, message in named.items():
                actual = _PREFIX + message.DESCRIPTOR.full_name
                if actual != type_url:
                    raise ValueError(f"{name!r} is a {actual}, filed under {type_url}")
                entries[name] = Entry.of(_wire(name, message))
                if isinstance(message, cluster_pb2.Cluster) and message.type == cluster_pb2.Cluster.EDS:
                    eds_names[name] = message.eds_cluster_config.service_name or name
            out[type_url] = entries
        return cls(out, eds_names)

    def entries(self, type_url: str) -> Mapping[str, Entry]:
        return self.resources.get(type_url, {})

    def versions(self, type_url: str) -> dict[str, str]:
        return {name: e.version for name, e in self.entries(type_url).items()}


@dataclass(frozen=True, slots=True)
class Subscription:
    """What Envoy asked for, for one type: everything (wildcard), named resources, or both."""

    wildcard: bool = False
    names: frozenset[str] = frozenset()

    def covers(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def apply(self, subscribe: Iterable[str], unsubscribe: Iterable[str]) -> Subscription:
        wildcard, names = self.wildcard, set(self.names)
        for name in subscribe:
            if name == WILDCARD:
                wildcard = True
            else:
                names.add(name)
        for name in unsubscribe:
            if name == WILDCARD:
                wildcard = False
            else:
                names.discard(name)
        return Subscription(wildcard, frozenset(names))


@dataclass(frozen=True, slots=True)
class Delta:
    upserts: tuple[Entry, ...]
    removals: tuple[str, ...]

    @property
    def empty(self) -> bool:
        return not self.upserts and not self.removals


def compute_delta(
    entries: Mapping[str, Entry],
    subscription: Subscription,
    known: Mapping[str, str],
    *,
    force: frozenset[str] | set[str] = frozenset(),
    hold_upserts: bool = False,
    hold_removals: bool = False,
) -> Delta:
    """What to send so that Envoy, holding `known` (name -> version), converges to `entries`.

    Only subscribed names are considered. `force` names are sent even when Envoy holds their version
    (endpoints of a cluster just re-sent). `hold_*` defer a part of the delta for the ordering rules.
    """
    upserts: list[Entry] = []
    removals: list[str] = []
    # Sorted, so responses are deterministic.
    for name in sorted(entries.keys() | known.keys()):
        if not subscription.covers(name):
            continue
        entry = entries.get(name)
        if entry is None:
            if name in known and not hold_removals:
                removals.append(name)
            continue
        if hold_upserts or (known.get(name) == entry.version and name not in force):
            continue
        upserts.append(entry)
    return Delta(tuple(upserts), tuple(removals))


class State(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    IDLE = "idle"
    AWAITING = "awaiting"


class Input(StrEnum):
    SUBSCRIBE = "subscribe"
    UPDATE = "update"
    ACK = "ack"
    NACK = "nack"


_TRANSITIONS: dict[tuple[State, Input], State] = {
    (State.UNSUBSCRIBED, Input.SUBSCRIBE): State.IDLE,
    (State.IDLE, Input.UPDATE): State.IDLE,
    (State.AWAITING, Input.UPDATE): State.AWAITING,
    (State.AWAITING, Input.ACK): State.IDLE,
    (State.AWAITING, Input.NACK): State.IDLE,
}


def classify(req: discovery_pb2.DeltaDiscoveryRequest, state: State) -> Input:
    if req.response_nonce:
        return Input.NACK if req.error_detail.code or req.error_detail.message else Input.ACK
    return Input.SUBSCRIBE if state is State.UNSUBSCRIBED else Input.UPDATE


@dataclass(slots=True)
class NackRecord:
    nonce: str
    error: str
    rejected: tuple[str, ...]  # resource names the NACK is taken to reject
    at: float


@dataclass(slots=True)
class TypeStats:
    responses_sent: int = 0
    acks: int = 0
    nacks: int = 0
    resources_sent: int = 0
    removals_sent: int = 0
    last_nonce: str = ""
    last_ack_latency: float | None = None
    last_nack: NackRecord | None = None


@dataclass(frozen=True, slots=True)
class InFlight:
    nonce: str
    sent_at: float
    upserts: Mapping[str, str]  # name -> version
    removals: tuple[str, ...]


@dataclass(slots=True)
class TypeState:
    type_url: str
    state: State = State.UNSUBSCRIBED
    subscription: Subscription = Subscription()
    # What Envoy holds as far as this stream knows: optimistic, updated when a response is sent. A rejected
    # version stays here, so identical content is not sent again only to be rejected again.
    known: dict[str, str] = field(default_factory=dict)
    # What Envoy confirmed: its initial_resource_versions, then what it ACKed.
    confirmed: dict[str, str] = field(default_factory=dict)
    # name -> (version, error) of versions Envoy rejected.
    rejected: dict[str, tuple[str, str]] = field(default_factory=dict)
    force: set[str] = field(default_factory=set)
    in_flight: InFlight | None = None
    first_sent: bool = False
    stats: TypeStats = field(default_factory=TypeStats)

    def pending(self, snapshot: ProxySnapshot) -> Delta:
        return compute_delta(snapshot.entries(self.type_url), self.subscription, self.known, force=self.force)

    def settled(self, snapshot: ProxySnapshot, *, upserts_only: bool = False) -> bool:
        """Nothing in flight and nothing left to send: Envoy holds (or rejected) this type's snapshot.

        `upserts_only` ignores removals still to send: CDS removals wait for LDS and RDS, which wait for
        CDS upserts, so counting them here would deadlock the two."""
        if self.state is State.AWAITING:
            return False
        pending = self.pending(snapshot)
        return not pending.upserts if upserts_only else pending.empty


def _rejected_names(message: str, sent: Iterable[str]) -> tuple[str, ...]:
    """The resources a NACK rejects. Envoy applies the good resources of a delta and lists the bad ones as
    `Error adding/updating listener(s) NAME: reason, NAME: reason`; when no sent name appears that way,
    the whole response is taken as rejected."""
    sent = tuple(sent)
    named = tuple(n for n in sent if f"{n}: " in message)
    return named or sent


class AdsStream:
    """The state of one delta ADS stream: feed it requests and snapshots, send what it returns."""

    def __init__(self, proxy: ProxyId) -> None:
        self.proxy = proxy
        self.types: dict[str, TypeState] = {}
        self._nonce = 0
        # When a request last arrived or a response last left (the caller's clock): Kuma's lastUpdateTime.
        self.last_update: float | None = None

    def receive(self, req: discovery_pb2.DeltaDiscoveryRequest, now: float) -> tuple[TypeState, Input]:
        """Applies one request. Raises ProtocolError on any pair outside the transition table."""
        if not req.type_url:
            raise ProtocolError("a request without type_url")
        self.last_update = now
        ts = self.types.get(req.type_url)
        if ts is None:
            ts = self.types[req.type_url] = TypeState(req.type_url)
        inp = classify(req, ts.state)
        nxt = _TRANSITIONS.get((ts.state, inp))
        if nxt is None:
            raise ProtocolError(
                f"{inp.value} for {short_type(ts.type_url)} in state {ts.state.value}"
                + (f" (nonce {req.response_nonce!r})" if req.response_nonce else "")
            )
        if inp is Input.SUBSCRIBE:
            legacy_wildcard = ts.type_url in WILDCARD_TYPES and not req.resource_names_subscribe
            ts.subscription = Subscription(wildcard=legacy_wildcard)
            ts.known = dict(req.initial_resource_versions)
            ts.confirmed = dict(ts.known)
        elif inp in (Input.ACK, Input.NACK):
            self._confirm(ts, inp, req, now)
        self._resubscribe(ts, req, initial=inp is Input.SUBSCRIBE)
        ts.state = nxt
        return ts, inp

    def _confirm(self, ts: TypeState, inp: Input, req: discovery_pb2.DeltaDiscoveryRequest, now: float) -> None:
        flight = ts.in_flight
        assert flight is not None  # AWAITING implies a response in flight
        if req.response_nonce != flight.nonce:
            raise ProtocolError(
                f"{inp.value} for {short_type(ts.type_url)} names nonce {req.response_nonce!r},"
                f" but {flight.nonce!r} is in flight"
            )
        ts.stats.last_ack_latency = now - flight.sent_at
        if inp is Input.ACK:
            ts.stats.acks += 1
            bad: tuple[str, ...] = ()
        else:
            ts.stats.nacks += 1
            error = req.error_detail.message
            bad = _rejected_names(error, flight.upserts)
            ts.stats.last_nack = NackRecord(flight.nonce, error, bad, now)
        for name, version in flight.upserts.items():
            if name in bad:
                ts.rejected[name] = (version, req.error_detail.message)
            else:
                ts.rejected.pop(name, None)
                ts.confirmed[name] = version
        for name in flight.removals:
            ts.confirmed.pop(name, None)
            ts.rejected.pop(name, None)
        ts.in_flight = None

    def _resubscribe(self, ts: TypeState, req: discovery_pb2.DeltaDiscoveryRequest, *, initial: bool) -> None:
        ts.subscription = ts.subscription.apply(req.resource_names_subscribe, req.resource_names_unsubscribe)
        for name in req.resource_names_unsubscribe:
            if not ts.subscription.covers(name):
                for held in (ts.known, ts.confirmed, ts.rejected):
                    held.pop(name, None)
                ts.force.discard(name)
        if not initial:
            # A (re)subscription asks for the resource now, whatever we believe Envoy holds; on the first
            # request, initial_resource_versions says what it holds instead.
            for name in req.resource_names_subscribe:
                if name != WILDCARD:
                    ts.known.pop(name, None)

    def _ordered(self) -> list[TypeState]:
        rank = {t: i for i, t in enumerate(PUSH_ORDER)}
        return sorted(self.types.values(), key=lambda ts: (rank.get(ts.type_url, len(rank)), ts.type_url))

    def next_responses(self, snapshot: ProxySnapshot | None, now: float) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """Every response to send now, in push order; empty when nothing is due or allowed yet.

        No snapshot (the proxy's Dataplane is not known yet) sends nothing: Envoy keeps waiting.
        """
        if snapshot is None:
            return []
        out: list[discovery_pb2.DeltaDiscoveryResponse] = []
        cds = self.types.get(CLUSTER)
        refs_settled = all(self.types[t].settled(snapshot) for t in (LISTENER, ROUTE) if t in self.types)
        for ts in self._ordered():
            if ts.state is not State.IDLE:
                continue
            hold_upserts = (
                ts.type_url in (LISTENER, ROUTE) and cds is not None and not cds.settled(snapshot, upserts_only=True)
            )
            hold_removals = ts.type_url in (CLUSTER, ENDPOINT) and not refs_settled
            delta = compute_delta(
                snapshot.entries(ts.type_url),
                ts.subscription,
                ts.known,
                force=ts.force,
                hold_upserts=hold_upserts,
                hold_removals=hold_removals,
            )
            # The first response of a wildcard subscription goes out even when empty: Envoy waits for it
            # (up to initial_fetch_timeout) before it moves on from CDS to LDS.
            if delta.empty and (ts.first_sent or not ts.subscription.wildcard or hold_upserts):
                continue
            out.append(self._respond(ts, delta, now))
            if ts.type_url == CLUSTER:
                self._force_endpoints(snapshot, delta)
        return out

    def _force_endpoints(self, snapshot: ProxySnapshot, delta: Delta) -> None:
        eds = self.types.get(ENDPOINT)
        if eds is None:
            return  # Envoy has not subscribed to EDS yet: its first subscription will fetch them
        for entry in delta.upserts:
            eds_name = snapshot.eds_names.get(entry.name)
            if eds_name is not None:
                eds.force.add(eds_name)

    def _respond(self, ts: TypeState, delta: Delta, now: float) -> discovery_pb2.DeltaDiscoveryResponse:
        self._nonce += 1
        self.last_update = now
        nonce = str(self._nonce)
        resp = discovery_pb2.DeltaDiscoveryResponse(
            type_url=ts.type_url,
            nonce=nonce,
            resources=[e.wire for e in delta.upserts],
            removed_resources=delta.removals,
        )
        upserts = {e.name: e.version for e in delta.upserts}
        ts.known.update(upserts)
        ts.force.difference_update(upserts)
        for name in delta.removals:
            ts.known.pop(name, None)
        ts.in_flight = InFlight(nonce, now, upserts, delta.removals)
        ts.state = State.AWAITING
        ts.first_sent = True
        st = ts.stats
        st.responses_sent += 1
        st.resources_sent += len(upserts)
        st.removals_sent += len(delta.removals)
        st.last_nonce = nonce
        return resp

    def describe(self) -> dict[str, Any]:
        """A JSON-ready view per type, for `/xds/proxies` and tests."""
        out: dict[str, Any] = {}
        for ts in self._ordered():
            st = ts.stats
            nack = st.last_nack
            out[short_type(ts.type_url)] = {
                "typeUrl": ts.type_url,
                "state": ts.state.value,
                "subscription": {"wildcard": ts.subscription.wildcard, "names": sorted(ts.subscription.names)},
                "sent": st.responses_sent,
                "acked": st.acks,
                "nacked": st.nacks,
                "resourcesSent": st.resources_sent,
                "removalsSent": st.removals_sent,
                "lastNonce": st.last_nonce,
                "inFlight": ts.in_flight.nonce if ts.in_flight else None,
                "lastAckLatencyMs": None if st.last_ack_latency is None else round(st.last_ack_latency * 1000, 3),
                "lastNack": None
                if nack is None
                else {"nonce": nack.nonce, "error": nack.error, "rejected": list(nack.rejected), "at": nack.at},
                "versions": dict(sorted(ts.confirmed.items())),
                "rejected": {n: {"version": v, "error": e} for n, (v, e) in sorted(ts.rejected.items())},
            }
        return out
