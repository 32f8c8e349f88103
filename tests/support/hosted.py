"""A service (an anyio ``run(*, task_status)``) kept running across the yield of a pytest-asyncio fixture.

pytest-asyncio runs an async fixture's setup, the test and the fixture's teardown as three tasks on one
loop, and an anyio task group cannot span them: its cancel scope must be exited by the task that entered
it. So the service runs in a task group inside a host task of its own, created in setup and awaited in
teardown: nothing outlives the fixture, and an exception of the service fails the teardown. This is the
one place tests create a bare asyncio task; a test that can opens its task group in its own body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
import anyio.abc

__all__ = ["Hosted"]

Service = Callable[..., Coroutine[Any, Any, None]]


class Hosted:
    def __init__(self, task: asyncio.Task[None], stop: anyio.Event) -> None:
        self._task = task
        self._stop = stop

    @classmethod
    async def start(cls, service: Service) -> Hosted:
        """Starts `service` with `TaskGroup.start` in a host task; returns once it reported started."""
        started = anyio.Event()
        stop = anyio.Event()

        async def host() -> None:
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(service)
                    started.set()
                    await stop.wait()
                    tg.cancel_scope.cancel()
            finally:
                started.set()  # also when the service failed to start: start() then raises its error

        task = asyncio.get_running_loop().create_task(host())
        await started.wait()
        if task.done():
            task.result()
            raise RuntimeError("the hosted service returned before the fixture stopped it")
        return cls(task, stop)

    async def stop(self) -> None:
        """Cancels the service and waits for it; re-raises what the service raised, if anything."""
        self._stop.set()
        await self._task
