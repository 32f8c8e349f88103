"""The cyclic garbage collector: paused around one large synchronous batch, and kept off the startup heap.

A KDS full sync decodes and stores tens of thousands of resources at once. Every object it allocates lives on
(the store keeps it), yet each allocation counts towards the collector's thresholds, so a batch triggers
collections that scan the whole heap for cycles that are not there: about a third of a zone's CPU time for a
10k-resource sync. Reference counting still frees everything outside a cycle while the collector is paused;
the collector runs as usual afterwards.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["freeze_long_lived", "gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pauses the collector for the body, which must not await: other tasks never run with it paused. A caller
    bounds the batch (a KDS response is bounded by the message size), so what it allocates meanwhile is too."""
    if not gc.isenabled():  # already paused by an enclosing batch (or by the process): leave it as it is
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def freeze_long_lived() -> int:
    """Collects once, then moves every object alive now out of the collector's reach (`gc.freeze`); returns
    how many. Call it once, when a process has loaded its store and is ready.

    What a control plane loads at startup (10k routes: their resources, snapshot entries and wire messages)
    lives until it changes, yet every full collection walks all of it: 60-90 ms on a 10k-route global, which
    landed inside one change in forty and made it three times slower than the rest (bench/propagation.py's
    p99). Frozen objects are still freed by reference counting when they go; only a cycle among them would
    stay, and none of the loaded structures form one.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
