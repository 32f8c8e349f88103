"""In-memory ResourceStore for tests and for zones that need no persistence."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from meshgate.resources.model import Resource, ResourceKey, utcnow
from meshgate.store.events import ChangeEvent, ChangeHub, Op
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, Page

__all__ = ["MemoryStore"]


class MemoryStore:
    def __init__(self) -> None:
        self._items: dict[ResourceKey, Resource] = {}
        self._versions = itertools.count(1)
        self._changes = ChangeHub()

    @property
    def changes(self) -> ChangeHub:
        return self._changes

    def _next_version(self) -> str:
        return str(next(self._versions))

    async def get(self, key: ResourceKey) -> Resource:
        try:
            return self._items[key]
        except KeyError:
            raise NotFoundError(key) from None

    async def list(
        self, kind: str, mesh: str | None = None, *, offset: int = 0, size: int | None = None
    ) -> Page:
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
        removed = [key]
        if key.kind == "Mesh":
            removed += [k for k in self._items if k.mesh == key.name and k.kind != "Mesh"]
        for k in removed:
            del self._items[k]
        self._changes.publish(ChangeEvent(k, Op.DELETE) for k in removed)

    async def apply_sync(
        self, kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]
    ) -> None:
        events: list[ChangeEvent] = []
        now = utcnow()
        for r in upserts:
            old = self._items.get(r.key)
            self._items[r.key] = r.with_meta(
                version=self._next_version(),
                creation_time=old.meta.creation_time if old else (r.meta.creation_time or now),
                modification_time=now,
            )
            events.append(ChangeEvent(r.key, Op.UPDATE if old else Op.CREATE))
        for key in removals:
            if self._items.pop(key, None) is not None:
                events.append(ChangeEvent(key, Op.DELETE))
        self._changes.publish(events)

    async def close(self) -> None:
        return None
