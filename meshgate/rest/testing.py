"""Run an aiohttp app on a real loopback socket for tests: from async code, or from sync code in a thread.

    async with serving(app) as base_url:              # inside a test's own task
        ...
    with serving_in_thread(app) as (base_url, portal):  # sync code (CLI tests); portal.call() runs async code
        ...

Port 0 everywhere: the kernel picks a free port and `serve_app` reports it, so tests never race for one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from aiohttp import web
from anyio.from_thread import BlockingPortal, start_blocking_portal

from meshgate.rest.server import serve_app

__all__ = ["serving", "serving_in_thread"]

LOOPBACK = "127.0.0.1"


@asynccontextmanager
async def serving(app: web.Application, host: str = LOOPBACK) -> AsyncIterator[str]:
    """Serves `app` for the duration of the block; yields its base URL. Enter and exit in one task."""
    failure: Exception | None = None
    async with anyio.create_task_group() as tg:
        port: int = await tg.start(serve_app, app, host, 0)
        try:
            yield f"http://{host}:{port}"
        except Exception as exc:
            # Re-raised below, outside the task group, so a failing assertion reaches the test as itself
            # rather than wrapped in an ExceptionGroup. Cancellation is not caught and propagates as usual.
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


@contextmanager
def serving_in_thread(app: web.Application, host: str = LOOPBACK) -> Iterator[tuple[str, BlockingPortal]]:
    """Serves `app` from an event loop in a worker thread; the thread is stopped and joined on exit."""
    with start_blocking_portal("asyncio") as portal:
        future, port = portal.start_task(serve_app, app, host, 0)
        try:
            yield f"http://{host}:{port}", portal
        finally:
            # Leaving the portal cancels the server task and waits for its shielded cleanup.
            future.cancel()
