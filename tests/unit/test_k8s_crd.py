"""deploy/kubernetes/crds/meshgatewayinstance.yaml: a valid CRD whose schema accepts every example instance
(the golden inputs) and the status meshgate writes, and refuses what Kuma's CRD refuses."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshgate.k8s.instance import parse_instance
from meshgate.k8s.status import Condition, compute_ready, invalid_condition, set_condition
from tests.k8s_support import CRD_PATH, crd, crd_validator, golden_cases, load_case, validate_k8s

EXAMPLE: dict[str, Any] = {
    "apiVersion": "kuma.io/v1alpha1",
    "kind": "MeshGatewayInstance",
    "metadata": {"name": "edge-gateway", "namespace": "gateways"},
    "spec": {"replicas": 2, "serviceType": "ClusterIP", "tags": {"kuma.io/service": "edge"}},
}


def errors(obj: dict[str, Any]) -> list[str]:
    return sorted(error.message for error in crd_validator().iter_errors(obj))


def test_the_crd_passes_kubernetes_validate() -> None:
    validate_k8s(crd())


def test_the_crd_is_kumas_kind() -> None:
    spec = crd()["spec"]
    assert crd()["metadata"]["name"] == "meshgatewayinstances.kuma.io"
    assert (spec["group"], spec["scope"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "kuma.io",
        "Namespaced",
        "MeshGatewayInstance",
        "meshgatewayinstances",
    )
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"], version["subresources"]) == (
        "v1alpha1",
        True,
        True,
        {"status": {}},
    )
    properties = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert properties["replicas"]["default"] == 1
    assert properties["replicas"]["minimum"] == 1
    assert properties["serviceType"]["default"] == "LoadBalancer"
    assert properties["serviceType"]["enum"] == ["LoadBalancer", "ClusterIP", "NodePort"]


def test_the_example_is_accepted() -> None:
    assert errors(EXAMPLE) == []


@pytest.mark.parametrize("path", golden_cases(), ids=lambda p: p.name.removesuffix(".in.yaml"))
def test_every_golden_instance_is_accepted(path: Path) -> None:
    assert errors(load_case(path).instance) == []


DEPLOY_EXAMPLES = sorted((CRD_PATH.parents[1] / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", DEPLOY_EXAMPLES, ids=lambda p: p.name)
def test_the_deploy_examples_are_accepted_and_valid(path: Path) -> None:
    instances = [d for d in yaml.safe_load_all(path.read_text()) if d and d.get("kind") == "MeshGatewayInstance"]
    assert instances
    for instance in instances:
        assert errors(instance) == []
        assert parse_instance(instance).violations == ()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"replicas": 0}, "0 is less than the minimum of 1"),
        ({"serviceType": "ExternalName"}, "'ExternalName' is not one of ['LoadBalancer', 'ClusterIP', 'NodePort']"),
        ({"replica": 2}, "Additional properties are not allowed ('replica' was unexpected)"),
        ({"tags": {"k": 1}}, "1 is not of type 'string'"),
        ({"resources": {"limits": {"cpu": "lots"}}}, "'lots' does not match"),
        ({"podTemplate": {"spec": {"container": {"securityContext": {"privileged": True}}}}}, "Additional properties"),
    ],
)
def test_bad_instances_are_refused(change: dict[str, Any], expected: str) -> None:
    bad = copy.deepcopy(EXAMPLE)
    bad["spec"].update(change)
    assert any(expected in message for message in errors(bad)), errors(bad)


def with_status(conditions: tuple[Condition, ...], load_balancer: dict[str, Any] | None = None) -> dict[str, Any]:
    obj = copy.deepcopy(EXAMPLE)
    obj["status"] = {"conditions": [c.to_json() for c in conditions]}
    if load_balancer is not None:
        obj["status"]["loadBalancer"] = load_balancer
    return obj


@pytest.mark.parametrize(
    "condition",
    [
        compute_ready(None, None, gateway_matched=False, mesh="default", generation=1),
        compute_ready(
            {"status": {"conditions": [{"type": "Available", "status": "Unknown"}]}},
            None,
            gateway_matched=True,
            mesh="m",
        ),
        compute_ready({}, {"spec": {"type": "ClusterIP", "clusterIPs": ["10.0.0.1"]}}, gateway_matched=True, mesh="m"),
        compute_ready({}, {"spec": {"type": "LoadBalancer"}}, gateway_matched=True, mesh="m"),
        invalid_condition(["spec.replicas: must be between 1 and 2147483647"], 4),
    ],
    ids=lambda c: c.reason,
)
def test_the_status_meshgate_writes_is_accepted(condition: Condition) -> None:
    conditions = set_condition((), condition, "2024-01-01T00:00:00Z")
    assert errors(with_status(conditions, {"ingress": [{"ip": "203.0.113.1"}]})) == []
    assert parse_instance(with_status(conditions)).instance.conditions == conditions
