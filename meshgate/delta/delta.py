"""The delta: a pure function of a snapshot, a subscription and what the peer is known to hold.

`compute_delta` never looks at sockets or clocks. It serves both protocols:

- candidates: the names changed since the revision the peer was last in step at (the snapshot's change
  log), or every name offered or held when the log does not reach back that far;
- `subscription`: names it does not cover are neither sent nor removed (xDS by-name subscriptions);
- `skip`: name -> version pairs not to send again (KDS's oversized ones); a new version is tried again;
- `force`: names sent even when the peer holds their version (xDS: endpoints of a cluster just re-sent);
- `hold_upserts` / `hold_removals`: defer a part of the delta for the xDS ordering rules;
- `max_bytes`: a response carries at most this many bytes of resources, and a resource that alone exceeds
  the budget is reported by name (`oversized`) instead of being sent (Kuma kills the stream in that case
  without saying which resource it was). `complete` is False when the budget cut the response short.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from meshgate.delta.entry import Entry
from meshgate.delta.snapshot import KindSnapshot
from meshgate.delta.subscription import EVERYTHING, Subscription
from meshgate.delta.versions import Versions

__all__ = ["FRAMING", "Delta", "compute_delta"]

# Per-item framing inside DeltaDiscoveryResponse: a tag and a length varint (at most 1 + 5 bytes).
FRAMING = 6


@dataclass(frozen=True, slots=True)
class Delta:
    upserts: tuple[Entry, ...]
    removals: tuple[str, ...]
    # Resources that can never fit a message: name -> version. They are skipped, and reported.
    oversized: Mapping[str, str]
    # False when the size budget cut this response short and more remains to send.
    complete: bool

    @property
    def empty(self) -> bool:
        return not self.upserts and not self.removals


def _in_step(known: Mapping[str, str], entries: Mapping[str, Entry]) -> bool:
    """`known` is a view that equals `entries` (meshgate.delta.versions), so no name differs."""
    return isinstance(known, Versions) and known.base is entries and known.overlay_size == 0


def compute_delta(
    snapshot: KindSnapshot,
    known: Mapping[str, str],
    *,
    subscription: Subscription = EVERYTHING,
    since_revision: int | None = None,
    skip: Mapping[str, str] | None = None,
    force: Collection[str] = (),
    hold_upserts: bool = False,
    hold_removals: bool = False,
    max_bytes: int | None = None,
) -> Delta:
    """What to send so that a peer holding `known` (name -> version) converges to `snapshot`.

    `since_revision`: the snapshot revision at which `known` was last equal to the snapshot (for the names
    the subscription covers); when the change log reaches back to it, only the names changed since (and the
    forced ones) are examined.
    """
    candidates: frozenset[str] | None = None
    if since_revision is not None:
        candidates = snapshot.changed_since(since_revision)
    if candidates is None and _in_step(known, snapshot.entries):
        candidates = frozenset()  # `known` is the snapshot: only forced names can be due
    names: set[str] | frozenset[str]
    if candidates is None:
        names = snapshot.entries.keys() | known.keys()
    else:
        names = candidates | set(force) if force else candidates

    entries = snapshot.entries
    skip = skip or {}
    upserts: list[Entry] = []
    removals: list[str] = []
    oversized: dict[str, str] = {}
    budget = max_bytes
    complete = True
    # Sorted, so responses are deterministic and a resumed transfer continues where it stopped.
    for name in sorted(names):
        if not subscription.covers(name):
            continue
        entry = entries.get(name)
        if entry is None:
            if name in known and not hold_removals:
                cost = len(name) + FRAMING
                if budget is not None:
                    if cost > budget:
                        complete = False
                        break
                    budget -= cost
                removals.append(name)
            continue
        if hold_upserts:
            continue
        if name not in force and (known.get(name) == entry.version or skip.get(name) == entry.version):
            continue
        if budget is not None:
            assert max_bytes is not None
            cost = entry.size + FRAMING
            if cost > max_bytes:
                oversized[name] = entry.version
                continue
            if cost > budget:
                complete = False
                break
            budget -= cost
        upserts.append(entry)
    return Delta(tuple(upserts), tuple(removals), oversized, complete)
