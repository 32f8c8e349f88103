"""The Ready condition (Kuma's updateStatus / getCombinedReadiness), SetStatusCondition, and status patches."""

from __future__ import annotations

from typing import Any

import pytest

from meshgate.k8s.status import (
    Condition,
    compute_ready,
    merge_patch,
    parse_conditions,
    set_condition,
    status_patch,
)


def deployment(*available: str) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": "Available", "status": s} for s in available]}}


def service(kind: str, *, ips: list[str] | None = None, ingress: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "spec": {"type": kind, "clusterIPs": ips or []},
        "status": {"loadBalancer": {"ingress": ingress} if ingress else {}},
    }


LB_READY = service("LoadBalancer", ips=["10.0.0.1"], ingress=[{"ip": "203.0.113.1"}])


@pytest.mark.parametrize(
    ("deploy", "svc", "status", "reason"),
    [
        (deployment("False"), LB_READY, "False", "DeploymentNotAvailable"),
        (deployment("Unknown"), LB_READY, "Unknown", "DeploymentNotAvailable"),
        (deployment("True"), LB_READY, "True", "Ready"),
        # No Available condition yet: the Service decides.
        (deployment(), LB_READY, "True", "Ready"),
        (deployment("True"), service("LoadBalancer", ips=["10.0.0.1"]), "False", "LoadBalancerAddressNotReady"),
        (deployment("True"), service("LoadBalancer", ingress=[{"hostname": "lb.example.com"}]), "True", "Ready"),
        (deployment("True"), service("ClusterIP", ips=["10.0.0.1"]), "True", "Ready"),
        (deployment("True"), service("ClusterIP", ips=["None"]), "False", "LoadBalancerAddressNotReady"),
        (deployment("True"), service("ClusterIP"), "False", "LoadBalancerAddressNotReady"),
        (deployment("True"), service("NodePort", ips=["", "fd00::1"]), "True", "Ready"),
        # The Deployment is checked first, whatever the Service says.
        (deployment("False"), service("ClusterIP"), "False", "DeploymentNotAvailable"),
        # Go's `break` leaves only the switch: a later Available=False still counts.
        (deployment("True", "False"), LB_READY, "False", "DeploymentNotAvailable"),
        (None, LB_READY, "False", "DeploymentNotAvailable"),
        (deployment("True"), None, "False", "LoadBalancerAddressNotReady"),
    ],
)
def test_ready_follows_deployment_then_service(
    deploy: dict[str, Any] | None, svc: dict[str, Any] | None, status: str, reason: str
) -> None:
    condition = compute_ready(deploy, svc, gateway_matched=True, mesh="default", generation=3)
    assert (condition.type, condition.status, condition.reason, condition.message) == ("Ready", status, reason, "")
    assert condition.observed_generation == 3


def test_no_gateway_matched_wins_and_names_the_mesh() -> None:
    condition = compute_ready(deployment("True"), LB_READY, gateway_matched=False, mesh="payments")
    assert (condition.status, condition.reason) == ("False", "NoGatewayMatched")
    assert condition.message == "No Gateway matched by tags in mesh: 'payments'"


def test_set_condition_moves_the_transition_time_only_when_the_status_changes() -> None:
    first = set_condition((), Condition("Ready", "False", "LoadBalancerAddressNotReady"), "2024-01-01T00:00:00Z")
    assert first[0].last_transition_time == "2024-01-01T00:00:00Z"
    same_status = set_condition(
        first, Condition("Ready", "False", "DeploymentNotAvailable", "x", 2), "2024-01-02T00:00:00Z"
    )
    assert same_status[0].last_transition_time == "2024-01-01T00:00:00Z"
    assert (same_status[0].reason, same_status[0].message, same_status[0].observed_generation) == (
        "DeploymentNotAvailable",
        "x",
        2,
    )
    moved = set_condition(same_status, Condition("Ready", "True", "Ready"), "2024-01-03T00:00:00Z")
    assert moved[0].last_transition_time == "2024-01-03T00:00:00Z"


def test_set_condition_keeps_other_condition_types() -> None:
    other = Condition("Programmed", "True", "Done", last_transition_time="2023-01-01T00:00:00Z")
    result = set_condition((other,), Condition("Ready", "True", "Ready"), "2024-01-01T00:00:00Z")
    assert [c.type for c in result] == ["Programmed", "Ready"]
    assert result[0] == other


def test_conditions_round_trip_through_json() -> None:
    condition = Condition("Ready", "True", "Ready", "", 4, "2024-01-01T00:00:00Z")
    assert parse_conditions([condition.to_json(), "junk", {"no": "type"}]) == (condition,)
    assert "observedGeneration" not in Condition("Ready", "True", "Ready").to_json()


def test_merge_patch_is_rfc_7386() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2], "gone": True}
    new = {"a": 1, "b": {"c": 2, "d": 4}, "l": [1], "added": {"x": 1}}
    assert merge_patch(old, new) == {"b": {"d": 4}, "l": [1], "gone": None, "added": {"x": 1}}
    assert merge_patch(old, old) == {}


def test_status_patch_is_none_when_nothing_changed() -> None:
    status = {"conditions": [Condition("Ready", "True", "Ready", last_transition_time="t").to_json()]}
    assert status_patch(status, dict(status)) is None
    assert status_patch({}, status) == {"status": status}
