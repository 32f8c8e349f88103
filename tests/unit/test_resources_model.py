"""The resource model's values: keys and the batch constructor `built`."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from google.protobuf import struct_pb2

from meshgate.resources.model import Meta, Resource, ResourceKey, built


def test_built_is_the_resource_the_constructors_build() -> None:
    spec = struct_pb2.Struct()
    spec["a"] = 1
    at = datetime(2026, 1, 2, tzinfo=UTC)
    fast = built("MeshGateway", spec, "gw", "default", "7", {"k": "v"}, at, None)
    slow = Resource("MeshGateway", Meta("gw", "default", "7", {"k": "v"}, at, None), spec)
    assert fast == slow
    assert type(fast) is Resource
    assert type(fast.meta) is Meta
    assert fast.key == ResourceKey("MeshGateway", "default", "gw")
    # As frozen as the constructor's: fields cannot be set, deriving still works.
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.meta.name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.kind = "Mesh"  # type: ignore[misc]
    assert fast.with_meta(version="8").meta == dataclasses.replace(slow.meta, version="8")


def test_resource_key_is_an_immutable_ordered_value() -> None:
    key = ResourceKey("MeshGatewayRoute", "default", "r1")
    assert key == ResourceKey(kind="MeshGatewayRoute", mesh="default", name="r1")
    assert hash(key) == hash(ResourceKey("MeshGatewayRoute", "default", "r1"))
    assert sorted([ResourceKey("b", "", "x"), ResourceKey("a", "m", "y"), ResourceKey("a", "", "z")]) == [
        ResourceKey("a", "", "z"),
        ResourceKey("a", "m", "y"),
        ResourceKey("b", "", "x"),
    ]
    assert str(key) == "MeshGatewayRoute/default/r1"
    assert str(ResourceKey("Mesh", "", "default")) == "Mesh/default"
    with pytest.raises(AttributeError):
        key.name = "r2"  # type: ignore[misc]
