"""When each name last went out on a stream (name -> (nonce, time)), held as runs over a snapshot's names.

`kds trace` shows, per zone and per name, the nonce and time of the last response that carried the name.
A dict of that costs a 10k-entry table per zone and type, although the values are few: one per response.
`Stamps` keeps them as runs: the names of `members` (one snapshot's entries, shared and immutable), sorted,
cut into ranges that share one stamp (None: not sent on this stream, such as what a resuming peer already
held). A full sync in k responses is k runs. A range is named by its first name only, and `name + "\\0"` is
the least string after `name`, so one name's new stamp is spliced in without knowing its neighbours.

Names sent since the runs were last rebuilt sit in an overlay; `settled` moves them into the runs. What
stays in the overlay is the stamps of names the snapshot no longer has (the removals sent), as before.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, MutableMapping

__all__ = ["Stamp", "Stamps"]

Stamp = tuple[str, float]  # (nonce, the caller's clock)

_NO_MEMBERS: Mapping[str, object] = {}
# Splices allowed before the runs are rebuilt from sorted names (dropping runs of names that are gone):
# rebuilding costs a sort of the snapshot's names, so it waits for this many runs beyond the last rebuild.
_SLACK = 256


class Stamps(MutableMapping[str, Stamp]):
    """name -> (nonce, time) of the response that last carried it."""

    __slots__ = ("_built", "_marks", "_members", "_overlay", "_starts")

    def __init__(self) -> None:
        self._members: Mapping[str, object] = _NO_MEMBERS
        # Runs: names >= _starts[i] (and < _starts[i + 1]) that are members have stamp _marks[i].
        self._starts: list[str] = [""]
        self._marks: list[Stamp | None] = [None]
        self._built = 1  # runs after the last rebuild
        self._overlay: dict[str, Stamp | None] = {}

    @property
    def overlay_size(self) -> int:
        return len(self._overlay)

    @property
    def runs(self) -> int:
        return len(self._starts)

    def _run_mark(self, name: str) -> Stamp | None:
        return self._marks[bisect_right(self._starts, name) - 1]

    def _stamp(self, name: str) -> Stamp | None:
        overlay = self._overlay
        if name in overlay:
            return overlay[name]
        return self._run_mark(name) if name in self._members else None

    def __getitem__(self, name: str) -> Stamp:
        stamp = self._stamp(name)
        if stamp is None:
            raise KeyError(name)
        return stamp

    def get(self, name: str, default: Stamp | None = None) -> Stamp | None:  # type: ignore[override]
        stamp = self._stamp(name)
        return default if stamp is None else stamp

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._stamp(name) is not None

    def __setitem__(self, name: str, stamp: Stamp) -> None:
        self._overlay[name] = stamp

    def __delitem__(self, name: str) -> None:
        if self._stamp(name) is None:
            raise KeyError(name)
        self._overlay[name] = None

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay
        for name in self._members:
            if name not in overlay and self._run_mark(name) is not None:
                yield name
        for name, stamp in overlay.items():
            if stamp is not None:
                yield name

    def __len__(self) -> int:
        """O(names): only tests and diagnostics count."""
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"Stamps({dict(self)!r})"

    @classmethod
    def settled(cls, members: Mapping[str, object], stamps: Mapping[str, Stamp]) -> Stamps:
        """`stamps` with runs over `members`, the names the peer now holds (a snapshot's entries).

        A name that joined or left the members since `stamps` last settled must have been stamped since
        (sent, or sent a removal): the stream settles only once the peer holds exactly `members`, and the
        peer's names change only by what is sent."""
        if isinstance(stamps, Stamps):
            stamps._settle(members)
            return stamps
        out = cls()
        out._rebuild(members, stamps)
        return out

    def _settle(self, members: Mapping[str, object]) -> None:
        if members is self._members and not self._overlay:
            return
        moved = sorted(n for n in self._overlay if n in members)
        if len(self._starts) + 2 * len(moved) > 2 * self._built + _SLACK:
            self._rebuild(members, self)
            return
        for name in moved:
            stamp = self._overlay.pop(name)
            if stamp is not None:
                self._splice(name, stamp)
        self._members = members

    def _splice(self, name: str, stamp: Stamp) -> None:
        starts, marks = self._starts, self._marks
        i = bisect_right(starts, name) - 1
        before = marks[i]
        if before == stamp:
            return
        after = name + "\0"  # the least string after `name`: the rest of run i resumes there
        if i + 1 == len(starts) or starts[i + 1] != after:
            starts.insert(i + 1, after)
            marks.insert(i + 1, before)
        if starts[i] == name:
            marks[i] = stamp
        else:
            starts.insert(i + 1, name)
            marks.insert(i + 1, stamp)

    def _rebuild(self, members: Mapping[str, object], stamps: Mapping[str, Stamp]) -> None:
        starts: list[str] = [""]
        marks: list[Stamp | None] = [None]
        distinct = {stamps.get(name) for name in members}
        # One response carried everything (or nothing was sent): one run, no sort.
        for name in sorted(members) if len(distinct) > 1 else ():
            stamp = stamps.get(name)
            if stamp != marks[-1]:
                if name == starts[-1]:
                    marks[-1] = stamp
                else:
                    starts.append(name)
                    marks.append(stamp)
        if len(distinct) == 1:
            marks[0] = distinct.pop()
        # What stays outside the runs: the stamps of names that are not members (removals sent).
        overlay = self._overlay if stamps is self else stamps
        self._overlay = {n: s for n, s in overlay.items() if n not in members and s is not None}
        self._starts, self._marks, self._built, self._members = starts, marks, len(starts), members
