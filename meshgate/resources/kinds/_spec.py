"""What every kind's `validate` does before its own rules: the shared name rules and a spec type check."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.model import Resource
from meshgate.resources.naming import check_meta

__all__ = ["validate_resource"]


def validate_resource(
    resource: Resource,
    spec_type: type[Message],
    check_spec: Callable[[Violations, Any], None],
    *,
    mesh_scoped: bool,
) -> list[Violation]:
    out = Violations()
    check_meta(out, resource.meta, mesh_scoped=mesh_scoped)
    if isinstance(resource.spec, spec_type):
        check_spec(out, resource.spec)
        _check_encodable(out, resource.spec)
    else:
        expected = spec_type.DESCRIPTOR.full_name
        out.add(Path(), f"spec must be a {expected}, not {resource.spec.DESCRIPTOR.full_name}")
    return out.as_list()


# Only these well-known types can hold a value that has no JSON form (an infinite number in a Struct,
# a Duration beyond 10000 years); every other field always encodes.
_RISKY = frozenset(
    {
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Duration",
        "google.protobuf.Timestamp",
    }
)


@functools.cache
def _may_be_unencodable(descriptor: Descriptor) -> bool:
    seen: set[str] = set()
    stack = [descriptor]
    while stack:
        d = stack.pop()
        if d.full_name in _RISKY:
            return True
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        stack.extend(f.message_type for f in d.fields if f.message_type is not None)
    return False


def _check_encodable(out: Violations, spec: Message) -> None:
    """A valid resource must have a Universal form. Only a binary peer (KDS) can send one that has none.

    The full JSON conversion is skipped for kinds whose schema cannot hold such a value: it is the
    costliest step of validating a MeshGatewayRoute, and a zone validates every resource it receives."""
    if not _may_be_unencodable(spec.DESCRIPTOR):
        return
    try:
        json_format.MessageToDict(spec)
    except (ValueError, json_format.Error) as err:
        out.add(Path(), f"cannot be written as JSON: {err}")
