"""A settled KDS stream keeps a cursor into the snapshot (meshgate.delta.versions, meshgate.delta.stamps).

`Versions` and `Stamps` behave exactly as the dicts they replace under every operation the engine uses; a
stream with the cursor sends byte-identical responses and answers `kds trace` exactly as one without; and
once settled it stores nothing per resource: empty overlays, one run of stamps per response.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from hypothesis import event, given, settings
from hypothesis import strategies as st

from global_cp.trace import DownEvidence
from meshgate.delta import DeltaStream, Entry, KindSnapshot, PerType, Sent, TypeState
from meshgate.delta import stamps as stamps_module
from meshgate.delta import stream as stream_module
from meshgate.delta.stamps import Stamp, Stamps
from meshgate.delta.versions import Versions, intern
from meshgate.kds.sender import Sender
from meshgate.xds.ads import LISTENER, AdsStream, ProxyId

T = "Thing"
# Names that sort next to each other, including one that is another plus "\0" (where a splice resumes).
NAMES = ["a", "a\0", "ab", "b", "b\0", "b\0\0", "ba", "c", ""]
names = st.sampled_from(NAMES)
versions = st.sampled_from(["v1", "v2", "v3"])


def entry(name: str, value: str) -> Entry:
    return Entry.pack(name, wrappers_pb2.StringValue(value=value))


def entries_of(named: dict[str, str]) -> dict[str, Entry]:
    return {n: entry(n, v) for n, v in named.items()}


# --- Versions: a dict -----------------------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(st.just("set"), names, versions),
        st.tuples(st.just("del"), names, st.none()),
        st.tuples(st.just("pop"), names, st.none()),
        st.tuples(st.just("update"), st.dictionaries(names, versions, max_size=3), st.none()),
    ),
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(base=st.dictionaries(names, versions), ops=ops)
def test_versions_behave_as_a_dict(base: dict[str, str], ops: list[tuple[str, object, str | None]]) -> None:
    entries = entries_of(base)
    view = Versions(entries)
    model = {n: e.version for n, e in entries.items()}
    for op, arg, version in ops:
        if op == "set":
            assert isinstance(arg, str)
            assert version is not None
            # The versions the engine writes are the snapshot's (its entry) or another one.
            value = entries[arg].version if arg in entries and version == "v1" else version
            view[arg] = model[arg] = value
        elif op == "del":
            assert isinstance(arg, str)
            if arg in model:
                del view[arg], model[arg]
            else:
                with pytest.raises(KeyError):
                    del view[arg]
        elif op == "pop":
            assert isinstance(arg, str)
            assert view.pop(arg, None) == model.pop(arg, None)
        else:
            assert isinstance(arg, dict)
            view.update(arg)
            model.update(arg)
        assert len(view) == len(model)
        assert dict(view) == model
        assert view == model
        assert set(view) == set(model)
        assert sorted(view.items()) == sorted(model.items())
        for name in NAMES:
            assert (name in view) == (name in model)
            assert view.get(name) == model.get(name)
    # What equals the base is not stored.
    differ = {n for n in entries.keys() | model.keys() if model.get(n) != base_version(entries, n)}
    assert view.overlay_size == len(differ)


def base_version(entries: dict[str, Entry], name: str) -> str | None:
    e = entries.get(name)
    return e.version if e is not None else None


@settings(max_examples=300, deadline=None)
@given(base=st.dictionaries(names, versions), held=st.dictionaries(names, versions))
def test_interning_keeps_the_versions_and_stores_at_most_half(base: dict[str, str], held: dict[str, str]) -> None:
    entries = entries_of(base)
    peer = {n: entries[n].version if n in entries and v == "v1" else v for n, v in held.items()}
    interned = intern(entries, dict(peer))
    assert dict(interned) == peer
    if isinstance(interned, Versions):
        assert interned.overlay_size * 2 <= len(peer)


# --- Stamps: a dict --------------------------------------------------------------------------------------


@contextmanager
def slack(value: int) -> Iterator[None]:
    saved, stamps_module._SLACK = stamps_module._SLACK, value
    try:
        yield
    finally:
        stamps_module._SLACK = saved


stamp_values = st.sampled_from([("1", 1.0), ("2", 2.0), ("3", 3.0), ("4", 4.0)])
rounds = st.lists(
    st.tuples(st.dictionaries(names, stamp_values, max_size=4), st.sets(names)),
    max_size=8,
)


@pytest.mark.parametrize("rebuild_after", [0, 256])
@settings(max_examples=200, deadline=None)
@given(members=st.sets(names), first=st.dictionaries(names, stamp_values), rounds=rounds)
def test_stamps_behave_as_a_dict(
    rebuild_after: int,
    members: set[str],
    first: dict[str, Stamp],
    rounds: list[tuple[dict[str, Stamp], set[str]]],
) -> None:
    """Settled onto any names, then stamped and settled again onto names that joined or left only by being
    stamped (sent, or sent a removal: the engine's rule), the stamps read exactly as a dict of every stamp
    ever written, the latest one per name."""
    with slack(rebuild_after):
        model = dict(first)
        stamps = Stamps.settled(dict.fromkeys(members), first)
        for sent, dropped in rounds:
            stamps.update(sent)
            model.update(sent)
            assert dict(stamps) == model
            members = (members | sent.keys()) - (dropped & sent.keys())
            stamps = Stamps.settled(dict.fromkeys(members), stamps)
            assert dict(stamps) == model
            assert len(stamps) == len(model)
            for name in NAMES:
                assert stamps.get(name) == model.get(name)
                assert (name in stamps) == (name in model)
            # Only the stamps of names outside the members stay in the overlay.
            assert stamps.overlay_size == len(model.keys() - members)


# --- streams: the cursor changes nothing on the wire or in `kds trace` --------------------------------------


def req(
    nonce: str = "", error: str = "", initial: dict[str, str] | None = None, rejected: tuple[str, ...] = ()
) -> discovery_pb2.DeltaDiscoveryRequest:
    r = discovery_pb2.DeltaDiscoveryRequest(type_url=T, response_nonce=nonce, initial_resource_versions=initial or {})
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        bad = error_details_pb2.BadRequest()
        for name in rejected:
            bad.field_violations.add(field=name, description="no")
        r.error_detail.details.add().Pack(bad)
    return r


def held(ts: TypeState) -> tuple[object, ...]:
    return (dict(ts.known), dict(ts.confirmed), dict(ts.sent), dict(ts.rejected), dict(ts.oversized))


def pump(streams: tuple[DeltaStream, DeltaStream], snap: KindSnapshot, refuse: set[str], now: float) -> int:
    """Sends and answers until nothing is due, the two streams in lockstep; returns the responses sent."""
    cursor, plain = streams
    for count in range(100):
        out = []
        for stream in streams:
            out.append([e.response for e in stream.respond(PerType(lambda _: snap), now) if isinstance(e, Sent)])
        assert [[r.SerializeToString(deterministic=True) for r in o] for o in out] == [
            [r.SerializeToString(deterministic=True) for r in out[1]]
        ] * 2
        if not out[0]:
            return count
        (resp,) = out[0]
        bad = tuple(sorted({r.name for r in resp.resources} & refuse))
        answer = req(nonce=resp.nonce, error="no" if bad else "", rejected=bad)
        for stream in streams:
            stream.receive(answer, now + 0.5)
        assert held(cursor.types[T]) == held(plain.types[T])
        for name in NAMES:
            assert DownEvidence.of(cursor.types[T], name) == DownEvidence.of(plain.types[T], name)
    raise AssertionError("never settled")


held_states = st.dictionaries(names, versions)


@settings(max_examples=150, deadline=None)
@given(
    before=held_states,
    steps=st.lists(st.tuples(held_states, st.sets(names, max_size=2)), min_size=1, max_size=5),
    budget=st.sampled_from([1_000_000, 120, 300]),
)
def test_a_cursor_stream_sends_and_reports_exactly_as_one_without(
    before: dict[str, str], steps: list[tuple[dict[str, str], set[str]]], budget: int
) -> None:
    """Resuming from any state, through snapshots, NACKs and size budgets (oversized ones too), the stream
    with a cursor sends the same bytes and holds the same versions, stamps and rejections as one with
    plain dicts; `kds trace`'s evidence for every name is the same. Once all is ACKed it is settled."""
    cursor = Sender([T], max_bytes=budget)
    plain = DeltaStream(dataclasses.replace(cursor.config, cursor=False))
    streams = (cursor, plain)
    initial = {n: e.version for n, e in entries_of(before).items()}
    for stream in streams:
        stream.receive(req(initial=initial), 0.0)
    snap = KindSnapshot(T)
    for now, (after, refuse) in enumerate(steps, start=1):
        snap = snap.replace_all(entry(n, v) for n, v in after.items())
        pump(streams, snap, refuse, float(now))
    fixed = snap.evolve({n: entry(n, "fixed") for n in cursor.types[T].rejected})
    pump(streams, fixed, set(), 10.0)
    ts = cursor.types[T]
    event("settled" if not ts.rejected and not ts.oversized else "not settled")
    if not ts.rejected and not ts.oversized:
        assert isinstance(ts.known, Versions)
        assert isinstance(ts.confirmed, Versions)
        assert (ts.known.overlay_size, ts.confirmed.overlay_size) == (0, 0)
        assert ts.known.base is fixed.entries
        assert isinstance(ts.sent, Stamps)
        assert ts.sent.overlay_size == len(dict(ts.sent).keys() - fixed.entries.keys())


def wide(count: int, value: str = "x") -> list[Entry]:
    return [entry(f"route-{i:05}.default", value * 40) for i in range(count)]


def settle(stream: Sender, snap: KindSnapshot, now: float) -> int:
    sent = 0
    while responses := [e.response for e in stream.respond(PerType(lambda _: snap), now) if isinstance(e, Sent)]:
        (resp,) = responses
        stream.receive(req(nonce=resp.nonce), now)
        sent += 1
    return sent


def test_a_settled_stream_holds_nothing_per_resource_and_trace_still_answers() -> None:
    """2000 resources in several responses: once ACKed, no overlay, one stamp run per response; a change
    adds one name's run and removes it again from the overlay; a resume holding all but one name is settled
    after one response, with the request's versions let go."""
    stream = Sender([T], max_bytes=30_000)
    stream.receive(req(), 0.0)
    snap = KindSnapshot(T).replace_all(wide(2000))
    responses = settle(stream, snap, 1.0)
    assert responses > 2
    ts = stream.types[T]
    assert isinstance(ts.known, Versions)
    assert isinstance(ts.confirmed, Versions)
    assert isinstance(ts.sent, Stamps)
    assert (ts.known.overlay_size, ts.confirmed.overlay_size, ts.sent.overlay_size) == (0, 0, 0)
    assert ts.sent.runs == 1 + responses  # the run before the first name (no stamp), then one per response
    assert len(ts.known) == len(ts.confirmed) == len(ts.sent) == 2000
    first, last = "route-00000.default", "route-01999.default"
    assert DownEvidence.of(ts, first) == DownEvidence(snap.entries[first].version, None, ("1", 1.0), False)
    assert DownEvidence.of(ts, last).sent == (str(responses), 1.0)

    changed = snap.evolve({"route-00100.default": entry("route-00100.default", "new"), last: None})
    assert settle(stream, changed, 2.0) == 1
    assert (ts.known.overlay_size, ts.confirmed.overlay_size) == (0, 0)
    assert ts.sent.overlay_size == 1  # the removal's stamp, for the name the snapshot no longer has
    assert ts.sent.runs <= 1 + responses + 2  # the changed name's run, and where the run it split resumes
    nonce = str(responses + 1)
    assert DownEvidence.of(ts, "route-00100.default").sent == (nonce, 2.0)
    assert DownEvidence.of(ts, "route-00101.default").sent == ("1", 1.0)
    assert DownEvidence.of(ts, last) == DownEvidence(None, None, (nonce, 2.0), False)

    resumed = Sender([T], max_bytes=30_000)
    peer = {n: e.version for n, e in snap.entries.items()}
    resumed.receive(req(initial=peer), 3.0)
    assert settle(resumed, changed, 3.0) == 1
    rs = resumed.types[T]
    assert isinstance(rs.known, Versions)
    assert isinstance(rs.confirmed, Versions)
    assert isinstance(rs.sent, Stamps)
    assert (rs.known.overlay_size, rs.confirmed.overlay_size, rs.sent.overlay_size) == (0, 0, 1)
    assert rs.sent.runs <= 4
    assert dict(rs.sent) == {"route-00100.default": ("1", 3.0), last: ("1", 3.0)}
    assert DownEvidence.of(rs, first) == DownEvidence(snap.entries[first].version, None, None, False)


def test_a_resume_in_step_with_the_snapshot_settles_without_a_diff(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zone resuming with exactly the snapshot's versions (a global restart that changed nothing) gets one
    empty response, and its tables are views on the snapshot before any name is compared one by one; a zone
    that differs by one version gets that one resource, as before."""
    snap = KindSnapshot(T).replace_all(wide(2000))
    held = {n: e.version for n, e in snap.entries.items()}
    compared: list[object] = []
    original_intern = intern

    def counting_intern(entries: object, versions: dict[str, str]) -> object:
        compared.append(versions)
        return original_intern(entries, versions)  # type: ignore[arg-type]

    monkeypatch.setattr(stream_module, "intern", counting_intern)
    resumed = Sender([T], max_bytes=30_000)
    resumed.receive(req(initial=held), 1.0)
    (sent,) = [e for e in resumed.respond(PerType(lambda _: snap), 1.0) if isinstance(e, Sent)]
    assert (len(sent.response.resources), len(sent.response.removed_resources)) == (0, 0)
    ts = resumed.types[T]
    assert isinstance(ts.known, Versions)
    assert isinstance(ts.confirmed, Versions)
    assert ts.known.base is snap.entries
    assert ts.confirmed is not ts.known
    assert (ts.known.overlay_size, ts.confirmed.overlay_size) == (0, 0)
    assert all(isinstance(v, Versions) for v in compared)  # nothing interned name by name
    resumed.receive(req(nonce=sent.response.nonce), 1.0)
    assert settle(resumed, snap, 2.0) == 0

    stale = Sender([T], max_bytes=30_000)
    stale.receive(req(initial={**held, "route-00007.default": "old"}), 1.0)
    (sent,) = [e for e in stale.respond(PerType(lambda _: snap), 1.0) if isinstance(e, Sent)]
    assert [r.name for r in sent.response.resources] == ["route-00007.default"]


def test_ads_keeps_plain_dicts() -> None:
    """Envoy's snapshots have no revision chain: the ADS stream never settles onto one."""
    stream = AdsStream(ProxyId("default", "gw"))
    assert not stream.config.cursor
    stream.receive(discovery_pb2.DeltaDiscoveryRequest(type_url=LISTENER), 0.0)
    ts = stream.types[LISTENER]
    assert type(ts.known) is dict
    assert type(ts.confirmed) is dict
    assert type(ts.sent) is dict
