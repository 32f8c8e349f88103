"""The sans-IO KDS core: naming, versions and both ends of a stream, without sockets.

The kinds here are made up (spec = google.protobuf.Struct) so these tests exercise only the protocol
machinery; tests/unit/test_kds_kinds.py runs the same machinery over the real kinds.
"""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.delta import Entry, KindSnapshot, Rejected, Subscribed
from meshgate.kds.envelope import EnvelopeError, content_version, from_wire, to_envelope, to_wire
from meshgate.kds.errors import MalformedMessage
from meshgate.kds.limits import (
    MAX_UNKNOWN_KINDS,
    MAX_VERSION_LENGTH,
    MAX_WIRE_NAME_LENGTH,
    check_request,
    check_response,
)
from meshgate.kds.naming import hashed_name, wire_name
from meshgate.kds.node import kds_node, node_features, parse_features
from meshgate.kds.receiver import Receiver
from meshgate.kds.sender import ProtocolError, Sender, State, rejected_names
from meshgate.testing import factory
from tests.support.thing import THING, entries, no_bad, thing

# --- naming and versions -------------------------------------------------------------------------


def test_hashed_name_matches_kuma() -> None:
    # Expected values from Kuma's own tests (pkg/kds/context and test/e2e/federation, v2.7.29).
    assert hashed_name("", "foo") == "foo-zxw6c95d42zfz9cc"


def test_wire_name_has_trailing_dot_for_global_kinds() -> None:
    assert wire_name("edge", "default") == "edge.default"
    assert wire_name("default", "") == "default."


def test_version_is_content_hash_independent_of_store_version() -> None:
    a = thing("a").with_meta(version="1")
    b = thing("a").with_meta(version="7")
    assert to_wire(a).version == to_wire(b).version
    assert to_wire(a).version != to_wire(thing("a", "other")).version
    assert to_wire(a).version != to_wire(thing("a", **{"kuma.io/origin": "global"})).version
    env = to_envelope(a)
    env.meta.version = "42"
    assert content_version(env) == to_wire(a).version


def test_version_does_not_depend_on_map_insertion_order() -> None:
    """Equal content, equal version, whatever order a map's keys were set in: a zone computes the versions it
    reports on resume from its own store, and a mismatch would make the global send everything again."""
    keys = [f"k{i}" for i in range(8)]
    wires = []
    for order in (keys, keys[::-1], keys[3:] + keys[:3]):
        doc = factory.dataplane("web-1", "web")
        doc["networking"]["inbound"][0]["tags"] = {"kuma.io/service": "web", **dict.fromkeys(order, "v")}
        labels = dict.fromkeys(order, "l")
        wires.append(to_wire(factory.resource(doc), labels))
    assert len({w.version for w in wires}) == 1
    assert len({w.resource.value for w in wires}) == 1  # the bytes on the wire too


def test_from_wire_round_trips_and_rejects_wrong_types() -> None:
    r = thing("a", origin="x")
    back = from_wire(THING, to_wire(r))
    assert back.key == r.key
    assert dict(back.meta.labels) == {"origin": "x"}
    assert back.spec == r.spec
    bad = to_wire(r)
    bad.name = "other.default"
    with pytest.raises(EnvelopeError, match="does not match"):
        from_wire(THING, bad)
    wrong = discovery_pb2.Resource(name="a.default")
    wrong.resource.Pack(struct_pb2.Struct())
    with pytest.raises(EnvelopeError, match="expected a KumaResource"):
        from_wire(THING, wrong)


# --- the sender state machine (snapshots, deltas, the table: tests/unit/test_delta_engine.py) ---------------


def subscribe(kind: str = "Thing", **initial: str) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=kind, resource_names_subscribe=["*"], initial_resource_versions=initial
    )


def ack(resp: discovery_pb2.DeltaDiscoveryResponse) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce)


def test_sender_one_response_in_flight_then_delta_after_ack() -> None:
    s = Sender(["Thing"])
    snap = KindSnapshot.of("Thing", entries(thing("a"), thing("b")))
    assert s.next_response(snap, 0.0) is None  # not subscribed yet
    s.receive(subscribe(), 0.0)
    r1 = s.next_response(snap, 1.0)
    assert r1 is not None
    assert {r.name for r in r1.resources} == {"a.default", "b.default"}
    snap2 = snap.evolve({"a.default": Entry.of(to_wire(thing("a", "new")))})
    assert s.next_response(snap2, 1.5) is None  # one in flight per kind
    assert s.kinds["Thing"].in_flight_since == 1.0
    s.receive(ack(r1), 2.0)
    assert s.kinds["Thing"].stats.last_ack_latency == 1.0
    r2 = s.next_response(snap2, 3.0)
    assert r2 is not None
    assert [r.name for r in r2.resources] == ["a.default"]
    s.receive(ack(r2), 3.0)
    assert s.next_response(snap2, 4.0) is None  # converged
    st_ = s.kinds["Thing"].stats
    assert (st_.responses_sent, st_.acks, st_.nacks) == (2, 2, 0)


def test_sender_first_response_is_sent_even_when_empty() -> None:
    s = Sender(["Thing"])
    snap = KindSnapshot.of("Thing", entries(thing("a")))
    s.receive(subscribe(**snap.versions()), 0.0)
    r = s.next_response(snap, 0.0)
    assert r is not None
    assert not r.resources
    assert not r.removed_resources


@pytest.mark.parametrize(
    ("requests", "match"),
    [
        (["ack"], "ack for Thing in state unsubscribed"),
        (["sub", "sub"], "subscribe for Thing in state idle"),
        (["sub", "ack"], "ack for Thing in state idle"),
        (["sub", "send", "stale"], "names nonce '999'"),
        (["other-ack"], "ack for kind 'Other', which this stream never subscribed to"),
        (["absurd"], "is not a kind name"),
    ],
)
def test_sender_protocol_errors(requests: list[str], match: str) -> None:
    s = Sender(["Thing"])
    snap = KindSnapshot.of("Thing", entries(thing("a")))

    def step(name: str) -> None:
        if name == "sub":
            s.receive(subscribe(), 0)
        elif name == "send":
            assert s.next_response(snap, 0) is not None
        elif name == "ack":
            s.receive(discovery_pb2.DeltaDiscoveryRequest(type_url="Thing", response_nonce="1"), 0)
        elif name == "stale":
            s.receive(discovery_pb2.DeltaDiscoveryRequest(type_url="Thing", response_nonce="999"), 0)
        elif name == "other-ack":
            s.receive(discovery_pb2.DeltaDiscoveryRequest(type_url="Other", response_nonce="1"), 0)
        elif name == "absurd":
            s.receive(subscribe("Nope" * 300), 0)

    for name in requests[:-1]:
        step(name)
    with pytest.raises(ProtocolError, match=match):
        step(requests[-1])


def test_sender_answers_an_unknown_kind_once_empty_and_keeps_the_stream() -> None:
    """A Kuma 2.7 zone subscribes to 36 kinds, most of which meshgate does not serve (Kuma's cache answers a
    type it has nothing for with an empty response, and pkg/kds/mux/client.go:123-130 restarts the whole
    client on any stream error): an unknown kind gets one empty response, its ACK is accepted, and after
    that nothing more is sent for it, while the served kind goes on as before."""
    s = Sender(["Thing"])
    snap = KindSnapshot.of("Thing", entries(thing("a")))
    s.receive(subscribe("Thing"), 0.0)
    (event,) = s.receive(subscribe("MeshTimeout"), 0.0)
    assert isinstance(event, Subscribed)
    assert event.unknown
    assert "MeshTimeout" not in s.kinds
    (empty,) = s.unknown_responses(1.0)
    assert (empty.type_url, list(empty.resources), list(empty.removed_resources)) == ("MeshTimeout", [], [])
    assert empty.nonce
    assert s.unknown_responses(1.5) == []  # in flight: nothing more until the ACK
    s.receive(ack(empty), 2.0)
    assert s.unknown["MeshTimeout"].state is State.IDLE
    assert s.unknown_responses(3.0) == []  # answered: never sent again
    r = s.next_response(snap, 3.0)
    assert r is not None
    assert [x.name for x in r.resources] == ["a.default"]
    with pytest.raises(ProtocolError, match="subscribe for MeshTimeout in state idle"):
        s.receive(subscribe("MeshTimeout"), 4.0)


def test_unknown_kinds_are_bounded_per_stream_and_must_look_like_kinds() -> None:
    """Up to MAX_UNKNOWN_KINDS unknown kinds are normal subscriptions; one more, or a name no Kuma kind
    could have, is the garbage defence's MalformedMessage (INVALID_ARGUMENT at the adapter)."""
    s = Sender(["Thing"])
    for i in range(MAX_UNKNOWN_KINDS):
        s.receive(subscribe(f"Kind{i}"), 0.0)
    assert len(s.unknown_responses(0.0)) == MAX_UNKNOWN_KINDS
    with pytest.raises(MalformedMessage, match="one unknown kind too many"):
        s.receive(subscribe("KindTooMany"), 0.0)
    for absurd in ("Nope" * 300, "not-a-kind", "", "Mesh\n"):
        with pytest.raises(MalformedMessage, match="is not a kind name"):
            check_request(subscribe(absurd), ["Thing"])
    check_request(subscribe("MeshLoadBalancingStrategy"), ["Thing"])
    check_response(discovery_pb2.DeltaDiscoveryResponse(type_url="ZoneEgressInsight", nonce="1"), ["Thing"])
    r = Receiver([THING], no_bad)
    for i in range(MAX_UNKNOWN_KINDS):
        assert r.receive(discovery_pb2.DeltaDiscoveryResponse(type_url=f"Kind{i}", nonce="1")).unknown
    with pytest.raises(MalformedMessage, match="one unknown kind too many"):
        r.receive(discovery_pb2.DeltaDiscoveryResponse(type_url="KindTooMany", nonce="1"))


def test_initial_versions_with_a_name_or_version_too_long_are_malformed() -> None:
    """A resuming zone's initial_resource_versions pass the same length limits as everything else it sends
    (checked by the Sender, on the dict it keeps): the error names the entry, whichever of many it is."""
    held = {f"route-{i:05}.default": "v" * 40 for i in range(1000)}
    Sender(["Thing"]).receive(subscribe(**held), 0.0)
    too_long_name = {**held, "n" * (MAX_WIRE_NAME_LENGTH + 1): "v"}
    with pytest.raises(MalformedMessage, match="initial version's name 'nnn"):
        Sender(["Thing"]).receive(subscribe(**too_long_name), 0.0)
    too_long_version = {**held, "route-00500.default": "v" * (MAX_VERSION_LENGTH + 1)}
    with pytest.raises(MalformedMessage, match=r"version of 'route-00500\.default' is longer than"):
        Sender(["Thing"]).receive(subscribe(**too_long_version), 0.0)


def test_receiver_acks_an_unknown_kind_without_storing_it() -> None:
    """A Kuma peer may send kinds meshgate does not know (a Kuma global asks a zone for 22): ACK, store
    nothing, keep the stream."""
    r = Receiver([THING], no_bad, node=kds_node("zone-1", control_plane_id="cp-1", features=["zone-ping-health"]))
    r.subscribe({})
    resp = discovery_pb2.DeltaDiscoveryResponse(type_url="DataplaneInsight", nonce="7")
    resp.resources.add(name="dp.default", version="v")
    plan = r.receive(resp)
    assert plan.unknown
    assert (plan.upserts, plan.removals, plan.rejections) == ((), (), ())
    req = r.applied(plan)
    assert (req.type_url, req.response_nonce, req.node.id) == ("DataplaneInsight", "7", "zone-1")
    assert not req.HasField("error_detail")
    assert r.kinds["Thing"].held == {}


def test_every_request_carries_node_as_kuma_sends_it() -> None:
    """pkg/kds/v2/client/stream.go:211-231 (v2.7.29): the first request per kind carries node.id and
    node.metadata {version: {kumaCp: {...}}, config, control-plane-id, features: a list value}; its ACK
    (:271-277) and NACK (:290-300) carry node{id}. meshgate's NACK keeps its BadRequest details too."""
    node = kds_node("zone-1", control_plane_id="zone-1-instance", features=["zone-ping-health"])
    sender = Sender(["Thing"])
    r = Receiver([THING], no_bad, node=node)
    (sub,) = r.subscribe({})
    assert sub.node.id == "zone-1"
    md = sub.node.metadata.fields
    assert md["control-plane-id"].string_value == "zone-1-instance"
    assert md["version"].struct_value.fields["kumaCp"].struct_value.fields["version"].string_value
    assert md["config"].WhichOneof("kind") == "string_value"
    assert [v.string_value for v in md["features"].list_value.values] == ["zone-ping-health"]
    assert node_features(sub.node) == ["zone-ping-health"]
    bare = kds_node("zone-1", control_plane_id="global-1", features=())
    assert bare.metadata.fields["features"].WhichOneof("kind") == "list_value"  # a list, even when empty
    sender.receive(sub, 0.0)
    snap = KindSnapshot.of("Thing", entries(thing("a")))
    resp = sender.next_response(snap, 0.0)
    assert resp is not None
    acked = r.applied(r.receive(resp))
    assert acked.node.id == "zone-1"
    assert not acked.node.HasField("metadata")
    sender.receive(acked, 1.0)
    resp = sender.next_response(snap.evolve({"b.default": Entry.of(to_wire(thing("b", "bad")))}), 1.0)
    assert resp is not None
    nacked = r.applied(r.receive(resp))
    assert nacked.error_detail.message
    assert nacked.node.id == "zone-1"


def test_features_are_read_one_per_value_or_comma_joined() -> None:
    """Kuma sends one metadata value per feature (pkg/kds/mux/client.go:100-105) and matches each exactly
    (pkg/kds/features.go:32-36); meshgate zones used to send one comma-joined value."""
    assert parse_features(["zone-ping-health", "hash-suffix"]) == ["zone-ping-health", "hash-suffix"]
    assert parse_features(["zone-ping-health,hash-suffix"]) == ["zone-ping-health", "hash-suffix"]
    assert parse_features(["a, b", "b", ""]) == ["a", "b"]


def test_nack_names_bad_resources_and_others_still_apply() -> None:
    """End to end through both state machines: the bad one is NACKed by name, the rest applied."""
    sender = Sender(["Thing"])
    receiver = Receiver([THING], no_bad)
    snap = KindSnapshot.of("Thing", entries(thing("good"), thing("evil", "bad")))
    for req in receiver.subscribe({}):
        sender.receive(req, 0)
    resp = sender.next_response(snap, 0)
    assert resp is not None
    plan = receiver.receive(resp)
    assert [n for n, _, _ in plan.upserts] == ["good.default"]
    assert [(r.name, r.reason) for r in plan.rejections] == [("evil.default", "value: must not be bad")]
    nack = receiver.applied(plan)
    assert "evil.default" in nack.error_detail.message
    assert rejected_names(nack) == {"evil.default": "value: must not be bad"}
    (event,) = sender.receive(nack, 1)
    assert isinstance(event, Rejected)
    assert event.names == {"evil.default": "value: must not be bad"}
    ks = sender.kinds["Thing"]
    assert ks.state is State.IDLE
    assert ks.stats.last_nack is not None
    assert ks.stats.last_nack.names == {"evil.default": "value: must not be bad"}
    evil_version = snap.entries["evil.default"].version
    assert ks.rejected == {"evil.default": (evil_version, "value: must not be bad")}
    # What the zone reports holding: the good one, not the rejected one; both were sent with nonce 1.
    assert ks.confirmed == {"good.default": snap.entries["good.default"].version}
    assert ks.sent["evil.default"] == ("1", 0)
    assert sender.next_response(snap, 2) is None  # identical bad content is not re-sent
    fixed = snap.evolve({"evil.default": Entry.of(to_wire(thing("evil", "fine")))})
    resp2 = sender.next_response(fixed, 3)
    assert resp2 is not None
    assert [r.name for r in resp2.resources] == ["evil.default"]
    sender.receive(receiver.applied(receiver.receive(resp2)), 4)
    assert sender.kinds["Thing"].rejected == {}
    assert set(receiver.kinds["Thing"].held) == {"good.default", "evil.default"}


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([f"r{i}" for i in range(6)]), st.sampled_from(["a", "b", "bad", None])),
        max_size=25,
    ),
    reconnect_at=st.integers(min_value=0, max_value=25),
)
def test_receiver_converges_across_changes_and_a_resume(steps: list[tuple[str, str | None]], reconnect_at: int) -> None:
    """Random changes, a reconnect that resumes from held versions: the receiver ends holding exactly
    the snapshot's valid resources, and the resume never re-sends what it already held."""
    snap = KindSnapshot("Thing")
    sender, receiver = Sender(["Thing"]), Receiver([THING], no_bad)
    for req in receiver.subscribe({}):
        sender.receive(req, 0)

    def pump() -> None:
        while (resp := sender.next_response(snap, 0)) is not None:
            plan = receiver.receive(resp)
            sender.receive(receiver.applied(plan), 0)

    for i, (name, value) in enumerate(steps):
        if i == reconnect_at:
            held = {"Thing": dict(receiver.kinds["Thing"].held)}
            sender, receiver = Sender(["Thing"]), Receiver([THING], no_bad)
            for req in receiver.subscribe(held):
                sender.receive(req, 0)
            first = sender.next_response(snap, 0)
            assert first is not None
            resent = {r.name for r in first.resources}
            same = {n for n, (_, v) in held["Thing"].items() if snap.versions().get(n) == v}
            assert not (resent & same)
            sender.receive(receiver.applied(receiver.receive(first)), 0)
        snap = snap.evolve(
            {wire_name(name, "default"): None if value is None else Entry.of(to_wire(thing(name, value)))}
        )
        pump()
    pump()
    good = {n: e.version for n, e in snap.entries.items() if b"bad" not in e.wire.resource.value}
    held_versions = {n: v for n, (_, v) in receiver.kinds["Thing"].held.items()}
    assert {n: v for n, v in held_versions.items() if n in good} == good
    assert set(held_versions) <= set(snap.entries)
    # The sender's record of what the receiver holds matches what it really holds.
    assert sender.kinds["Thing"].confirmed == held_versions
