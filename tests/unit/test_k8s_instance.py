"""Parsing MeshGatewayInstance custom resources: defaults, every violation with its field path, never a raise."""

from __future__ import annotations

from typing import Any

import pytest

from meshgate.k8s.instance import MeshGatewayInstance, ServiceType, mesh_of, parse_instance, service_tag


def cr(name: str = "gw", namespace: str = "ns", **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace, "uid": "u", "generation": 2}
    metadata.update(extra.pop("metadata", {}))
    return {"apiVersion": "kuma.io/v1alpha1", "kind": "MeshGatewayInstance", "metadata": metadata, **extra}


def fields(obj: dict[str, Any]) -> list[str]:
    return [v.field for v in parse_instance(obj).violations]


def test_defaults() -> None:
    parsed = parse_instance(cr())
    assert parsed.violations == ()
    instance = parsed.instance
    assert (instance.replicas, instance.service_type, instance.resources) == (1, ServiceType.LOAD_BALANCER, None)
    assert instance.generation == 2
    assert instance.proxy_tags() == {"kuma.io/service": "gw_ns_svc"}
    assert service_tag("gw", "ns") == "gw_ns_svc"


def test_an_explicit_service_tag_is_kept() -> None:
    instance = parse_instance(cr(spec={"tags": {"kuma.io/service": "edge", "v": "1"}})).instance
    assert instance.proxy_tags() == {"kuma.io/service": "edge", "v": "1"}


def test_every_spec_field_is_read() -> None:
    spec = {
        "replicas": 3,
        "serviceType": "NodePort",
        "resources": {"limits": {"cpu": "2000m"}, "requests": {"memory": "1024Mi"}, "claims": [{"name": "gpu"}]},
        "serviceTemplate": {"metadata": {"labels": {"a": "b"}}, "spec": {"loadBalancerIP": "1.2.3.4"}},
        "podTemplate": {
            "metadata": {"annotations": {"x": "y"}},
            "spec": {
                "serviceAccountName": "sa",
                "securityContext": {"fsGroup": 7},
                "container": {"securityContext": {"readOnlyRootFilesystem": True}},
            },
        },
    }
    instance = parse_instance(cr(spec=spec)).instance
    assert instance.replicas == 3
    assert instance.service_type is ServiceType.NODE_PORT
    assert instance.resources == {"limits": {"cpu": "2"}, "requests": {"memory": "1Gi"}, "claims": [{"name": "gpu"}]}
    assert instance.service_template.metadata.labels == {"a": "b"}
    assert instance.service_template.load_balancer_ip == "1.2.3.4"
    assert instance.pod_template.metadata.annotations == {"x": "y"}
    assert (instance.pod_template.service_account_name, instance.pod_template.fs_group) == ("sa", 7)
    assert instance.pod_template.read_only_root_filesystem is True


@pytest.mark.parametrize(
    ("obj", "field"),
    [
        (cr(name=""), "metadata.name"),
        (cr(name="a" * 64), "metadata.name"),
        (cr(name="dotted.name"), "metadata.name"),
        (cr(name="9starts-with-digit"), "metadata.name"),
        (cr(namespace=""), "metadata.namespace"),
        (cr(spec={"replicas": 0}), "spec.replicas"),
        (cr(spec={"replicas": "2"}), "spec.replicas"),
        (cr(spec={"serviceType": "ExternalName"}), "spec.serviceType"),
        (cr(spec={"tags": {"version": "a/b"}}), 'spec.tags["version"]'),
        (cr(spec={"tags": {"bad key!": "v"}}), 'spec.tags["bad key!"]'),
        (cr(spec={"tags": {"k": ""}}), 'spec.tags["k"]'),
        (cr(spec={"resources": {"limits": {"cpu": "lots"}}}), 'spec.resources.limits["cpu"]'),
        (
            cr(spec={"podTemplate": {"spec": {"securityContext": {"fsGroup": "x"}}}}),
            "spec.podTemplate.spec.securityContext.fsGroup",
        ),
        (
            cr(metadata={"annotations": {"kuma.io/sidecar-proxy-concurrency": "-1"}}),
            'metadata.annotations["kuma.io/sidecar-proxy-concurrency"]',
        ),
        (
            cr(metadata={"annotations": {"kuma.io/envoy-admin-port": "99999999999"}}),
            'metadata.annotations["kuma.io/envoy-admin-port"]',
        ),
        (
            cr(metadata={"annotations": {"kuma.io/sidecar-drain-time": "30"}}),
            'metadata.annotations["kuma.io/sidecar-drain-time"]',
        ),
        (
            cr(metadata={"annotations": {"kuma.io/wait-for-dataplane-ready": "maybe"}}),
            'metadata.annotations["kuma.io/wait-for-dataplane-ready"]',
        ),
        (
            cr(metadata={"annotations": {"kuma.io/sidecar-env-vars": "A=1;B"}}),
            'metadata.annotations["kuma.io/sidecar-env-vars"]',
        ),
        (cr(spec=["not", "an", "object"]), "spec"),
    ],
)
def test_violations_name_the_field(obj: dict[str, Any], field: str) -> None:
    assert field in fields(obj)


def test_all_violations_are_collected_and_defaults_kept() -> None:
    parsed = parse_instance(cr(spec={"replicas": 0, "serviceType": "Bogus", "tags": {"k": ""}}))
    assert len(parsed.violations) == 3
    assert parsed.instance.replicas == 1
    assert parsed.instance.service_type is ServiceType.LOAD_BALANCER
    assert parsed.instance.name == "gw"


def test_status_is_read_for_the_next_transition() -> None:
    status = {
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Ready", "message": "", "lastTransitionTime": "t"},
        ],
        "loadBalancer": {"ingress": [{"ip": "1.1.1.1"}]},
    }
    instance = parse_instance(cr(status=status)).instance
    assert instance.conditions[0].status == "True"
    assert instance.load_balancer == {"ingress": [{"ip": "1.1.1.1"}]}


def test_mesh_label_then_annotation_then_namespace_then_default() -> None:
    both = MeshGatewayInstance("gw", "ns", labels={"kuma.io/mesh": "l"}, annotations={"kuma.io/mesh": "a"})
    assert mesh_of(both, {"kuma.io/mesh": "n"}) == "l"
    annotated = MeshGatewayInstance("gw", "ns", annotations={"kuma.io/mesh": "a"})
    assert mesh_of(annotated, {"kuma.io/mesh": "n"}) == "a"
    plain = MeshGatewayInstance("gw", "ns", labels={"kuma.io/mesh": ""})
    assert mesh_of(plain, {"kuma.io/mesh": "n"}) == "n"
    assert mesh_of(plain, {}) == "default"
