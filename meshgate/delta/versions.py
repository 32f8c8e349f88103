"""What a stream believes a peer holds of one type (name -> version), as a cursor into a shared snapshot.

A global serving 10k resources to 200 zones would otherwise keep, per zone and per type, dicts of 10k
versions (`known`, `confirmed`) that equal the snapshot every zone is offered: about 205 KiB per 10k-entry
table, per zone (bench/zone_memory.py). `Versions` keeps instead the snapshot's entries (shared and
immutable: nothing is copied, a version is looked up as `entries[name].version`) plus a small overlay of
the names whose version differs (name -> version, or None for a name the peer does not hold). Writes go to
the overlay, and a write that matches the base removes the name from it, so once the peer holds exactly
the snapshot the overlay is empty: O(1) per resource.

It is a `MutableMapping`, so every reader and writer that used the plain dict works unchanged; only the
iteration order differs (base names first, then the overlay's), and no caller depends on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping

from meshgate.delta.entry import Entry

__all__ = ["Versions", "intern"]

_NO_ENTRIES: Mapping[str, Entry] = {}


class Versions(MutableMapping[str, str]):
    """name -> version: the versions of `base` (one snapshot's entries) with an overlay of differences."""

    __slots__ = ("_base", "_len", "_overlay")

    def __init__(self, base: Mapping[str, Entry] = _NO_ENTRIES) -> None:
        self._base = base
        # name -> the version held instead of the base's, or None: not held although the base has it.
        self._overlay: dict[str, str | None] = {}
        self._len = len(base)

    @property
    def base(self) -> Mapping[str, Entry]:
        return self._base

    @property
    def overlay_size(self) -> int:
        """How many names this stores for itself: 0 when it equals its base."""
        return len(self._overlay)

    def _version(self, name: str) -> str | None:
        overlay = self._overlay
        if name in overlay:
            return overlay[name]
        entry = self._base.get(name)
        return None if entry is None else entry.version

    def __getitem__(self, name: str) -> str:
        version = self._version(name)
        if version is None:
            raise KeyError(name)
        return version

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        # Spelled out (the Mapping mixin's goes through KeyError): compute_delta calls it per candidate.
        version = self._version(name)
        return default if version is None else version

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._version(name) is not None

    def __setitem__(self, name: str, version: str) -> None:
        if self._version(name) is None:
            self._len += 1
        entry = self._base.get(name)
        if entry is not None and entry.version == version:
            self._overlay.pop(name, None)
        else:
            self._overlay[name] = version

    def __delitem__(self, name: str) -> None:
        if self._version(name) is None:
            raise KeyError(name)
        self._len -= 1
        if name in self._base:
            self._overlay[name] = None
        else:
            del self._overlay[name]

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        overlay = self._overlay
        for name in self._base:
            if name not in overlay:
                yield name
        for name, version in overlay.items():
            if version is not None:
                yield name

    def __repr__(self) -> str:
        return f"Versions({dict(self)!r})"


def intern(entries: Mapping[str, Entry], versions: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """`versions` as a `Versions` on `entries` when that stores less, else `versions` itself.

    A resuming peer reports every version it holds (initial_resource_versions): mostly the snapshot's own,
    in strings of its own. Interned, those cost nothing per name, and the request's strings are let go."""
    if isinstance(versions, Versions) or len(versions) * 2 < len(entries):
        return versions
    overlay: dict[str, str | None] = {
        n: v for n, v in versions.items() if (e := entries.get(n)) is None or e.version != v
    }
    extra = sum(1 for n in overlay if n not in entries)
    if len(versions) - extra < len(entries):  # some of the base the peer does not hold
        overlay.update((n, None) for n in entries if n not in versions)
    if len(overlay) * 2 > len(versions):
        return versions
    view = Versions(entries)
    view._overlay, view._len = overlay, len(versions)
    return view
