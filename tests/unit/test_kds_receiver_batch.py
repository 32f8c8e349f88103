"""The zone's receiver facing a global it authenticated (issue 16, point 2): one batch per response, decoding
kept, semantic validation left to the global, ownership still enforced.

Changed by issue 16: a zone used to re-validate what the global sent and NACK a resource its validator
refused. Now a zone trusts the validation of a global it authenticated (`validate=None`): what that global
accepted, the zone accepts. A zone that could not authenticate its global (plaintext, skip-verify) still
validates, as `test_a_validating_receiver_still_nacks_what_its_validator_refuses` pins.
"""

from __future__ import annotations

import gc
from functools import partial

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2, struct_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2
from meshgate.collector import gc_paused
from meshgate.kds import ownership
from meshgate.kds.envelope import KUMA_RESOURCE_TYPE_URL, to_wire
from meshgate.kds.errors import MalformedMessage
from meshgate.kds.receiver import Receiver
from meshgate.resources.model import LABEL_ORIGIN
from meshgate.store import MemoryStore
from meshgate.transport.kds_client import GlobalToZoneClient, parse_global_address
from tests.support.thing import THING, no_bad, thing


def _response(*wires: discovery_pb2.Resource, nonce: str = "1") -> discovery_pb2.DeltaDiscoveryResponse:
    return discovery_pb2.DeltaDiscoveryResponse(type_url="Thing", nonce=nonce, resources=list(wires))


def _global(name: str, value: str = "v") -> discovery_pb2.Resource:
    return to_wire(thing(name, value, **{LABEL_ORIGIN: "global"}))


def _undecodable() -> list[discovery_pb2.Resource]:
    """One of each way a wire resource fails to decode, named for what it is."""
    not_kuma = discovery_pb2.Resource(name="not-kuma.default", version="v")
    not_kuma.resource.Pack(struct_pb2.Struct())
    garbage = discovery_pb2.Resource(
        name="garbage.default", version="v", resource=any_pb2.Any(type_url=KUMA_RESOURCE_TYPE_URL, value=b"\xff\xff")
    )
    wrong_spec = _global("wrong-spec")
    env = wrong_spec.resource
    k = kds_pb2.KumaResource.FromString(env.value)
    k.spec.type_url = "type.googleapis.com/google.protobuf.Duration"
    env.value = k.SerializeToString()
    renamed = _global("renamed")
    renamed.name = "someone-else.default"
    return [not_kuma, garbage, wrong_spec, renamed]


def _trusting() -> Receiver:
    r = Receiver([THING], None, accept=partial(ownership.zone_accepts, "zone-1"))
    r.subscribe({})
    return r


def test_a_trusting_receiver_stores_what_the_global_validated() -> None:
    """A resource the zone's own validator would refuse ("bad") is applied: the global validated it."""
    r = _trusting()
    plan = r.receive(_response(_global("good"), _global("bad-but-decodable", "bad")))
    assert [n for n, _, _ in plan.upserts] == ["good.default", "bad-but-decodable.default"]
    assert plan.accepted
    ack = r.applied(plan)
    assert not ack.HasField("error_detail")
    assert set(r.kinds["Thing"].held) == {"good.default", "bad-but-decodable.default"}


def test_a_validating_receiver_still_nacks_what_its_validator_refuses() -> None:
    r = Receiver([THING], no_bad, accept=partial(ownership.zone_accepts, "zone-1"))
    r.subscribe({})
    plan = r.receive(_response(_global("good"), _global("evil", "bad")))
    assert [n for n, _, _ in plan.upserts] == ["good.default"]
    assert [(x.name, x.reason) for x in plan.rejections] == [("evil.default", "value: must not be bad")]


def test_a_trusting_receiver_nacks_by_name_what_it_cannot_decode_and_applies_the_rest() -> None:
    r = _trusting()
    bad = _undecodable()
    plan = r.receive(_response(_global("a"), *bad, _global("b")))
    assert [n for n, _, _ in plan.upserts] == ["a.default", "b.default"]
    reasons = {x.name: x.reason for x in plan.rejections}
    assert set(reasons) == {"not-kuma.default", "garbage.default", "wrong-spec.default", "someone-else.default"}
    assert "expected a KumaResource" in reasons["not-kuma.default"]
    assert "undecodable KumaResource" in reasons["garbage.default"]
    assert "is not" in reasons["wrong-spec.default"]
    assert "does not match its meta" in reasons["someone-else.default"]
    nack = r.applied(plan)
    for name in reasons:
        assert name in nack.error_detail.message
    assert set(r.kinds["Thing"].held) == {"a.default", "b.default"}


def test_a_trusting_receiver_still_enforces_ownership() -> None:
    """The global may write only what it owns into a zone: a resource of another origin, or with none, is
    refused by name even from an authenticated global (meshgate.kds.ownership.zone_accepts)."""
    r = _trusting()
    own = to_wire(thing("mine", **{LABEL_ORIGIN: "local"}))
    unlabelled = to_wire(thing("unlabelled"))
    plan = r.receive(_response(_global("theirs"), own, unlabelled))
    assert [n for n, _, _ in plan.upserts] == ["theirs.default"]
    assert {x.name for x in plan.rejections} == {"mine.default", "unlabelled.default"}


def test_one_response_is_one_plan_with_every_resource() -> None:
    """Decoding is batched: a 2,000-resource response is one plan (one store write, one ACK)."""
    r = _trusting()
    plan = r.receive(_response(*(_global(f"r{i}") for i in range(2000))))
    assert len(plan.upserts) == 2000
    assert r.applied(plan).response_nonce == "1"


def test_the_collector_is_paused_only_for_the_batch_and_restored_after_a_failure() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the inner one leaves it to the outer
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    strict = Receiver([THING], None, strict=True)
    strict.subscribe({})
    with pytest.raises(MalformedMessage):
        strict.receive(_response(_global("a"), _undecodable()[1]))
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # the process had it off: left off
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("address", "skip_verify", "authenticated"),
    [
        ("grpcs://127.0.0.1:5685", False, True),
        ("grpcs://127.0.0.1:5685", True, False),
        ("grpc://127.0.0.1:5685", False, False),
    ],
)
def test_only_a_global_whose_certificate_was_verified_is_trusted(
    address: str, skip_verify: bool, authenticated: bool
) -> None:
    client = GlobalToZoneClient(
        zone="zone-1",
        addresses=[address],
        store=MemoryStore(),
        kinds=[THING],
        validate=no_bad,
        tls_skip_verify=skip_verify,
    )
    assert client.global_authenticated(parse_global_address(address)) is authenticated
