"""Change notification: a store publishes which keys changed; subscribers get coalesced batches.

Subscribers never block a writer and never overflow. Each subscriber keeps a per-kind set of dirty
keys; when a kind accumulates more than `max_keys_per_kind` keys, it collapses to "the whole kind"
(None), which tells the reconciler to re-read that kind in full. Level-triggered: an event is a hint to
re-read the store, never the data itself, so a collapsed batch loses nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import NamedTuple

import anyio

from meshgate.resources.model import ResourceKey

__all__ = ["ChangeBatch", "ChangeEvent", "ChangeHub", "ChangeSubscriber", "Op"]

# kind -> the keys that changed, or None when the whole kind must be re-read.
ChangeBatch = Mapping[str, frozenset[ResourceKey] | None]


class Op(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"


class ChangeEvent(NamedTuple):
    """One committed change. A NamedTuple (built in C): a KDS full sync publishes one per resource, thousands
    in one batch, where a frozen dataclass's construction cost more than the store's own write."""

    key: ResourceKey
    op: Op


class ChangeSubscriber:
    def __init__(self, max_keys_per_kind: int) -> None:
        self._max = max_keys_per_kind
        self._pending: dict[str, set[ResourceKey] | None] = {}
        self._ready = anyio.Event()

    def _offer(self, events: Iterable[ChangeEvent]) -> None:
        for ev in events:
            kind = ev.key.kind
            if kind in self._pending:
                keys = self._pending[kind]
                if keys is None:
                    continue
            else:
                keys = self._pending[kind] = set()
            keys.add(ev.key)
            if len(keys) > self._max:
                self._pending[kind] = None
        self._ready.set()

    def _offer_kinds(self, kinds: Iterable[str]) -> None:
        for kind in kinds:
            self._pending[kind] = None
        self._ready.set()

    async def next_batch(self) -> ChangeBatch:
        """Waits until something changed, then returns everything pending and clears it."""
        await self._ready.wait()
        batch = {k: (frozenset(v) if v is not None else None) for k, v in self._pending.items()}
        self._pending = {}
        self._ready = anyio.Event()
        return batch


class ChangeHub:
    """Fan-out of committed changes to every subscriber in this process."""

    def __init__(self, max_keys_per_kind: int = 1024) -> None:
        self._subscribers: set[ChangeSubscriber] = set()
        self._max = max_keys_per_kind

    def publish(self, events: Iterable[ChangeEvent]) -> None:
        events = list(events)
        if not events:
            return
        for sub in self._subscribers:
            sub._offer(events)

    def collapses(self, keys: int) -> bool:
        """Whether a write of `keys` keys of one kind would collapse that kind in every subscriber: a store
        then publishes the kind (`publish_resync`) instead of one event per key, which every subscriber would
        walk only to drop (a KDS full sync writes 10k keys at once). The redis store names the kind past the
        same count (meshgate.store.redis_layout.EVENT_KEYS_PER_KIND)."""
        return keys > self._max

    def publish_resync(self, kinds: Iterable[str]) -> None:
        """Marks whole kinds dirty: after a lost connection to a shared backend, or a periodic resync."""
        kinds = list(kinds)
        if not kinds:
            # Like publish(): nothing changed, so wake nobody (an empty batch would be a spurious wakeup).
            return
        for sub in self._subscribers:
            sub._offer_kinds(kinds)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[ChangeSubscriber]:
        sub = ChangeSubscriber(self._max)
        self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
