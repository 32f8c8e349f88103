"""Keeps per-kind KDS snapshots in step with a store, and wakes every stream when one changes.

One `SnapshotSource` per process serves all streams: the store is read once per change, not once per
zone, and each stream computes its own delta against the shared, immutable snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

import anyio
import structlog

from meshgate.kds.envelope import to_wire
from meshgate.kds.naming import wire_name
from meshgate.kds.snapshot import Entry, KindSnapshot
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import Resource
from meshgate.store.events import ChangeBatch
from meshgate.store.protocol import NotFoundError, ResourceStore, StoreError, iter_all
from meshgate.transport.wakeup import Wakeup

__all__ = ["SnapshotSource"]

log = structlog.get_logger("meshgate.kds.snapshots")

# Page size for full reloads: big enough to read 10k resources in a few queries.
_PAGE = 5000


class SnapshotSource:
    def __init__(
        self,
        store: ResourceStore,
        kinds: Sequence[KindDescriptor],
        *,
        include: Callable[[Resource], bool],
        labels: Callable[[Resource], Mapping[str, str]],
        resync_interval: float = 60.0,
        origin_zone: Callable[[Resource], str] = lambda r: "",
    ) -> None:
        """`origin_zone(r)`: the zone `r` was relayed from, which `view` leaves out for that zone ("" for none)."""
        self._store = store
        self.kinds = tuple(kinds)
        self._include = include
        self._labels = labels
        self._resync_interval = resync_interval
        self.snapshots: dict[str, KindSnapshot] = {d.name: KindSnapshot(d.name) for d in kinds}
        self._listeners: set[Wakeup] = set()
        self._views: dict[tuple[str, str], KindSnapshot] = {}
        self._origin_zone = origin_zone

    @contextmanager
    def listen(self) -> Iterator[Wakeup]:
        wake = Wakeup()
        self._listeners.add(wake)
        try:
            yield wake
        finally:
            self._listeners.discard(wake)

    def _entry(self, r: Resource) -> Entry | None:
        return Entry.of(to_wire(r, self._labels(r)), self._origin_zone(r)) if self._include(r) else None

    def view(self, kind: str, zone: str) -> KindSnapshot:
        """The current snapshot of `kind` as sent to `zone`: without what `zone` itself sent up.

        Cached per zone until the kind's next revision, so a change fans out without refiltering per response.
        """
        snapshot = self.snapshots[kind]
        cached = self._views.get((kind, zone))
        if cached is not None and cached.revision == snapshot.revision:
            return cached
        view = snapshot.without_zone(zone)
        self._views[(kind, zone)] = view
        return view

    async def _load_all(self, kind: str) -> list[Entry]:
        return [e async for r in iter_all(self._store, kind, page_size=_PAGE) if (e := self._entry(r)) is not None]

    async def refresh(self, batch: ChangeBatch | None = None) -> bool:
        """Re-reads what `batch` names (everything when None). Returns whether any snapshot changed."""
        changed = False
        for d in self.kinds:
            if batch is not None and d.name not in batch:
                continue
            keys = None if batch is None else batch[d.name]
            old = self.snapshots[d.name]
            if keys is None:
                new = old.replace_all(await self._load_all(d.name))
            else:
                changes: dict[str, Entry | None] = {}
                for key in keys:
                    try:
                        changes[wire_name(key.name, key.mesh)] = self._entry(await self._store.get(key))
                    except NotFoundError:
                        changes[wire_name(key.name, key.mesh)] = None
                new = old.evolve(changes)
            if new is not old:
                self.snapshots[d.name] = new
                changed = True
        if changed:
            for wake in self._listeners:
                wake.set()
        return changed

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loads every kind, reports started, then follows the store's changes until cancelled.

        Started is reported only after a complete first load: serving an empty snapshot would tell every
        reconnecting zone to delete everything it holds. While the store is unavailable later on, the last
        snapshots keep serving and a full reload is retried until it succeeds.
        """
        # Subscribe before the first load, so no change between the load and the loop is lost.
        async with self._store.changes.subscribe() as sub:
            await self._refresh_until_ok(None)
            task_status.started()
            while True:
                with anyio.move_on_after(self._resync_interval) as scope:
                    batch = await sub.next_batch()
                # A timeout means a periodic full resync: it covers events lost by a shared backend.
                if await self._refresh_until_ok(None if scope.cancelled_caught else batch) and scope.cancelled_caught:
                    log.info("kds.snapshot.resync_found_changes")

    async def _refresh_until_ok(self, batch: ChangeBatch | None) -> bool:
        delay = 0.05
        failing = False
        while True:
            try:
                changed = await self.refresh(batch)
            except StoreError as exc:
                if not failing:
                    log.warning("kds.snapshot.store_unavailable", error=str(exc), serving="last snapshot")
                failing = True
                batch = None  # whatever happened meanwhile, re-read everything once the store is back
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if failing:
                log.info("kds.snapshot.store_back")
            return changed
