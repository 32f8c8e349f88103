"""A coalescing work queue of instance keys, with client-go's workqueue rules.

- A key is queued at most once: ten events about one instance before a worker picks it up cost one reconcile.
- A key is never handed to two workers at once; a key that changes while a worker holds it is queued again
  when that worker calls `done`, so the newest state is always reconciled after the change.
- `add_after` schedules a retry (exponential backoff on failure) without a task per retry.

Bounded by construction: it holds at most one entry per distinct key (plus at most one delayed retry per key),
so its size is the number of MeshGatewayInstances, however fast events arrive. Producers never block, which
keeps watch streams and the store subscription draining.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

import anyio

__all__ = ["WorkQueue"]

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self) -> None:
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        # (due time, tie-breaker, key); at most one live entry per key, stale ones are skipped when popped.
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._sequence = itertools.count()
        self._wakeup = anyio.Event()

    def __len__(self) -> int:
        return len(self._queue)

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = anyio.Event()

    def add(self, key: K) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._wake()

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        due = anyio.current_time() + delay
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._sequence), key))
        self._wake()

    def _promote_due(self) -> float | None:
        """Moves due retries into the queue; returns the time of the next one, if any."""
        now = anyio.current_time()
        while self._delayed:
            due, _, key = self._delayed[0]
            if self._due.get(key) != due:
                heapq.heappop(self._delayed)
                continue
            if due > now:
                return due
            heapq.heappop(self._delayed)
            del self._due[key]
            self.add(key)
        return None

    async def get(self) -> K:
        """The next key to reconcile; the caller must call `done(key)` when finished with it."""
        while True:
            next_due = self._promote_due()
            if self._queue:
                key = self._queue.popleft()
                self._processing.add(key)
                self._dirty.discard(key)
                return key
            wakeup = self._wakeup
            if next_due is None:
                await wakeup.wait()
            else:
                with anyio.move_on_after(max(next_due - anyio.current_time(), 0)):
                    await wakeup.wait()

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._wake()
