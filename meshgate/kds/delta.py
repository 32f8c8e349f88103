"""The delta: a pure function of a snapshot and what the peer is known to hold.

`compute_delta` never looks at sockets or clocks. It also splits: a response carries at most
`max_bytes` of resources, and a resource that alone exceeds the budget is reported by name instead of
being sent (Kuma kills the stream in that case without saying which resource it was).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE, payload_budget
from meshgate.kds.snapshot import Entry, KindSnapshot

__all__ = ["DEFAULT_MAX_BYTES", "Delta", "compute_delta"]

# Kuma's 10 MiB message cap minus room for the response envelope: a Kuma peer reads the first response per
# kind as the whole state, so splitting below Kuma's own cap would make it delete and re-create the tail.
DEFAULT_MAX_BYTES = payload_budget(DEFAULT_MAX_MSG_SIZE)
# Per-item framing inside DeltaDiscoveryResponse: a tag and a length varint (at most 1 + 5 bytes).
_FRAMING = 6


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


def compute_delta(
    snapshot: KindSnapshot,
    known: Mapping[str, str],
    *,
    since_revision: int | None = None,
    skip: Mapping[str, str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> Delta:
    """What to send so that a peer holding `known` (name -> version) converges to `snapshot`.

    `since_revision`: the snapshot revision at which `known` was last equal to the snapshot; when the
    change log reaches back to it, only the names changed since are examined.
    `skip`: name -> version pairs not to send again (oversized ones); a new version is tried again.
    """
    candidates: frozenset[str] | None = None
    if since_revision is not None:
        candidates = snapshot.changed_since(since_revision)
    if candidates is None:
        names: set[str] | frozenset[str] = snapshot.entries.keys() | known.keys()
    else:
        names = candidates

    entries = snapshot.entries
    skip = skip or {}
    upserts: list[Entry] = []
    removals: list[str] = []
    oversized: dict[str, str] = {}
    budget = max_bytes
    complete = True
    # Sorted, so splitting is deterministic and a resumed transfer continues where it stopped.
    for name in sorted(names):
        entry = entries.get(name)
        if entry is None:
            if name in known:
                cost = len(name) + _FRAMING
                if cost > budget:
                    complete = False
                    break
                removals.append(name)
                budget -= cost
            continue
        if known.get(name) == entry.version or skip.get(name) == entry.version:
            continue
        cost = entry.size + _FRAMING
        if cost > max_bytes:
            oversized[name] = entry.version
            continue
        if cost > budget:
            complete = False
            break
        upserts.append(entry)
        budget -= cost
    return Delta(tuple(upserts), tuple(removals), oversized, complete)
