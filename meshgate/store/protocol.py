"""The ResourceStore contract that every backend (memory, sqlite, redis) implements.

Error tree of `meshgate.store`::

    StoreError
    ├── NotFoundError          no resource under that key
    ├── AlreadyExistsError     create() of a key that exists
    ├── ConflictError          update()/delete() with a stale version (optimistic concurrency)
    └── StoreUnavailableError  the backend cannot be reached (maps to HTTP 503)

Rules every backend keeps:
- `meta.version` is the store's own version string; every successful write assigns a new one.
- A write is all or nothing: a failed write changes nothing and emits no event.
- `write_batch` is create and update for many resources in one transaction: every check passes or nothing
  is written.
- Deleting a Mesh deletes every resource whose `mesh` is that Mesh's name, in the same transaction.
- Every committed write publishes a `ChangeEvent` on `changes` after the commit.
- `follow` is the change feed from other processes: a store that other processes write too (`shared`:
  replicas on one Redis) feeds their changes into `changes` while `follow` runs; a store only this process
  writes (memory, sqlite) has none to follow, and its `follow` reports started and returns.
- `list` orders by (mesh, name); paging is by offset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio
import anyio.abc

from meshgate.resources.model import Resource, ResourceKey
from meshgate.store.events import ChangeHub

__all__ = [
    "AlreadyExistsError",
    "ConflictError",
    "NotFoundError",
    "Page",
    "ResourceStore",
    "StoreError",
    "StoreUnavailableError",
    "check_distinct",
    "iter_all",
]


class StoreError(Exception):
    pass


class NotFoundError(StoreError):
    def __init__(self, key: ResourceKey) -> None:
        self.key = key
        super().__init__(f"{key} not found")


class AlreadyExistsError(StoreError):
    def __init__(self, key: ResourceKey) -> None:
        self.key = key
        super().__init__(f"{key} already exists")


class ConflictError(StoreError):
    def __init__(self, key: ResourceKey, expected: str, actual: str) -> None:
        self.key = key
        self.expected = expected
        self.actual = actual
        super().__init__(f"{key}: version conflict (expected {expected!r}, stored {actual!r})")


class StoreUnavailableError(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Resource]
    total: int
    # Offset of the next page, or None when this page is the last.
    next_offset: int | None


class ResourceStore(Protocol):
    @property
    def changes(self) -> ChangeHub: ...

    @property
    def shared(self) -> bool:
        """Whether other processes write this store too: their writes reach `changes` through `follow`, work
        that must run once per store needs a lease, and the store's server must prove it persists."""
        ...

    async def follow(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Feeds `changes` with other processes' writes until cancelled or closed; reports started once it
        follows (or tried to). Returns at once, after reporting started, where nothing else writes."""
        ...

    async def get(self, key: ResourceKey) -> Resource:
        """Raises NotFoundError."""
        ...

    async def list(self, kind: str, mesh: str | None = None, *, offset: int = 0, size: int | None = None) -> Page:
        """Resources of `kind` (in `mesh`, or every mesh when None), ordered by (mesh, name)."""
        ...

    async def create(self, resource: Resource) -> Resource:
        """Stores a new resource; returns it with version and times set. Raises AlreadyExistsError."""
        ...

    async def update(self, resource: Resource) -> Resource:
        """Replaces spec and labels if `resource.meta.version` equals the stored version.

        Raises NotFoundError or ConflictError. Keeps creation_time; sets modification_time.
        """
        ...

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        """Raises NotFoundError, or ConflictError when `version` is given and stale."""
        ...

    async def apply_sync(self, kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]) -> None:
        """Atomically upserts and removes, unconditionally: a KDS receiver mirroring its peer's state.

        Missing removals are ignored. One transaction and one event batch for the whole call.
        """
        ...

    async def write_batch(self, resources: Sequence[Resource]) -> None:
        """Creates or updates every resource in one transaction, all or nothing (`meshgatectl apply -f`).

        Each resource is checked as `create` and `update` check it: an empty `meta.version` means create
        (AlreadyExistsError when the key exists), any other means update from that version (NotFoundError,
        ConflictError). The first failing check raises and nothing is written, nothing published. Keys must
        be distinct (ValueError, before any change). One event batch for the whole call.
        """
        ...

    async def close(self) -> None: ...


async def iter_all(
    store: ResourceStore, kind: str, mesh: str | None = None, *, page_size: int = 1000
) -> AsyncIterator[Resource]:
    """Every resource of `kind` (in `mesh`), in the store's order, read page by page so a large kind never
    needs one huge query."""
    offset: int | None = 0
    while offset is not None:
        page = await store.list(kind, mesh, offset=offset, size=page_size)
        for resource in page.items:
            yield resource
        offset = page.next_offset


def check_distinct(resources: Sequence[Resource]) -> None:
    """`write_batch`'s precondition: one write per key, so every check reads the state before the batch."""
    seen: set[ResourceKey] = set()
    repeated: list[str] = []
    for r in resources:
        if r.key in seen:
            repeated.append(str(r.key))
        seen.add(r.key)
    if repeated:
        raise ValueError(f"write_batch given a key more than once: {', '.join(repeated[:10])}")
