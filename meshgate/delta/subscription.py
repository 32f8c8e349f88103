"""What a peer asked for, for one type: everything (wildcard), named resources, or both.

Delta xDS rules (envoyproxy/envoy api/envoy/service/discovery/v3/discovery.proto): `*` subscribes to
everything, another name to that resource; unsubscribing `*` leaves only the named ones. KDS streams are
always wildcard.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["EVERYTHING", "NOTHING", "WILDCARD", "Subscription"]

WILDCARD = "*"


@dataclass(frozen=True, slots=True)
class Subscription:
    wildcard: bool = False
    names: frozenset[str] = frozenset()

    def covers(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def apply(self, subscribe: Iterable[str], unsubscribe: Iterable[str]) -> Subscription:
        wildcard, names = self.wildcard, set(self.names)
        for name in subscribe:
            if name == WILDCARD:
                wildcard = True
            else:
                names.add(name)
        for name in unsubscribe:
            if name == WILDCARD:
                wildcard = False
            else:
                names.discard(name)
        return Subscription(wildcard, frozenset(names))


EVERYTHING = Subscription(wildcard=True)
NOTHING = Subscription()
