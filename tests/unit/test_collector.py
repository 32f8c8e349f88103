"""meshgate.collector.freeze_long_lived: the startup heap leaves the collector's reach, garbage does not."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from meshgate.collector import freeze_long_lived


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Starts with nothing frozen and gives the test process its collector back unfrozen."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_live_objects_are_frozen_and_pending_cycles_collected_first(unfrozen: None) -> None:
    kept = [Node() for _ in range(100)]
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle that is already garbage once dropped
    garbage = weakref.ref(a)
    del a, b

    frozen = freeze_long_lived()

    assert frozen == gc.get_freeze_count() > 0
    assert garbage() is None  # collected before the freeze, not frozen for ever
    assert not any(o is kept for o in gc.get_objects())  # the live list is out of every generation
    assert all(gc.is_tracked(n) for n in kept)  # still ordinary objects, only not scanned


def test_a_frozen_object_is_still_freed_when_its_last_reference_goes(unfrozen: None) -> None:
    node = Node()
    gone = weakref.ref(node)
    freeze_long_lived()
    del node
    assert gone() is None
