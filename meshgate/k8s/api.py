"""`KubeApi`: the few Kubernetes API calls the gateway reconciler makes, as a Protocol.

Objects cross this boundary as plain JSON dicts (what the API server sends and receives), so the rendering and
the reconciler never see a client library's types. `meshgate.k8s.client.LightkubeApi` implements it against a
real API server; `meshgate.k8s.testing.FakeKubeApi` stands in for one in tests.

Every method raises only `meshgate.k8s.errors` exceptions (`KubeUnavailableError`, `KubeApiError` and its
subclasses); "not found" is a return value, never an exception.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from meshgate.k8s.instance import API_VERSION, KIND

__all__ = ["FIELD_MANAGER", "Kind", "KubeApi", "KubeObject", "ObjectList", "WatchEvent", "WatchEventType"]

# The field manager of every server-side apply: the fields meshgate sets are owned under this name.
FIELD_MANAGER = "meshgate"

KubeObject = dict[str, Any]


class Kind(StrEnum):
    """The kinds the reconciler touches. The value is the object's `kind`."""

    MESH_GATEWAY_INSTANCE = KIND
    DEPLOYMENT = "Deployment"
    SERVICE = "Service"
    NAMESPACE = "Namespace"
    # Read only, to check that a proxy's service account token belongs to a gateway Pod (token_review.py).
    POD = "Pod"

    @property
    def api_version(self) -> str:
        return {
            Kind.MESH_GATEWAY_INSTANCE: API_VERSION,
            Kind.DEPLOYMENT: "apps/v1",
            Kind.SERVICE: "v1",
            Kind.NAMESPACE: "v1",
            Kind.POD: "v1",
        }[self]

    @property
    def namespaced(self) -> bool:
        return self is not Kind.NAMESPACE


class WatchEventType(StrEnum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    type: WatchEventType
    object: KubeObject


@dataclass(frozen=True, slots=True)
class ObjectList:
    items: list[KubeObject] = field(default_factory=list)
    # Where a watch continues from, so that nothing between the list and the watch is missed.
    resource_version: str = ""


class KubeApi(Protocol):
    async def get(self, kind: Kind, namespace: str, name: str) -> KubeObject | None:
        """The object, or None when there is none. `namespace` is "" for a Namespace."""
        ...

    async def list(self, kind: Kind) -> ObjectList:
        """Every object of `kind` in every namespace."""
        ...

    def watch(self, kind: Kind, *, resource_version: str) -> AsyncGenerator[WatchEvent, None]:
        """Changes after `resource_version`, until the server ends the stream or fails it
        (`KubeGoneError` when the version is too old to resume from)."""
        ...

    async def apply(self, obj: KubeObject) -> KubeObject:
        """Server-side apply with field manager `FIELD_MANAGER`, forcing conflicts (meshgate is the
        controller of what it renders); returns the object as stored, status included."""
        ...

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """False when there was nothing to delete."""
        ...

    async def patch_status(self, kind: Kind, namespace: str, name: str, patch: KubeObject) -> KubeObject | None:
        """A JSON merge patch on the status subresource; None when the object is gone."""
        ...

    async def review_token(self, token: str, audiences: Sequence[str]) -> KubeObject:
        """POSTs an `authentication.k8s.io/v1` TokenReview and returns its `status` (`authenticated`, `user`
        with `username` and `extra`, `audiences`, `error`): the API server's verdict on a bearer token."""
        ...
