"""The one loop every reconciler runs over the store: reconcile now, then after every change of the kinds it
reads, until cancelled.

    await tg.start(partial(reconcile_forever, store, {kinds.MESH, kinds.SECRET}, step, log=WatchLog(log, "ca.failed")))

Level-triggered. A change is a hint to re-read, never the data: `step(batch)` gets what changed among
`kinds` since the previous step began (kind -> keys, or None for "the whole kind"), or None for "re-read
everything" (the first step, a periodic resync, the step after a failure, a `wake`). Changes that arrive
while a step runs are coalesced into the next one, so a burst of writes costs one or two steps, not one
each. A step that only needs "something changed" ignores the batch.

The loop subscribes before its first step, so no change after `started` is missed. It reports started
after subscribing (`Started.SUBSCRIBED`: a store that is down delays the work, never the process's
readiness) or after the first step that succeeded (`Started.RECONCILED`: for a reconciler whose empty
state must not be served, such as the KDS snapshots).

A step that raises StoreError is logged (`WatchLog.failed`) and retried after `backoff`, re-reading
everything; with `WatchLog.recovered` set, an outage is logged once and its end once. Any other exception
is a bug: it ends the task group loudly. `resync` seconds without a step trigger a full re-read: a
shared backend's lost events, or work that is due with time (certificate rotation).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

import anyio
import anyio.abc

from meshgate.backoff import Backoff
from meshgate.resources.model import ResourceKey
from meshgate.store.events import ChangeBatch, ChangeSubscriber
from meshgate.store.protocol import ResourceStore, StoreError

__all__ = ["RETRY_INITIAL", "RETRY_MAXIMUM", "Started", "Step", "Wake", "WatchLog", "reconcile_forever"]

# The default pause after a failed step: half a second at first (a store that blinked), growing to a few
# seconds (a store that is down is not hammered), with Backoff's jitter spreading replicas that failed together.
RETRY_INITIAL = 0.5
RETRY_MAXIMUM = 2.0

# What a step is given: the changes since the previous step began, or None to re-read everything.
Step = Callable[[ChangeBatch | None], Awaitable[object]]


class Started(Enum):
    SUBSCRIBED = "subscribed"
    RECONCILED = "reconciled"


class Wake(Protocol):
    """Something outside the store that asks for a step (meshgate.concurrency.Wakeup has this shape)."""

    async def wait(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WatchLog:
    """Where a loop logs and under which event names: each loop keeps its own logger and names."""

    logger: Any  # a structlog logger (structlog.get_logger returns an untyped proxy)
    # A step raised StoreError (warning, with `error` and `retry_in`).
    failed: str
    # A step succeeded after failures (info). When set, `failed` is logged once per outage, not per attempt.
    recovered: str | None = None
    # A periodic resync's step returned a true value, i.e. found what the change events had missed (info).
    resync_changed: str | None = None


class _Pending:
    """What changed among the wanted kinds since the last `take`: the coalescing buffer between the store's
    subscriber and the step."""

    def __init__(self, kinds: frozenset[str]) -> None:
        self._kinds = kinds
        self._batch: dict[str, set[ResourceKey] | None] = {}
        self._everything = False
        self._ready = anyio.Event()

    def add(self, batch: ChangeBatch) -> None:
        for kind, keys in batch.items():
            if kind not in self._kinds:
                continue
            if keys is None:
                self._batch[kind] = None
                self._ready.set()
                continue
            known = self._batch.setdefault(kind, set())
            if known is not None:
                known.update(keys)
            self._ready.set()

    def everything(self) -> None:
        self._everything = True
        self._ready.set()

    async def wait(self) -> None:
        await self._ready.wait()

    def take(self) -> ChangeBatch | None:
        batch = None if self._everything else {k: None if v is None else frozenset(v) for k, v in self._batch.items()}
        self._batch = {}
        self._everything = False
        self._ready = anyio.Event()
        return batch


async def _follow_store(sub: ChangeSubscriber, pending: _Pending) -> None:
    while True:
        pending.add(await sub.next_batch())


async def _follow_wake(wake: Wake, pending: _Pending) -> None:
    while True:
        await wake.wait()
        pending.everything()


async def reconcile_forever(
    store: ResourceStore,
    kinds: Collection[str],
    step: Step,
    *,
    log: WatchLog,
    resync: float | None = None,
    backoff: Backoff | None = None,
    wake: Wake | None = None,
    started: Started = Started.SUBSCRIBED,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Runs `step` at once, after every change of `kinds`, after `resync` quiet seconds and after every `wake`,
    until cancelled (module docstring). `backoff`: pauses after a failed step (default RETRY_INITIAL, growing
    to RETRY_MAXIMUM)."""
    retry = backoff if backoff is not None else Backoff(initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM)
    pending = _Pending(frozenset(kinds))
    async with store.changes.subscribe() as sub, anyio.create_task_group() as tg:
        tg.start_soon(_follow_store, sub, pending)
        if wake is not None:
            tg.start_soon(_follow_wake, wake, pending)
        reported = started is Started.SUBSCRIBED
        if reported:
            task_status.started()
        pending.everything()
        failing = resyncing = False
        while True:
            await pending.wait()
            batch = pending.take()
            try:
                result = await step(batch)
            except StoreError as exc:
                delay = retry.next_delay()
                if not (failing and log.recovered):
                    log.logger.warning(log.failed, error=str(exc), retry_in=round(delay, 3))
                failing = True
                pending.everything()  # whatever happened meanwhile, re-read everything once the store is back
                await anyio.sleep(delay)
                continue
            retry.reset()
            if failing and log.recovered:
                log.logger.info(log.recovered)
            if resyncing and result and log.resync_changed:
                log.logger.info(log.resync_changed)
            failing = False
            if not reported:
                reported = True
                task_status.started()
            with anyio.move_on_after(math.inf if resync is None else resync) as quiet:
                await pending.wait()
            resyncing = quiet.cancelled_caught
            if resyncing:
                pending.everything()
