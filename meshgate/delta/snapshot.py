"""Per-type snapshots: what a sender currently offers of one type, pre-serialized, with a short change log.

A snapshot is immutable. `evolve` returns the next revision, and remembers which wire names changed,
so a subscriber that was fully caught up at revision R can compute its delta from the names changed
since R instead of diffing every resource: one change fans out to many zones in O(changes).

It also counts its entries per origin zone (`zones`), kept up to date by `evolve` in O(changes): the global
offers each zone a kind's snapshot without that zone's own resources (`without_zone`), and asking that for
every zone at every revision must not scan every entry (50 zones x 10k routes was most of a change's CPU).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from meshgate.delta.entry import Entry

__all__ = ["HISTORY_LIMIT", "KindSnapshot"]

# How many revisions of change log to keep. A subscriber further behind than this falls back to a full
# diff, which is correct, only slower; 64 covers bursts without holding much memory.
HISTORY_LIMIT = 64


@dataclass(frozen=True, slots=True)
class KindSnapshot:
    kind: str  # the type URL: a KDS kind ("Mesh") or an Envoy type URL
    revision: int = 0
    entries: Mapping[str, Entry] = field(default_factory=dict)
    # (revision, names that changed to reach it), oldest first.
    history: tuple[tuple[int, frozenset[str]], ...] = ()
    # Origin zone -> how many entries came from it (Entry.zone; "" is not counted). None: counted from
    # `entries` on construction; `evolve` passes it updated.
    zones: Mapping[str, int] | None = None

    def __post_init__(self) -> None:
        if self.zones is None:
            counts: dict[str, int] = {}
            for e in self.entries.values():
                if e.zone:
                    counts[e.zone] = counts.get(e.zone, 0) + 1
            object.__setattr__(self, "zones", counts)

    # What `version_map` computed once for this (immutable) revision, shared by every stream.
    _memo: dict[str, object] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, kind: str, entries: Iterable[Entry], revision: int = 1) -> KindSnapshot:
        return cls(kind, revision, {e.name: e for e in entries})

    def versions(self) -> dict[str, str]:
        return {name: e.version for name, e in self.entries.items()}

    def version_map(self) -> Mapping[str, str]:
        """name -> version, computed once per revision (do not modify it): a resuming peer's
        initial_resource_versions compare with it as one dict comparison, in C (`DeltaStream`), instead of
        a diff name by name; after a global restart every zone resumes against the same revision."""
        versions = self._memo.get("versions")
        if versions is None:
            versions = self._memo["versions"] = self.versions()
        return versions  # type: ignore[return-value]

    def changed_since(self, revision: int) -> frozenset[str] | None:
        """Names changed after `revision`, or None when the log no longer reaches back that far."""
        if revision == self.revision:
            return frozenset()
        if revision > self.revision or not self.history or self.history[0][0] > revision + 1:
            return None
        names: set[str] = set()
        for rev, changed in self.history:
            if rev > revision:
                names |= changed
        return frozenset(names)

    def without_zone(self, zone: str) -> KindSnapshot:
        """This revision as `zone` sees it: without the resources that came from `zone` itself.

        Revision and change log stay the same, so a peer's delta is still computed from the names changed
        since its revision; a changed name missing here is simply one that peer never holds.
        """
        assert self.zones is not None
        if not self.zones.get(zone):
            return self
        entries = {n: e for n, e in self.entries.items() if e.zone != zone}
        zones = {z: n for z, n in self.zones.items() if z != zone}
        return KindSnapshot(self.kind, self.revision, entries, self.history, zones)

    def replace_all(self, entries: Iterable[Entry]) -> KindSnapshot:
        """A full reload: computes which names changed so the change log stays exact."""
        new = {e.name: e for e in entries}
        changes: dict[str, Entry | None] = {n: e for n, e in new.items()}
        changes.update({n: None for n in self.entries if n not in new})
        return self.evolve(changes)

    def evolve(self, changes: Mapping[str, Entry | None]) -> KindSnapshot:
        """Applies upserts (Entry) and removals (None). Returns self when nothing really changed."""
        entries = dict(self.entries)
        assert self.zones is not None
        zones = dict(self.zones)
        changed: set[str] = set()
        for name, entry in changes.items():
            old = entries.get(name)
            if entry is None:
                if old is not None:
                    del entries[name]
                    changed.add(name)
                    _count(zones, old.zone, -1)
            elif old is None or old.version != entry.version:
                entries[name] = entry
                changed.add(name)
                if old is not None:
                    _count(zones, old.zone, -1)
                _count(zones, entry.zone, 1)
        if not changed:
            return self
        revision = self.revision + 1
        history = (*self.history, (revision, frozenset(changed)))[-HISTORY_LIMIT:]
        return KindSnapshot(self.kind, revision, entries, history, zones)


def _count(zones: dict[str, int], zone: str, step: int) -> None:
    if zone:
        n = zones.get(zone, 0) + step
        if n:
            zones[zone] = n
        else:
            zones.pop(zone, None)
