"""The Universal MeshGatewayInstance supervisor's pure parts: what should run, what to stop and start, Ready."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from zone_cp.provisioning import MAX_REPLICAS, ReplicaKey, desired_replicas, plan, ready_condition


def instance(name: str = "edge", mesh: str = "default", **spec: Any) -> Resource:
    return resource(factory.gateway_instance(name, mesh, **spec))


def gateway(service: str, name: str = "gw") -> Resource:
    return resource(factory.gateway(name, service=service), created=datetime(2024, 1, 1, tzinfo=UTC))


def key(index: int, name: str = "edge") -> ReplicaKey:
    return ReplicaKey("default", name, index)


def test_desired_replicas_one_dataplane_per_index_with_the_instance_tags() -> None:
    desired = desired_replicas([instance(replicas=2, tags={"team": "a"})])
    assert list(desired) == [key(0), key(1)]
    doc = json.loads(desired[key(1)].dataplane)
    assert doc == {
        "type": "Dataplane",
        "mesh": "default",
        "name": "edge-1",
        "networking": {
            "address": "127.0.0.1",
            "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge", "team": "a"}},
        },
    }
    assert codec.validate(codec.decode(doc)) == []


def test_desired_replicas_defaults_to_one_allows_zero_and_caps() -> None:
    assert list(desired_replicas([instance()])) == [key(0)]
    assert desired_replicas([instance(replicas=0)]) == {}
    assert len(desired_replicas([instance(replicas=MAX_REPLICAS + 5)])) == MAX_REPLICAS


def docs(*instances: Resource) -> dict[ReplicaKey, str]:
    return {k: d.dataplane for k, d in desired_replicas(instances).items()}


def test_plan_starts_what_is_missing_lowest_index_first() -> None:
    actions = plan(docs(instance(replicas=3)), docs(instance(replicas=1)))
    assert actions.stop == ()
    assert actions.start == (key(1), key(2))


def test_plan_scale_down_stops_the_highest_indexes_first() -> None:
    actions = plan(docs(instance(replicas=1)), docs(instance(replicas=3)))
    assert actions.stop == (key(2), key(1))
    assert actions.start == ()


def test_plan_nothing_to_do_when_in_step() -> None:
    same = docs(instance(replicas=2), instance("other"))
    assert plan(same, dict(same)) == plan({}, {})


def test_plan_restarts_replicas_whose_dataplane_changed() -> None:
    actions = plan(docs(instance(replicas=2, tags={"v": "2"})), docs(instance(replicas=2, tags={"v": "1"})))
    assert actions.stop == (key(1), key(0))
    assert actions.start == (key(0), key(1))


def test_plan_deleted_instance_stops_all_of_its_replicas_only() -> None:
    actions = plan(docs(instance("other")), docs(instance(replicas=2), instance("other")))
    assert actions.stop == (key(1), key(0))
    assert actions.start == ()


def test_ready_no_gateway_matched() -> None:
    cond = ready_condition(instance(replicas=2), [gateway("somebody-else")], running=2)
    assert (cond["type"], cond["status"], cond["reason"]) == ("Ready", "False", "NoGatewayMatched")


def test_ready_not_all_replicas_running() -> None:
    cond = ready_condition(instance(replicas=2), [gateway("edge")], running=1)
    assert (cond["status"], cond["reason"]) == ("False", "DeploymentNotAvailable")
    assert cond["message"] == "1 of 2 gateway data planes running"


def test_ready_true_when_selected_and_all_running() -> None:
    cond = ready_condition(instance(replicas=2, tags={"kuma.io/service": "front"}), [gateway("front")], running=2)
    assert (cond["status"], cond["reason"]) == ("True", "Ready")
    assert ready_condition(instance(replicas=0), [gateway("edge")], running=0)["status"] == "True"
