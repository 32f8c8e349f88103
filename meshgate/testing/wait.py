"""Waiting by polling with a deadline: never a bare sleep, never a wall-clock assertion."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["eventually"]


async def eventually(
    check: Callable[[], Awaitable[object]] | Callable[[], object],
    *,
    timeout: float = 15.0,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Polls `check` until it returns something truthy (awaiting it if it is a coroutine function);
    fails the test after `timeout`, which is a deadlock guard, never a speed assertion."""
    with anyio.move_on_after(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
