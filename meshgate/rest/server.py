"""Runs an aiohttp application inside an anyio task group, reporting the bound port when it is ready.

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_app, app, "127.0.0.1", 0)
        ...
        tg.cancel_scope.cancel()  # stops the server; cleanup runs shielded

aiohttp needs the asyncio backend.
"""

from __future__ import annotations

import anyio
from aiohttp import web
from anyio.abc import TaskStatus

from meshgate.observability.process import BindError

__all__ = ["serve_app"]


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        # IPv4 sockname is (host, port), IPv6 is (host, port, flowinfo, scope_id).
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    raise RuntimeError("the HTTP server is not bound to a TCP port")


async def serve_app(
    app: web.Application,
    host: str,
    port: int,
    *,
    shutdown_timeout: float = 5.0,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serves `app` on host:port until cancelled; `task_status.started(port)` reports the bound port.

    Port 0 lets the kernel pick a free port.

    `shutdown_timeout` bounds how long in-flight requests may finish once the server is cancelled.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise BindError("HTTP", host, port, exc.strerror or str(exc)) from exc
        task_status.started(_bound_port(runner))
        await anyio.sleep_forever()
    finally:
        # Cancellation got us here; shield the cleanup so the listening socket and connections are closed.
        with anyio.CancelScope(shield=True):
            await runner.cleanup()
