"""The structure walker on well-known types that no kind uses today (Any, Timestamp, FieldMask), and its
agreement with json_format.ParseDict on them."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import field_mask_pb2, json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.kds_pb2 import KumaResource
from meshgate.resources.errors import Path, Violations
from meshgate.resources.structure import check_message

# An Any's type must be in the default descriptor pool; importing its module puts it there.
REGISTERED = (field_mask_pb2,)

ANY = {"@type": "type.googleapis.com/kuma.mesh.v1alpha1.MeshGateway", "tags": {"a": "b"}}


def problems(doc: Any, message: type[Message]) -> list[tuple[str, str]]:
    out = Violations()
    descriptor = message.DESCRIPTOR
    assert isinstance(descriptor, Descriptor)
    check_message(doc, descriptor, Path(), out)
    return [(v.field, v.message) for v in out]


@pytest.mark.parametrize(
    "doc",
    [
        {"meta": {"name": "a", "labels": {"k": "v"}}, "spec": ANY},
        {"spec": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "1.5s"}},
        {"spec": {"@type": "type.googleapis.com/google.protobuf.Timestamp", "value": "2024-01-02T03:04:05Z"}},
        {"spec": {"@type": "type.googleapis.com/google.protobuf.FieldMask", "value": "a.b,c"}},
        {"spec": {"@type": "type.googleapis.com/google.protobuf.UInt32Value", "value": 7}},
    ],
)
def test_accepted_documents_parse(doc: dict[str, Any]) -> None:
    assert problems(doc, KumaResource) == []
    json_format.ParseDict(doc, KumaResource())


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ({"spec": []}, [("spec", "must be an object, not array")]),
        (
            {"spec": {"tags": {}}},
            [("spec.@type", 'must be a type URL such as "type.googleapis.com/kuma.mesh.v1alpha1.Mesh"')],
        ),
        (
            {"spec": {"@type": "type.googleapis.com/kuma.mesh.v1alpha1.Nope"}},
            [("spec.@type", 'unknown type "type.googleapis.com/kuma.mesh.v1alpha1.Nope"')],
        ),
        ({"spec": {**ANY, "bogus": 1}}, [("spec.bogus", 'unknown field "bogus"')]),
        (
            {
                "spec": {
                    "@type": "type.googleapis.com/google.protobuf.Timestamp",
                    "value": "yesterday",
                    "x": 1,
                }
            },
            [
                ("spec.x", 'unknown field "x"'),
                ("spec.value", 'must be an RFC 3339 timestamp such as "2024-01-02T03:04:05Z"'),
            ],
        ),
        (
            {"spec": {"@type": "type.googleapis.com/google.protobuf.FieldMask", "value": ["a"]}},
            [("spec.value", "must be a string, not array")],
        ),
        (
            {"meta": {"version": 5, "labels": []}},
            [
                ("meta.version", "must be a string, not number"),
                ("meta.labels", "must be an object, not array"),
            ],
        ),
    ],
)
def test_rejected_documents(doc: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert problems(doc, KumaResource) == expected
    with pytest.raises(json_format.ParseError):
        json_format.ParseDict(doc, KumaResource())
