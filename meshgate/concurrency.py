"""Concurrency primitives the adapters share, on anyio.

`Wakeup` is a level-triggered wake-up flag: many `set()`s before one `wait()` coalesce into one wake. A loop
that recomputes from the store on every wake needs no more: it reads the latest state, so a queue of changes
would only make it compute the same thing several times.
"""

from __future__ import annotations

import anyio

__all__ = ["Wakeup"]


class Wakeup:
    def __init__(self) -> None:
        self._event = anyio.Event()

    def set(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()
        self._event = anyio.Event()
