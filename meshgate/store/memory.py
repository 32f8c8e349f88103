"""In-memory ResourceStore for tests and for zones that need no persistence."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import anyio
import anyio.abc

from meshgate.collector import gc_paused
from meshgate.resources import kinds
from meshgate.resources.model import Resource, ResourceKey, built, utcnow
from meshgate.store.events import ChangeEvent, ChangeHub, Op
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, Page, check_distinct

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._items: dict[ResourceKey, Resource] = {}
        self._versions = itertools.count(1)
        self._changes = ChangeHub()

    @property
    def changes(self) -> ChangeHub:
        return self._changes

    @property
    def shared(self) -> bool:
        return False

    async def follow(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Only this process writes: every change is published by the write itself.
        task_status.started()

    def _next_version(self) -> str:
        return str(next(self._versions))

    async def get(self, key: ResourceKey) -> Resource:
        try:
            return self._items[key]
        except KeyError:
            raise NotFoundError(key) from None

    async def list(self, kind: str, mesh: str | None = None, *, offset: int = 0, size: int | None = None) -> Page:
        # A size of 0 would answer next_offset == offset forever, and a negative offset sliced from the end.
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if size is not None and size < 1:
            raise ValueError(f"size must be >= 1 or None, got {size}")
        matching = sorted(
            (r for k, r in self._items.items() if k.kind == kind and (mesh is None or k.mesh == mesh)),
            key=lambda r: (r.meta.mesh, r.meta.name),
        )
        end = len(matching) if size is None else offset + size
        return Page(matching[offset:end], len(matching), end if end < len(matching) else None)

    async def create(self, resource: Resource) -> Resource:
        key = resource.key
        if key in self._items:
            raise AlreadyExistsError(key)
        now = utcnow()
        stored = resource.with_meta(version=self._next_version(), creation_time=now, modification_time=now)
        self._items[key] = stored
        self._changes.publish([ChangeEvent(key, Op.CREATE)])
        return stored

    async def update(self, resource: Resource) -> Resource:
        key = resource.key
        current = await self.get(key)
        if resource.meta.version != current.meta.version:
            raise ConflictError(key, resource.meta.version, current.meta.version)
        stored = resource.with_meta(
            version=self._next_version(),
            creation_time=current.meta.creation_time,
            modification_time=utcnow(),
        )
        self._items[key] = stored
        self._changes.publish([ChangeEvent(key, Op.UPDATE)])
        return stored

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        current = await self.get(key)
        if version is not None and version != current.meta.version:
            raise ConflictError(key, version, current.meta.version)
        removed = self._remove(key)
        self._changes.publish(ChangeEvent(k, Op.DELETE) for k in removed)

    def _remove(self, key: ResourceKey) -> Sequence[ResourceKey]:
        """Removes `key` and, for a Mesh, every resource in that mesh (the cascade); returns what went."""
        if self._items.pop(key, None) is None:
            return []
        removed = [key]
        if key.kind == kinds.MESH:
            removed += [k for k in self._items if k.mesh == key.name and k.kind != kinds.MESH]
            for k in removed[1:]:
                del self._items[k]
        return removed

    async def apply_sync(self, kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]) -> None:
        # Checked before any change, so a wrong call changes nothing.
        stray = ({r.kind for r in upserts} | {k.kind for k in removals}) - {kind}
        if stray:
            raise ValueError(f"apply_sync({kind!r}) given resources of other kinds: {sorted(stray)}")
        events: list[ChangeEvent] = []
        now = utcnow()
        items, versions = self._items, self._versions
        whole_kind = self._changes.collapses(len(upserts))
        # A KDS full sync lands here with thousands of resources: each key is built once, and the stored copy
        # is built directly (model.built) rather than through `with_meta` (two dataclasses.replace calls).
        with gc_paused():
            for r in upserts:
                m = r.meta
                key = r.key
                old = items.get(key)
                created = old.meta.creation_time if old else (m.creation_time or now)
                items[key] = built(r.kind, r.spec, m.name, m.mesh, str(next(versions)), m.labels, created, now)
                if not whole_kind:
                    events.append(ChangeEvent(key, Op.UPDATE if old else Op.CREATE))
        for key in removals:
            # A removed Mesh cascades here too: the protocol's Mesh rule holds for every delete.
            events.extend(ChangeEvent(k, Op.DELETE) for k in self._remove(key))
        if whole_kind:
            self._changes.publish_resync([kind])
        self._changes.publish(events)

    async def write_batch(self, resources: Sequence[Resource]) -> None:
        check_distinct(resources)
        # Every check before the first change: a failing one leaves the store as it was.
        for r in resources:
            current = self._items.get(r.key)
            if not r.meta.version:
                if current is not None:
                    raise AlreadyExistsError(r.key)
            elif current is None:
                raise NotFoundError(r.key)
            elif r.meta.version != current.meta.version:
                raise ConflictError(r.key, r.meta.version, current.meta.version)
        now = utcnow()
        events: list[ChangeEvent] = []
        for r in resources:
            old = self._items.get(r.key)
            self._items[r.key] = r.with_meta(
                version=self._next_version(),
                creation_time=old.meta.creation_time if old else now,
                modification_time=now,
            )
            events.append(ChangeEvent(r.key, Op.UPDATE if old else Op.CREATE))
        self._changes.publish(events)

    async def close(self) -> None:
        return None
