"""Waiting by polling with a deadline: never a bare sleep, never a wall-clock assertion."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 15.0,
    interval: float = 0.01,
    what: str = "condition",
) -> None:
    """Polls `check` until it is true; fails the test after `timeout` (a deadlock guard, not a limit)."""
    with anyio.move_on_after(timeout):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
