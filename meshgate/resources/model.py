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

from google.protobuf.message import Message

__all__ = [
    "LABEL_DISPLAY_NAME",
    "LABEL_ORIGIN",
    "LABEL_ZONE",
    "Meta",
    "Origin",
    "Resource",
    "ResourceKey",
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


@dataclass(frozen=True, slots=True, order=True)
class ResourceKey:
    """Identity of a resource in a store. `mesh` is "" for kinds that are not mesh-scoped (Mesh)."""

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
        return ResourceKey(self.kind, self.meta.mesh, self.meta.name)

    def with_meta(self, **changes: object) -> Resource:
        return dataclasses.replace(self, meta=dataclasses.replace(self.meta, **changes))  # type: ignore[arg-type]
