"""A level-triggered wake-up flag: many `set()`s before one `wait()` coalesce into one wake."""

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
