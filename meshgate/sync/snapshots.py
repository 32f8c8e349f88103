"""Keeps per-kind KDS snapshots in step with a store, and wakes every stream when one changes.

One `SnapshotSource` per process serves all streams: the store is read once per change, not once per
zone, and each stream computes its own delta against the shared, immutable snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import anyio
import structlog

from meshgate.backoff import Backoff
from meshgate.concurrency import Wakeup
from meshgate.delta import Entry, KindSnapshot
from meshgate.kds.envelope import to_wire
from meshgate.kds.naming import wire_name
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import Resource, ResourceKey
from meshgate.store.events import ChangeBatch
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.store.watch import Started, WatchLog, reconcile_forever

__all__ = ["SnapshotSource"]

log = structlog.get_logger(__name__)

# Page size for full reloads: big enough to read 10k resources in a few queries.
_PAGE = 5000
# Pause after a failed reload (seconds): short at first, so a store that blinked costs little staleness,
# growing to a cap that does not hammer a store that is down.
_RETRY = (0.05, 2.0)


@dataclass(slots=True)
class _Family:
    """One way of naming what the source offers: the snapshots per kind, and the wire name each stored key
    is offered under (a mapper may rename, so a removal cannot recompute it from the key)."""

    mapper: Callable[[Resource], Resource]
    snapshots: dict[str, KindSnapshot]
    names: dict[ResourceKey, str] = field(default_factory=dict)


class SnapshotSource:
    def __init__(
        self,
        store: ResourceStore,
        kinds: Sequence[KindDescriptor],
        *,
        include: Callable[[Resource], bool],
        mapper: Callable[[Resource], Resource],
        hashed: tuple[Collection[str], Callable[[Resource], Resource]] | None = None,
        resync_interval: float = 60.0,
        origin_zone: Callable[[Resource], str] = lambda r: "",
    ) -> None:
        """`mapper(r)`: `r` as peers receive it (meshgate.kds.ownership). `hashed`: the kinds peers with the
        `hash-suffix` feature receive otherwise, and the mapper for them; `view(..., hash_suffix=True)`.
        `origin_zone(r)`: the zone `r` was relayed from, which `view` leaves out for that zone ("" for none)."""
        self._store = store
        self.kinds = tuple(kinds)
        self._include = include
        self._resync_interval = resync_interval
        self._plain = _Family(mapper, {d.name: KindSnapshot(d.name) for d in kinds})
        self._hashed = _Family(
            hashed[1] if hashed else mapper,
            {d.name: KindSnapshot(d.name) for d in kinds if hashed and d.name in hashed[0]},
        )
        self.snapshots = self._plain.snapshots
        self._listeners: set[Wakeup] = set()
        self._views: dict[tuple[str, str, bool], KindSnapshot] = {}
        self._origin_zone = origin_zone

    def _families(self, kind: str) -> tuple[_Family, ...]:
        return (self._plain, self._hashed) if kind in self._hashed.snapshots else (self._plain,)

    def snapshot(self, kind: str, *, hash_suffix: bool = False) -> KindSnapshot:
        """The current snapshot of `kind` as a peer with (or without) the `hash-suffix` feature gets it."""
        family = self._hashed if hash_suffix and kind in self._hashed.snapshots else self._plain
        return family.snapshots[kind]

    @contextmanager
    def listen(self) -> Iterator[Wakeup]:
        wake = Wakeup()
        self._listeners.add(wake)
        try:
            yield wake
        finally:
            self._listeners.discard(wake)

    def offered(self, key: ResourceKey, zone: str | None, *, hash_suffix: bool) -> tuple[str, Entry | None]:
        """The wire name `key` has for a zone with (or without) `hash-suffix`, and the entry offered under it:
        to `zone` (None: what the global offers such zones at all). The entry is None when nothing is
        offered (deleted, or `zone`'s own)."""
        family = self._hashed if hash_suffix and key.kind in self._hashed.snapshots else self._plain
        name = family.names.get(key) or wire_name(key.name, key.mesh)
        if zone is None:
            return name, family.snapshots[key.kind].entries.get(name)
        return name, self.view(key.kind, zone, hash_suffix=hash_suffix).entries.get(name)

    def _entry(self, family: _Family, r: Resource) -> Entry:
        return Entry.of(to_wire(family.mapper(r)), self._origin_zone(r))

    def view(self, kind: str, zone: str, *, hash_suffix: bool = False) -> KindSnapshot:
        """The current snapshot of `kind` as sent to `zone`: without what `zone` itself sent up.

        Cached per zone until the kind's next revision, so a change fans out without refiltering per response.
        """
        snapshot = self.snapshot(kind, hash_suffix=hash_suffix)
        assert snapshot.zones is not None
        if zone not in snapshot.zones:
            return snapshot  # nothing of the zone's own (most kinds, always): the shared snapshot itself
        cached = self._views.get((kind, zone, hash_suffix))
        if cached is not None and cached.revision == snapshot.revision:
            return cached
        view = snapshot.without_zone(zone)
        self._views[(kind, zone, hash_suffix)] = view
        return view

    async def _load_all(self, kind: str) -> list[Resource]:
        return [r async for r in iter_all(self._store, kind, page_size=_PAGE) if self._include(r)]

    async def refresh(self, batch: ChangeBatch | None = None) -> bool:
        """Re-reads what `batch` names (everything when None). Returns whether any snapshot changed."""
        changed = False
        for d in self.kinds:
            if batch is not None and d.name not in batch:
                continue
            keys = None if batch is None else batch[d.name]
            found: dict[ResourceKey, Resource | None] = {}
            if keys is None:
                found = {r.key: r for r in await self._load_all(d.name)}
            else:
                for key in keys:
                    try:
                        r = await self._store.get(key)
                    except NotFoundError:
                        r = None
                    found[key] = r if r is not None and self._include(r) else None
            for family in self._families(d.name):
                changed |= self._apply(family, d.name, found, full=keys is None)
        if changed:
            for wake in self._listeners:
                wake.set()
        return changed

    def _apply(self, family: _Family, kind: str, found: Mapping[ResourceKey, Resource | None], *, full: bool) -> bool:
        old = family.snapshots[kind]
        changes: dict[str, Entry | None] = {}
        if full:
            gone = [k for k in family.names if k.kind == kind and k not in found]
            found = {**found, **dict.fromkeys(gone)}
        for key, r in found.items():
            previous = family.names.pop(key, None)
            if previous is not None:
                changes[previous] = None
            if r is not None:
                entry = self._entry(family, r)
                family.names[key] = entry.name
                changes[entry.name] = entry
        new = old.replace_all(e for e in changes.values() if e is not None) if full else old.evolve(changes)
        family.snapshots[kind] = new
        return new is not old

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loads every kind, reports started, then follows the store's changes until cancelled.

        Started is reported only after a complete first load: serving an empty snapshot would tell every
        reconnecting zone to delete everything it holds. While the store is unavailable later on, the last
        snapshots keep serving and a full reload is retried until it succeeds. A periodic full reload every
        `resync_interval` quiet seconds covers events lost by a shared backend.
        """
        await reconcile_forever(
            self._store,
            [d.name for d in self.kinds],
            self.refresh,
            resync=self._resync_interval,
            backoff=Backoff(initial=_RETRY[0], maximum=_RETRY[1]),
            log=WatchLog(
                log,
                "kds.snapshot.store_unavailable",
                recovered="kds.snapshot.store_back",
                resync_changed="kds.snapshot.resync_found_changes",
            ),
            started=Started.RECONCILED,
            task_status=task_status,
        )
