"""One delta stream (every type on it), as a state machine with no I/O, set up by a small `StreamConfig`.

Feed it requests (`receive`) and snapshots (`respond`); both return events (meshgate.delta.events), and a
`Sent` event carries the response to write. KDS (meshgate.kds.sender) and Envoy's delta ADS
(meshgate.xds.ads) are two configurations:

- which types a stream serves: a fixed list, answered in its order, with unknown ones admitted by a bounded
  rule and answered once empty (KDS), or any type, created on its first request (xDS);
- subscriptions: always wildcard with no UPDATE input (KDS), or by name with UPDATE and a legacy wildcard
  for some types (xDS);
- which names a NACK rejects (KDS: its google.rpc.BadRequest details; xDS: parsed from Envoy's message);
- what responses carry (KDS: system_version_info = the snapshot revision, control_plane.identifier) and
  the size budget (KDS);
- the push order and its holds (xDS: a type's upserts wait while another has upserts to send or in flight;
  its removals wait while others are not in step) and forced re-sends (`Snapshots.followers`).

The first response of a wildcard subscription goes out even when empty: a KDS peer learns it is in sync, an
Envoy moves on from CDS to LDS. A named subscription gets nothing until something it names exists.

Errors: `ProtocolError` (meshgate.delta.state); a config's `admit_unknown` raises its own (a subclass).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy.service.discovery.v3 import discovery_pb2

from meshgate.delta import events as ev
from meshgate.delta.delta import Delta, compute_delta
from meshgate.delta.entry import Entry
from meshgate.delta.events import Event
from meshgate.delta.snapshot import KindSnapshot
from meshgate.delta.stamps import Stamps
from meshgate.delta.state import TRANSITIONS, InFlight, Input, NackRecord, ProtocolError, State, TypeState, classify
from meshgate.delta.subscription import EVERYTHING, WILDCARD, Subscription
from meshgate.delta.versions import Versions, intern

__all__ = ["DeltaStream", "NackNames", "PerType", "Snapshots", "StreamConfig", "whole_response"]

# What a closed stream keeps of its last NACK per type, for its insight.
_KEPT_NACK_NAMES = 10
_KEPT_NACK_TEXT = 1024

# (request, the upserts in flight: name -> version) -> (names the peer reported: name -> reason,
# names taken as rejected: name -> reason).
NackNames = Callable[[discovery_pb2.DeltaDiscoveryRequest, Mapping[str, str]], tuple[dict[str, str], dict[str, str]]]


def whole_response(
    req: discovery_pb2.DeltaDiscoveryRequest, upserts: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """A NACK that names nothing rejects the whole response."""
    bad = dict.fromkeys(upserts, req.error_detail.message)
    return bad, bad


class Snapshots(Protocol):
    """What one stream is offered now, per type."""

    def get(self, type_url: str) -> KindSnapshot:
        """The type's snapshot (empty when there is nothing of it)."""
        ...

    def followers(self, type_url: str) -> Mapping[str, tuple[str, str]]:
        """name -> (type URL, name) of a resource to re-send whenever this one is (re)sent."""
        ...


_NO_FOLLOWERS: Mapping[str, tuple[str, str]] = {}


def _on(versions: Mapping[str, str], entries: Mapping[str, Entry]) -> bool:
    """`versions` is already a view equal to `entries`."""
    return isinstance(versions, Versions) and versions.base is entries and versions.overlay_size == 0


class PerType:
    """`Snapshots` from a function of the type URL, with no followers (KDS)."""

    def __init__(self, view: Callable[[str], KindSnapshot]) -> None:
        self._view = view

    def get(self, type_url: str) -> KindSnapshot:
        return self._view(type_url)

    def followers(self, type_url: str) -> Mapping[str, tuple[str, str]]:
        return _NO_FOLLOWERS


@dataclass(frozen=True, slots=True)
class StreamConfig:
    # The types served, in push order; None: any type, created on its first request, pushed in `order`.
    served: tuple[str, ...] | None = None
    # Push order of types created on demand; types not listed go last, in name order.
    order: tuple[str, ...] = ()
    # Subscriptions by name, with UPDATE input (delta xDS); False: every subscription is wildcard (KDS).
    named: bool = False
    # Types whose first request, when it names nothing, is a legacy wildcard subscription.
    legacy_wildcard: frozenset[str] = frozenset()
    nack_names: NackNames = whole_response
    # Admits a subscription to a type not `served` (raising when it may not join the `unknown` ones already
    # tracked); None: such a subscription is a ProtocolError.
    admit_unknown: Callable[[str, Collection[str]], None] | None = None
    # Checks a subscription's initial_resource_versions, as the dict the stream keeps, before anything is done
    # with them (raising ProtocolError): one conversion of a resuming peer's 10k+ versions, checked in C.
    check_initial: Callable[[Mapping[str, str]], None] | None = None
    # Bytes of resources one response may carry; None: no budget.
    max_bytes: int | None = None
    # Responses carry system_version_info = the snapshot revision.
    version_info: bool = False
    control_plane_id: str = ""
    # Snapshots of a type form one chain of revisions (KindSnapshot.evolve), so a stream in step at a
    # revision computes its next delta from the change log.
    change_log: bool = False
    # With `change_log`: once the peer holds exactly a snapshot, what the stream keeps per resource becomes
    # a cursor into it (meshgate.delta.versions, meshgate.delta.stamps), so a peer costs O(1) per resource.
    cursor: bool = False
    # type -> types whose upserts must all be out and ACKed before this type's upserts go.
    hold_upserts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # type -> types that must be in step before this type's removals go.
    hold_removals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # How errors name a type (bounded: it may be the peer's).
    label: Callable[[str], str] = str


class DeltaStream:
    """Every type of one stream. Not thread-safe; one adapter task group drives it."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.types: dict[str, TypeState] = {t: TypeState(t) for t in config.served or ()}
        # Types subscribed to that this side does not serve: answered empty once, then silent.
        self.unknown: dict[str, TypeState] = {}
        self._nonce = 0
        rank = config.order or config.served or ()
        self._rank = {t: i for i, t in enumerate(rank)}
        # When a request last arrived or a response last left (the caller's clock): Kuma's lastUpdateTime.
        self.last_update: float | None = None
        self._order: list[TypeState] = []
        self._order_size = (-1, -1)

    # -- requests ---------------------------------------------------------------------------------------

    def _state(self, req: discovery_pb2.DeltaDiscoveryRequest) -> TypeState:
        type_url = req.type_url
        ts = self.types.get(type_url) or self.unknown.get(type_url)
        if ts is not None:
            return ts
        if self.config.served is None:
            if not type_url:
                raise ProtocolError("a request without type_url")
            ts = self.types[type_url] = TypeState(type_url)
            return ts
        inp = classify(req, State.UNSUBSCRIBED)
        if inp is not Input.SUBSCRIBE or self.config.admit_unknown is None:
            raise ProtocolError(
                f"{inp.value} for kind {self.config.label(type_url)!r}, which this stream never subscribed to"
            )
        self.config.admit_unknown(type_url, self.unknown)
        ts = self.unknown[type_url] = TypeState(type_url)
        return ts

    def receive(self, req: discovery_pb2.DeltaDiscoveryRequest, now: float) -> list[Event]:
        """Applies one request. Raises ProtocolError on any pair outside the transition table."""
        ts = self._state(req)
        ts.quiet_on = None
        self.last_update = now
        inp = classify(req, ts.state, updates=self.config.named)
        nxt = TRANSITIONS.get((ts.state, inp))
        label = self.config.label(ts.type_url)
        if nxt is None:
            raise ProtocolError(
                f"{inp.value} for {label} in state {ts.state.value}"
                + (f" (nonce {req.response_nonce!r})" if req.response_nonce else "")
            )
        unknown = ts.type_url in self.unknown
        event: Event
        if inp is Input.SUBSCRIBE:
            if self.config.named:
                legacy = ts.type_url in self.config.legacy_wildcard and not req.resource_names_subscribe
                ts.subscription = Subscription(wildcard=legacy)
            else:
                ts.subscription = EVERYTHING
            initial = dict(req.initial_resource_versions)
            if self.config.check_initial is not None:
                self.config.check_initial(initial)
            ts.known = initial
            # A cursor stream shares one table until its first response, which interns both (a resuming
            # peer's table is as large as what it holds); nothing writes either before that response.
            ts.confirmed = ts.known if self.config.cursor else dict(ts.known)
            ts.synced_revision = None
            event = ev.Subscribed(
                ts.type_url,
                len(req.initial_resource_versions),
                tuple(req.resource_names_subscribe),
                tuple(req.resource_names_unsubscribe),
                unknown,
            )
        elif inp is Input.UPDATE:
            event = ev.Updated(ts.type_url, tuple(req.resource_names_subscribe), tuple(req.resource_names_unsubscribe))
        else:
            event = self._confirm(ts, inp, req, now, label, unknown)
        if self.config.named:
            # An ACK or NACK may carry subscription changes too (Envoy folds pending ones into it).
            self._resubscribe(ts, req, initial=inp is Input.SUBSCRIBE)
        ts.state = nxt
        return [event]

    def _confirm(
        self,
        ts: TypeState,
        inp: Input,
        req: discovery_pb2.DeltaDiscoveryRequest,
        now: float,
        label: str,
        unknown: bool,
    ) -> Event:
        flight = ts.in_flight
        assert flight is not None  # AWAITING implies a response in flight
        if req.response_nonce != flight.nonce:
            raise ProtocolError(
                f"{inp.value} for {label} names nonce {req.response_nonce!r}, but {flight.nonce!r} is in flight"
            )
        latency = now - flight.sent_at
        ts.stats.last_ack_latency = latency
        if inp is Input.ACK:
            ts.stats.acks += 1
            reported: dict[str, str] = {}
            bad: dict[str, str] = {}
        else:
            ts.stats.nacks += 1
            reported, bad = self.config.nack_names(req, flight.upserts)
            ts.stats.last_nack = NackRecord(flight.nonce, req.error_detail.message, reported, now)
        # A rejected name keeps the sent version in `known`: the peer keeps its old copy, and resending
        # identical content would only be rejected again. A new version goes out.
        for name, version in flight.upserts.items():
            if name in bad:
                ts.rejected[name] = (version, bad[name])
            else:
                ts.rejected.pop(name, None)
                ts.confirmed[name] = version
        for name in flight.removals:
            ts.confirmed.pop(name, None)
            ts.rejected.pop(name, None)
        ts.in_flight = None
        if flight.snapshot is not None and flight.complete:
            self._settle(ts, flight.snapshot)
        counts = (len(flight.upserts), len(flight.removals), latency)
        if inp is Input.ACK:
            return ev.Delivered(ts.type_url, flight.nonce, *counts, unknown=unknown)
        return ev.Rejected(ts.type_url, flight.nonce, req.error_detail.message, reported, *counts, unknown=unknown)

    def _resubscribe(self, ts: TypeState, req: discovery_pb2.DeltaDiscoveryRequest, *, initial: bool) -> None:
        if not req.resource_names_subscribe and not req.resource_names_unsubscribe:
            return
        ts.subscription = ts.subscription.apply(req.resource_names_subscribe, req.resource_names_unsubscribe)
        ts.synced_revision = None  # newly covered names must be looked at
        for name in req.resource_names_unsubscribe:
            if not ts.subscription.covers(name):
                ts.known.pop(name, None)
                ts.confirmed.pop(name, None)
                ts.rejected.pop(name, None)
                ts.force.discard(name)
        if not initial:
            # A (re)subscription asks for the resource now, whatever we believe the peer holds; on the first
            # request, initial_resource_versions says what it holds instead.
            for name in req.resource_names_subscribe:
                if name != WILDCARD:
                    ts.known.pop(name, None)

    # -- responses --------------------------------------------------------------------------------------

    def _ordered(self) -> list[TypeState]:
        # Types are only ever added: the order stands until one is.
        size = (len(self.types), len(self.unknown))
        if self._order_size != size:
            ranked = sorted(
                self.types.values(), key=lambda ts: (self._rank.get(ts.type_url, len(self._rank)), ts.type_url)
            )
            self._order, self._order_size = [*ranked, *self.unknown.values()], size
        return self._order

    def _delta(self, ts: TypeState, snapshot: KindSnapshot, *, hold_upserts: bool, hold_removals: bool) -> Delta:
        return compute_delta(
            snapshot,
            ts.known,
            subscription=ts.subscription,
            since_revision=ts.synced_revision if self.config.change_log else None,
            skip=ts.oversized,
            force=ts.force,
            hold_upserts=hold_upserts,
            hold_removals=hold_removals,
            max_bytes=self.config.max_bytes,
        )

    def settled(self, type_url: str, snapshots: Snapshots, *, upserts_only: bool = False) -> bool:
        """Nothing in flight and nothing left to send: the peer holds (or rejected) the type's snapshot.

        `upserts_only` ignores removals still to send: xDS cluster removals wait for listeners and routes,
        which wait for cluster upserts, so counting them here would deadlock the two."""
        ts = self.types[type_url]
        if ts.state is State.AWAITING:
            return False
        pending = self._delta(ts, snapshots.get(type_url), hold_upserts=False, hold_removals=False)
        return not pending.upserts if upserts_only else pending.empty

    def _held(
        self,
        rules: Mapping[str, tuple[str, ...]],
        ts: TypeState,
        snapshots: Snapshots,
        upserts_only: bool,
        memo: dict[str, bool] | None = None,
    ) -> bool:
        for dep in rules.get(ts.type_url, ()):
            if dep not in self.types:
                continue
            settled = memo.get(dep) if memo is not None else None
            if settled is None:
                settled = self.settled(dep, snapshots, upserts_only=upserts_only)
                if memo is not None:
                    memo[dep] = settled
            if not settled:
                return True
        return False

    def respond(self, snapshots: Snapshots | None, now: float) -> list[Event]:
        """Every response due now, in push order (each as a `Sent`), with what happened on the way.

        No snapshots (an Envoy whose Dataplane is not known yet) sends nothing: the peer keeps waiting."""
        if snapshots is None:
            return []
        # Removal holds look at the state before this round's sends; upsert holds at the moment, so
        # listeners wait for the clusters sent just before them.
        memo: dict[str, bool] = {}
        rules = self.config.hold_removals
        hold_removals = (
            {t for t, ts in self.types.items() if self._held(rules, ts, snapshots, False, memo)} if rules else set()
        )
        held_types = self.config.hold_upserts.keys() | rules.keys()
        out: list[Event] = []
        for ts in self._ordered():
            if ts.state is not State.IDLE:
                continue
            # Unknown types have an empty snapshot: after their first response nothing more is sent.
            unknown = ts.type_url in self.unknown
            snapshot = KindSnapshot(ts.type_url) if unknown else snapshots.get(ts.type_url)
            if ts.quiet_on is snapshot and ts.type_url not in held_types:
                continue  # nothing to send last time, and nothing changed since (a held type depends on others)
            hold_upserts = self._held(self.config.hold_upserts, ts, snapshots, True)
            out.extend(self._respond(ts, snapshot, now, snapshots, hold_upserts, ts.type_url in hold_removals))
        return out

    def respond_one(self, snapshot: KindSnapshot, now: float) -> list[Event]:
        """The response due for `snapshot.kind` alone (no holds, no followers), with what happened."""
        ts = self.types.get(snapshot.kind) or self.unknown.get(snapshot.kind)
        if ts is None or ts.state is not State.IDLE:
            return []
        return self._respond(ts, snapshot, now, None, False, False)

    def _respond(
        self,
        ts: TypeState,
        snapshot: KindSnapshot,
        now: float,
        snapshots: Snapshots | None,
        hold_upserts: bool,
        hold_removals: bool,
    ) -> list[Event]:
        if self.config.cursor and not ts.first_sent:
            self._resume_in_step(ts, snapshot)
        delta = self._delta(ts, snapshot, hold_upserts=hold_upserts, hold_removals=hold_removals)
        events: list[Event] = []
        unknown = ts.type_url in self.unknown
        if delta.oversized:
            ts.oversized.update(delta.oversized)
            assert self.config.max_bytes is not None
            sizes = tuple((n, v, snapshot.entries[n].size) for n, v in delta.oversized.items())
            events.append(ev.Oversized(ts.type_url, sizes, self.config.max_bytes))
        in_step = delta.complete and not hold_upserts and not hold_removals
        if delta.empty and (ts.first_sent or not ts.subscription.wildcard or hold_upserts):
            ts.synced_revision = snapshot.revision if in_step else None
            self._settle(ts, snapshot)
            # The same snapshot and state give this same empty delta again (see TypeState.quiet_on).
            ts.quiet_on = snapshot if in_step and not events else None
            return events
        ts.quiet_on = None
        self._nonce += 1
        self.last_update = now
        nonce = str(self._nonce)
        resp = discovery_pb2.DeltaDiscoveryResponse(
            type_url=ts.type_url,
            nonce=nonce,
            resources=[e.wire for e in delta.upserts],
            removed_resources=delta.removals,
        )
        if self.config.version_info:
            resp.system_version_info = str(snapshot.revision)
        if self.config.control_plane_id:
            resp.control_plane.identifier = self.config.control_plane_id
        upserts = {e.name: e.version for e in delta.upserts}
        if ts.confirmed is ts.known:
            ts.confirmed = intern(snapshot.entries, ts.known)
            if ts.confirmed is ts.known:
                ts.confirmed = dict(ts.known)
        ts.known.update(upserts)
        ts.force.difference_update(upserts)
        stamp = (nonce, now)
        ts.sent.update(dict.fromkeys(upserts, stamp))
        for name in delta.removals:
            ts.known.pop(name, None)
            ts.rejected.pop(name, None)
            ts.sent[name] = stamp
        if self.config.cursor and not ts.first_sent:
            # A resuming peer's initial versions: interned against the snapshot, not kept as its strings.
            ts.known = intern(snapshot.entries, ts.known)
        ts.synced_revision = snapshot.revision if in_step else None
        ts.in_flight = InFlight(
            nonce,
            now,
            snapshot.revision,
            delta.complete,
            upserts,
            delta.removals,
            snapshot if self.config.cursor else None,
        )
        ts.state = State.AWAITING
        ts.first_sent = True
        st = ts.stats
        st.responses_sent += 1
        st.resources_sent += len(upserts)
        st.removals_sent += len(delta.removals)
        size = resp.ByteSize()
        st.bytes_sent += size
        st.last_nonce = nonce
        if st.responses_sent == 1 and not delta.complete and self.config.max_bytes is not None:
            held = sum(e.size for e in snapshot.entries.values())
            events.append(ev.InitialStateSplit(ts.type_url, len(snapshot.entries), held, self.config.max_bytes))
        events.append(ev.Sent(ts.type_url, resp, size, delta.complete, unknown))
        if snapshots is not None:
            self._follow(snapshots.followers(ts.type_url), delta.upserts)
        return events

    @staticmethod
    def _resume_in_step(ts: TypeState, snapshot: KindSnapshot) -> None:
        """A resuming peer whose initial versions are exactly `snapshot`'s (after a global restart, every zone
        that missed nothing): `known` and `confirmed` become views on it at once, found by one dict comparison
        in C, so the first delta has nothing to diff (`compute_delta`) and nothing to intern, where a diff
        of 10k names per kind cost milliseconds per zone. Any difference keeps the name-by-name path."""
        if ts.confirmed is ts.known and type(ts.known) is dict and ts.known == snapshot.version_map():
            ts.known, ts.confirmed = Versions(snapshot.entries), Versions(snapshot.entries)

    def _follow(self, followers: Mapping[str, tuple[str, str]], upserts: Iterable[Entry]) -> None:
        if not followers:
            return
        for entry in upserts:
            follower = followers.get(entry.name)
            if follower is None:
                continue
            dep = self.types.get(follower[0])
            # A type not subscribed yet fetches everything on its first subscription anyway.
            if dep is not None:
                dep.force.add(follower[1])
                dep.quiet_on = None

    def _settle(self, ts: TypeState, snapshot: KindSnapshot) -> None:
        """When the peer holds exactly `snapshot` (everything sent ACKed, nothing rejected or too big),
        `known` and `confirmed` become views on it with empty overlays, and `sent` runs over its names."""
        if (
            not self.config.cursor
            or ts.type_url in self.unknown  # answered once, empty: nothing to keep
            or ts.in_flight is not None
            or ts.rejected
            or ts.force
            or ts.synced_revision != snapshot.revision
            or not ts.subscription.wildcard
        ):
            return
        entries = snapshot.entries
        # An oversized resource is offered but never sent: `known` lacks it (or holds an older version).
        if any((e := entries.get(n)) is not None and e.version == v for n, v in ts.oversized.items()):
            return
        if not _on(ts.known, entries):
            ts.known = Versions(entries)
        if not _on(ts.confirmed, entries):
            ts.confirmed = Versions(entries)
        ts.sent = Stamps.settled(entries, ts.sent)

    # -- afterwards -------------------------------------------------------------------------------------

    def forget(self) -> None:
        """Drops this (closed) stream's per-resource state, keeping each type's counters and state: what a
        peer that is gone held is of no use, and a peer can make it as large as its initial versions."""
        for ts in (*self.types.values(), *self.unknown.values()):
            ts.known, ts.confirmed, ts.sent, ts.rejected, ts.oversized = {}, {}, {}, {}, {}
            ts.force = set()
            ts.synced_revision = None
            ts.quiet_on = None
            if ts.in_flight is not None:
                ts.in_flight.upserts, ts.in_flight.removals, ts.in_flight.snapshot = {}, (), None
            nack = ts.stats.last_nack
            if nack is not None:
                nack.names = dict(list(nack.names.items())[:_KEPT_NACK_NAMES])
                nack.error = nack.error[:_KEPT_NACK_TEXT]

    def oversized(self) -> Mapping[str, Mapping[str, str]]:
        return {t: dict(ts.oversized) for t, ts in self.types.items() if ts.oversized}
