"""A made-up kind (spec = google.protobuf.Struct) that exercises the KDS machinery alone."""

from __future__ import annotations

from google.protobuf import struct_pb2

from meshgate.delta import Entry
from meshgate.kds.envelope import to_wire
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Violation
from meshgate.resources.model import Meta, Resource

THING = KindDescriptor(
    name="Thing",
    singular="thing",
    plural="things",
    spec_type=struct_pb2.Struct,
    scope=Scope.MESH,
    sync=SyncDirection.GLOBAL_TO_ZONE,
    validate=lambda r: [],
)


def thing(name: str, value: str = "v", mesh: str = "default", **labels: str) -> Resource:
    spec = struct_pb2.Struct()
    spec.update({"value": value})
    return Resource("Thing", Meta(name=name, mesh=mesh, labels=labels), spec)


def entries(*things: Resource) -> list[Entry]:
    return [Entry.of(to_wire(t)) for t in things]


def _value(r: Resource) -> str:
    assert isinstance(r.spec, struct_pb2.Struct)
    return str(r.spec["value"])


def no_bad(r: Resource) -> list[Violation]:
    return [Violation("value", "must not be bad")] if _value(r) == "bad" else []
