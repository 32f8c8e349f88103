"""The delta engine (meshgate.delta) under both of its configurations, KDS and Envoy's delta ADS.

Snapshots and change logs, the pure `compute_delta`, and stream properties: any state converges to any
state, under any sequence of ACKs and NACKs, resuming from what the peer reports; every (state, input) pair
outside the transition table is a ProtocolError. Protocol-specific behaviour (KDS unknown kinds and node,
ADS ordering and subscriptions) is tested in test_kds_core.py and test_xds_ads_core.py.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.delta import (
    Delivered,
    DeltaStream,
    Entry,
    Input,
    KindSnapshot,
    PerType,
    ProtocolError,
    Rejected,
    Sent,
    State,
    Subscribed,
    Subscription,
    TypeState,
    Updated,
    classify,
    compute_delta,
    content_hash,
)
from meshgate.delta.state import TRANSITIONS
from meshgate.kds.sender import Sender
from meshgate.xds.ads import LISTENER, AdsStream, ProxyId

T = "Thing"


def entry(name: str, value: str) -> Entry:
    return Entry.pack(name, wrappers_pb2.StringValue(value=value))


def snapshot(kind: str, named: dict[str, str], revision: int = 1) -> KindSnapshot:
    return KindSnapshot.of(kind, (entry(n, v) for n, v in named.items()), revision)


def req(
    kind: str,
    *,
    nonce: str = "",
    error: str = "",
    initial: dict[str, str] | None = None,
    subscribe: tuple[str, ...] = (),
    rejected: tuple[str, ...] = (),
) -> discovery_pb2.DeltaDiscoveryRequest:
    r = discovery_pb2.DeltaDiscoveryRequest(
        type_url=kind, response_nonce=nonce, initial_resource_versions=initial or {}, resource_names_subscribe=subscribe
    )
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        if rejected:
            bad = error_details_pb2.BadRequest()
            for name in rejected:
                bad.field_violations.add(field=name, description="no")
            r.error_detail.details.add().Pack(bad)
    return r


# The two configurations, as one stream over one type: (make a stream, the type, its first request).
def kds(max_bytes: int = 1_000_000) -> tuple[DeltaStream, str]:
    return Sender([T], max_bytes=max_bytes), T


def ads() -> tuple[DeltaStream, str]:
    # Listeners are a legacy wildcard type: a first request naming nothing subscribes to everything.
    return AdsStream(ProxyId("default", "gw")), LISTENER


CONFIGS: dict[str, Callable[[], tuple[DeltaStream, str]]] = {"kds": kds, "ads": ads}


# --- content hash, snapshots and deltas ------------------------------------------------------------


def test_the_content_hash_is_the_one_on_the_wire() -> None:
    """blake2b, 10 bytes, of the deterministic serialization: a change would re-send everything to every peer."""
    e = entry("a", "x")
    assert e.version == content_hash(wrappers_pb2.StringValue(value="x")) == "bfb40a0c21469f5b59b6"
    assert e.version != entry("a", "y").version


def test_snapshot_evolve_keeps_change_log() -> None:
    s1 = snapshot(T, {"a": "1", "b": "1"})
    s2 = s1.replace_all([entry("a", "new"), entry("b", "1")])
    assert s2.revision == s1.revision + 1
    assert s2.changed_since(s1.revision) == frozenset({"a"})
    assert s2.replace_all([entry("a", "new"), entry("b", "1")]) is s2  # nothing changed
    s3 = s2.evolve({"b": None})
    assert s3.changed_since(s1.revision) == frozenset({"a", "b"})
    assert s3.changed_since(s3.revision) == frozenset()
    assert s3.changed_since(0) is None  # older than the log: caller must fully diff


def test_delta_from_initial_versions_sends_only_what_changed() -> None:
    snap = snapshot(T, {"a": "1", "b": "changed", "c": "1"})
    old = snapshot(T, {"a": "1", "b": "1", "gone": "1"})
    d = compute_delta(snap, old.versions())
    assert [e.name for e in d.upserts] == ["b", "c"]
    assert d.removals == ("gone",)
    assert d.complete


def test_delta_splits_by_size_and_names_oversized() -> None:
    snap = snapshot(T, {"big": "x" * 5000, **{f"s{i}": "y" * 100 for i in range(20)}})
    d = compute_delta(snap, {}, max_bytes=1000)
    assert d.oversized == {"big": snap.entries["big"].version}
    assert not d.complete
    assert 0 < len(d.upserts) < 20
    assert sum(e.size for e in d.upserts) <= 1000


def test_compute_delta_is_pure_and_honours_subscription_force_and_holds() -> None:
    snap = snapshot(T, {"a": "1", "b": "2"})
    known = {"a": snap.entries["a"].version, "gone": "v"}
    d = compute_delta(snap, known)
    assert [e.name for e in d.upserts] == ["b"]
    assert d.removals == ("gone",)
    assert compute_delta(snap, known, hold_upserts=True).upserts == ()
    assert compute_delta(snap, known, hold_removals=True).removals == ()
    assert [e.name for e in compute_delta(snap, known, force={"a"}).upserts] == ["a", "b"]
    assert compute_delta(snap, known, subscription=Subscription(names=frozenset({"a"}))).empty
    assert compute_delta(snap, {}, skip={"a": snap.entries["a"].version}).upserts == (snap.entries["b"],)


def test_a_change_log_delta_examines_only_what_changed_and_what_is_forced() -> None:
    s1 = snapshot(T, {"a": "1", "b": "1"})
    s2 = s1.evolve({"b": entry("b", "2")})
    stale = {"a": "not what the peer holds"}  # unchanged since revision 1: not looked at
    assert [e.name for e in compute_delta(s2, stale, since_revision=1).upserts] == ["b"]
    assert [e.name for e in compute_delta(s2, stale, since_revision=1, force={"a"}).upserts] == ["a", "b"]
    assert [e.name for e in compute_delta(s2, stale, since_revision=0).upserts] == ["a", "b"]  # log too short


def test_a_stream_woken_by_one_type_s_change_computes_only_that_type(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every KDS stream wakes at every change: the types it already found nothing to send of, at the very
    snapshot still offered and with no request since, are not computed again, and still send when they change."""
    import meshgate.delta.stream as stream_module

    kinds = [f"K{i}" for i in range(5)]
    snaps = {k: snapshot(k, {"a": "1"}) for k in kinds}
    sender = Sender(kinds)
    for k in kinds:
        sender.receive(req(k), 0)

    def converge() -> list[str]:
        sent = []
        while out := [e for e in sender.respond(PerType(snaps.__getitem__), 0) if isinstance(e, Sent)]:
            for e in out:
                sent.append(e.type_url)
                sender.receive(req(e.type_url, nonce=e.response.nonce), 0)
        return sent

    assert converge() == kinds
    computed: list[str] = []
    real = compute_delta

    def counted(snap: KindSnapshot, *args: Any, **kwargs: Any) -> Any:
        computed.append(snap.kind)
        return real(snap, *args, **kwargs)

    monkeypatch.setattr(stream_module, "compute_delta", counted)
    assert converge() == []
    assert computed == []
    snaps["K3"] = snaps["K3"].evolve({"a": entry("a", "2")})
    assert converge() == ["K3"]
    assert set(computed) == {"K3"}  # the send, and the rounds after its ACK
    computed.clear()
    assert converge() == []
    assert computed == []


values = st.sampled_from(["a", "b", "c"])
states = st.dictionaries(st.sampled_from([f"r{i}" for i in range(12)]), values, max_size=12)


@settings(max_examples=200, deadline=None)
@given(before=states, after=states, chunk=st.integers(min_value=90, max_value=600))
def test_delta_converges_any_state_to_any_state(before: dict[str, str], after: dict[str, str], chunk: int) -> None:
    """Applying successive deltas to a peer holding `before` always ends at exactly `after`."""
    snap = snapshot(T, after)
    peer = snapshot(T, before).versions()
    for _ in range(100):
        d = compute_delta(snap, peer, max_bytes=chunk)
        assert not d.oversized
        for e in d.upserts:
            peer[e.name] = e.version
        for n in d.removals:
            del peer[n]
        if d.complete:
            break
    assert peer == snap.versions()


# --- streams under both configurations ---------------------------------------------------------------


def run(
    stream: DeltaStream,
    kind: str,
    snap: KindSnapshot,
    peer: dict[str, str],
    verdicts: Callable[[list[str]], set[str]],
    now: float,
) -> list[Rejected]:
    """Pumps until nothing is due: the peer applies each response but what `verdicts` rejects, and answers."""
    rejections: list[Rejected] = []
    for _ in range(200):
        sent = [e for e in stream.respond(PerType(lambda _: snap), now) if isinstance(e, Sent)]
        if not sent:
            return rejections
        (resp,) = (e.response for e in sent)
        names = [r.name for r in resp.resources]
        bad = verdicts(names) & set(names)
        for r in resp.resources:
            if r.name not in bad:
                peer[r.name] = r.version
        for name in resp.removed_resources:
            peer.pop(name, None)
        if bad:
            # Envoy's message names them as "NAME: reason"; a meshgate zone's BadRequest details do too.
            error = "Error adding/updating: " + ", ".join(f"{n}: no" for n in sorted(bad))
            (event,) = stream.receive(req(kind, nonce=resp.nonce, error=error, rejected=tuple(sorted(bad))), now)
            assert isinstance(event, Rejected)
            assert set(event.names) == bad
            rejections.append(event)
        else:
            (event,) = stream.receive(req(kind, nonce=resp.nonce), now)
            assert isinstance(event, Delivered)
            assert (event.upserts, event.removals) == (len(resp.resources), len(resp.removed_resources))
    raise AssertionError("the stream never settled")


@pytest.mark.parametrize("config", sorted(CONFIGS))
@settings(max_examples=60, deadline=None)
@given(
    before=states,
    middle=states,
    after=states,
    refuse=st.sets(st.sampled_from([f"r{i}" for i in range(12)]), max_size=4),
)
def test_any_state_converges_to_any_state_under_any_acks_and_nacks(
    config: str, before: dict[str, str], middle: dict[str, str], after: dict[str, str], refuse: set[str]
) -> None:
    """A peer holding `before` resumes (initial_resource_versions); the snapshot moves to `middle` and then to
    `after` while the peer NACKs the names in `refuse`. The peer ends holding `after` except the refused
    names (whose old copy it keeps); the stream's `confirmed` is exactly what it holds, `rejected` exactly
    what it refused, and a refused version is never sent twice. A new version of a refused name goes out."""
    stream, kind = CONFIGS[config]()
    peer = dict(snapshot(kind, before).versions())
    (event,) = stream.receive(req(kind, initial=peer), 0.0)
    assert isinstance(event, Subscribed)
    assert event.initial_versions == len(peer)
    snap = KindSnapshot(kind).replace_all(entry(n, v) for n, v in middle.items())
    rejections = run(stream, kind, snap, peer, lambda _: refuse, 1.0)
    snap = snap.replace_all(entry(n, v) for n, v in after.items())
    rejections += run(stream, kind, snap, peer, lambda _: refuse, 2.0)
    ts = stream.types[kind]
    wanted = snap.versions()
    assert {n: v for n, v in peer.items() if n not in refuse} == {n: v for n, v in wanted.items() if n not in refuse}
    assert ts.confirmed == peer
    assert {n: v for n, (v, _) in ts.rejected.items()} == {n: v for n, v in wanted.items() if n in ts.rejected}
    assert set(ts.rejected) <= refuse
    assert all(set(r.names) <= refuse for r in rejections)
    # The same content is never offered again; a new version is, and then it is accepted.
    assert run(stream, kind, snap, peer, lambda _: set(), 3.0) == []
    fixed = snap.evolve({n: entry(n, "fixed") for n in ts.rejected})
    run(stream, kind, fixed, peer, lambda _: set(), 4.0)
    assert peer == fixed.versions()
    assert ts.rejected == {}
    assert ts.confirmed == peer
    st_ = ts.stats
    assert st_.acks + st_.nacks == st_.responses_sent
    assert st_.nacks == len(rejections)


@settings(max_examples=60, deadline=None)
@given(before=states, after=states, chunk=st.integers(min_value=90, max_value=600))
def test_kds_splits_a_large_state_and_still_converges(
    before: dict[str, str], after: dict[str, str], chunk: int
) -> None:
    """Under a size budget the KDS configuration sends the state in several responses, in name order."""
    stream, kind = kds(max_bytes=chunk)
    peer = dict(snapshot(kind, before).versions())
    stream.receive(req(kind, initial=peer), 0.0)
    snap = KindSnapshot(kind).replace_all(entry(n, v) for n, v in after.items())
    run(stream, kind, snap, peer, lambda _: set(), 1.0)
    assert peer == snap.versions()


# --- the transition table ----------------------------------------------------------------------------


def requests_for(kind: str, nonce: str) -> dict[Input, discovery_pb2.DeltaDiscoveryRequest]:
    return {
        Input.SUBSCRIBE: req(kind),
        Input.UPDATE: req(kind, subscribe=("x",)),
        Input.ACK: req(kind, nonce=nonce),
        Input.NACK: req(kind, nonce=nonce, error="bad"),
    }


@pytest.mark.parametrize(("config", "state", "inp"), list(itertools.product(sorted(CONFIGS), State, Input)))
def test_every_state_input_pair_is_a_transition_or_a_protocol_error(config: str, state: State, inp: Input) -> None:
    stream, kind = CONFIGS[config]()
    ts = stream.types[kind] = TypeState(kind, state=state)
    nonce = "1"
    if state is State.AWAITING:
        ts.state = State.IDLE
        ts.subscription = Subscription(wildcard=True)
        (sent,) = [e for e in stream.respond(PerType(lambda _: snapshot(kind, {"a": "1"})), 0.0) if isinstance(e, Sent)]
        nonce = sent.nonce
    request = requests_for(kind, nonce)[inp]
    updates = config == "ads"
    if classify(request, state, updates=updates) is not inp:
        # SUBSCRIBE and UPDATE differ by state alone; KDS has no UPDATE: a second subscription is a
        # SUBSCRIBE outside the table.
        assert inp in (Input.SUBSCRIBE, Input.UPDATE)
        if not updates and state is not State.UNSUBSCRIBED:
            with pytest.raises(ProtocolError, match="subscribe"):
                stream.receive(request, 1.0)
        return
    if (state, inp) in TRANSITIONS:
        (event,) = stream.receive(request, 1.0)
        assert ts.state is TRANSITIONS[(state, inp)]
        expected = {
            Input.SUBSCRIBE: Subscribed,
            Input.UPDATE: Updated,
            Input.ACK: Delivered,
            Input.NACK: Rejected,
        }[inp]
        assert isinstance(event, expected)
    else:
        with pytest.raises(ProtocolError, match=inp.value):
            stream.receive(request, 1.0)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_an_answer_naming_another_nonce_is_a_protocol_error(config: str) -> None:
    stream, kind = CONFIGS[config]()
    stream.receive(req(kind), 0.0)
    assert stream.respond(PerType(lambda _: snapshot(kind, {"a": "1"})), 0.0)
    with pytest.raises(ProtocolError, match="names nonce '99'"):
        stream.receive(req(kind, nonce="99"), 0.0)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_forget_keeps_counters_and_drops_what_the_peer_held(config: str) -> None:
    stream, kind = CONFIGS[config]()
    stream.receive(req(kind, initial={"a": "old"}), 0.0)
    (sent,) = [e for e in stream.respond(PerType(lambda _: snapshot(kind, {"a": "1"})), 0.0) if isinstance(e, Sent)]
    stream.receive(req(kind, nonce=sent.nonce, error="a: no", rejected=("a",)), 1.0)
    stream.forget()
    ts = stream.types[kind]
    assert (ts.known, ts.confirmed, ts.sent, ts.rejected) == ({}, {}, {}, {})
    assert (ts.stats.responses_sent, ts.stats.nacks) == (1, 1)
    assert ts.stats.last_nack is not None
    assert list(ts.stats.last_nack.names) == ["a"]
