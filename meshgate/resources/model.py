"""The resource model shared by every layer: a kind, its metadata, and a protobuf spec.

A `Resource` is a value. Its `spec` is a protobuf message, which Python cannot freeze, so by
convention nobody mutates a spec after the resource is built: use `with_meta`/`replace` to derive.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import NamedTuple

from google.protobuf.message import Message

__all__ = [
    "LABEL_DISPLAY_NAME",
    "LABEL_ORIGIN",
    "LABEL_ZONE",
    "Meta",
    "Origin",
    "Resource",
    "ResourceKey",
    "built",
    "utcnow",
]

LABEL_ORIGIN = "kuma.io/origin"
LABEL_ZONE = "kuma.io/zone"
LABEL_DISPLAY_NAME = "kuma.io/display-name"


class Origin(StrEnum):
    GLOBAL = "global"
    ZONE = "zone"


def utcnow() -> datetime:
    return datetime.now(UTC)


class ResourceKey(NamedTuple):
    """Identity of a resource in a store. `mesh` is "" for kinds that are not mesh-scoped (Mesh).

    A NamedTuple, not a frozen dataclass: a full KDS sync builds and hashes keys by the ten thousand, and a
    tuple is built and hashed in C (a frozen dataclass sets each field through `object.__setattr__` and hashes
    in Python, several times the cost). Immutable, hashable and ordered by (kind, mesh, name) all the same."""

    kind: str
    mesh: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.mesh}/{self.name}" if self.mesh else f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class Meta:
    name: str
    mesh: str = ""
    # The store's optimistic-concurrency version: opaque, assigned by the store, "" before the first write.
    version: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    creation_time: datetime | None = None
    modification_time: datetime | None = None

    @property
    def display_name(self) -> str:
        """The name people gave it: KDS hash-suffixes names it syncs and keeps the original in a label
        (Kuma's `core_model.GetDisplayName`)."""
        return self.labels.get(LABEL_DISPLAY_NAME) or self.name


@dataclass(frozen=True, slots=True)
class Resource:
    kind: str
    meta: Meta
    spec: Message

    @property
    def key(self) -> ResourceKey:
        meta = self.meta
        return _new_key(ResourceKey, (self.kind, meta.mesh, meta.name))

    def with_meta(self, **changes: object) -> Resource:
        return dataclasses.replace(self, meta=dataclasses.replace(self.meta, **changes))  # type: ignore[arg-type]


# A KDS full sync builds two Resources per resource it receives (decoded, then stored), ten thousand at a time.
# A frozen dataclass's generated __init__ sets each field through `object.__setattr__`, which costs about as much
# as the rest of building it; `built` sets the slots through their descriptors instead, at half the cost, and
# stays exactly the frozen value the constructors build. `_new_key` builds a key without the NamedTuple's
# Python-level __new__.
_new_key = tuple.__new__
_new_object = object.__new__
_META_SLOTS = tuple(getattr(Meta, f.name).__set__ for f in dataclasses.fields(Meta))
_RESOURCE_SLOTS = tuple(getattr(Resource, f.name).__set__ for f in dataclasses.fields(Resource))
# `built` lists the fields in this order: adding a field to either class must update it.
assert [f.name for f in dataclasses.fields(Meta)] == [
    "name", "mesh", "version", "labels", "creation_time", "modification_time"
]  # fmt: skip
assert [f.name for f in dataclasses.fields(Resource)] == ["kind", "meta", "spec"]


def built(
    kind: str,
    spec: Message,
    name: str,
    mesh: str,
    version: str,
    labels: Mapping[str, str],
    creation_time: datetime | None,
    modification_time: datetime | None,
) -> Resource:
    """`Resource(kind, Meta(name, mesh, version, labels, creation_time, modification_time), spec)`, at half the
    cost, for paths that build thousands at once (KDS decoding, a store's batch apply)."""
    set_name, set_mesh, set_version, set_labels, set_created, set_modified = _META_SLOTS
    meta = _new_object(Meta)
    set_name(meta, name)
    set_mesh(meta, mesh)
    set_version(meta, version)
    set_labels(meta, labels)
    set_created(meta, creation_time)
    set_modified(meta, modification_time)
    set_kind, set_meta, set_spec = _RESOURCE_SLOTS
    resource = _new_object(Resource)
    set_kind(resource, kind)
    set_meta(resource, meta)
    set_spec(resource, spec)
    return resource
