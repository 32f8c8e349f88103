"""The level-triggered loop a reconciler runs over the store: reconcile now, then after every change of the
kinds it reads, until cancelled.

    await tg.start(reconcile_on_changes, store, {"Mesh", "Secret"}, provisioner.reconcile, "ca")

Started means subscribed, not reconciled: a store that is down at start delays the work, never the process's
readiness, and no change after `started` is missed. A StoreError is logged (`<name>.reconcile_failed`) and the
reconcile retried after a short pause, so a store outage is not a busy loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection

import anyio
import anyio.abc
import structlog

from meshgate.store.protocol import ResourceStore, StoreError

__all__ = ["RETRY_SECONDS", "reconcile_on_changes"]

log = structlog.get_logger(__name__)

RETRY_SECONDS = 0.5


async def reconcile_on_changes(
    store: ResourceStore,
    kinds: Collection[str],
    reconcile: Callable[[], Awaitable[None]],
    name: str,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    async with store.changes.subscribe() as sub:
        task_status.started()
        while True:
            try:
                await reconcile()
            except StoreError as exc:
                log.warning(f"{name}.reconcile_failed", error=str(exc))
                await anyio.sleep(RETRY_SECONDS)
                continue
            while not set(kinds) & (await sub.next_batch()).keys():
                pass
