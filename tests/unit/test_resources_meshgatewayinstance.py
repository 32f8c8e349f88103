"""MeshGatewayInstance (Universal form, meshgate's own wire type): defaults, rules with field paths, roles."""

from __future__ import annotations

from typing import Any

import pytest

from meshgate.resources import codec, registry
from meshgate.resources.descriptor import SyncDirection
from meshgate.resources.errors import ValidationError
from meshgate.resources.kinds import meshgatewayinstance


def doc(**spec: Any) -> dict[str, Any]:
    return {"type": "MeshGatewayInstance", "mesh": "default", "name": "edge", **spec}


def violations(d: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v.field, v.message) for v in codec.validate(codec.decode(d))]


def test_defaults_replicas_one_and_service_tag_the_name() -> None:
    resource = codec.load(doc())
    assert meshgatewayinstance.replicas(resource.spec) == 1
    assert meshgatewayinstance.proxy_tags(resource) == {"kuma.io/service": "edge"}


def test_explicit_fields_round_trip_in_universal_form() -> None:
    full = doc(
        replicas=0,
        serviceType="ClusterIP",
        resources={"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
        tags={"kuma.io/service": "front", "team": "a"},
    )
    resource = codec.load(full)
    assert meshgatewayinstance.replicas(resource.spec) == 0  # explicit 0 is kept, not defaulted
    assert meshgatewayinstance.proxy_tags(resource) == {"kuma.io/service": "front", "team": "a"}
    assert codec.encode(resource) == full


def test_every_violation_with_its_field_path() -> None:
    bad = doc(
        replicas=-1,
        serviceType="Ingress",
        tags={"team": "a/b", "": "x"},
        resources={"limits": {"cpu": "lots"}, "requests": {"memory": "1Mi", "gpu": "?"}},
    )
    found = violations(bad)
    fields = [f for f, _ in found]
    assert ("replicas", "must be greater than or equal to 0") in found
    assert ("serviceType", "must be one of LoadBalancer, ClusterIP, NodePort") in found
    assert 'tags["team"]' in fields
    assert 'resources.limits["cpu"]' in fields
    assert 'resources.requests["gpu"]' in fields
    assert 'resources.requests["memory"]' not in fields


@pytest.mark.parametrize("service_type", ["LoadBalancer", "ClusterIP", "NodePort", ""])
def test_service_types_accepted(service_type: str) -> None:
    assert violations(doc(serviceType=service_type)) == []


def test_is_mesh_scoped() -> None:
    with pytest.raises(ValidationError) as caught:
        codec.load({**doc(), "mesh": ""})
    assert [v.field for v in caught.value.violations] == ["mesh"]


def test_descriptor_zone_only_and_never_synced() -> None:
    d = registry.get("MeshGatewayInstance")
    assert d is meshgatewayinstance.DESCRIPTOR
    assert d.sync is SyncDirection.NONE
    assert (d.writable_on_zone, d.writable_on_global) == (True, False)
    assert d not in registry.kinds_sent_to_zone()
    assert d not in registry.kinds_sent_to_global()
    assert d.spec_type_url == "type.googleapis.com/kuma.mesh.v1alpha1.MeshGatewayInstance"
