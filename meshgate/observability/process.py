"""What both control-plane processes share at the top: signals, readiness, and the ports file.

`run_until_signalled` runs a main coroutine in a task group and cancels it on SIGTERM or SIGINT, so
every server drains through its own shielded cleanup and the process exits 0.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import anyio
import structlog

__all__ = ["BindError", "StartupError", "leaf_exceptions", "run_until_signalled", "write_ports_file"]

log = structlog.get_logger(__name__)


class StartupError(Exception):
    """A process cannot start for a reason its user can fix (missing configuration); printed as one line."""


class BindError(OSError):
    """A server could not listen on its address: the one startup failure users hit most, so the
    processes print it as one line instead of a traceback."""

    def __init__(self, what: str, host: str, port: int, reason: str) -> None:
        self.what = what
        super().__init__(f"cannot serve {what} on {host}:{port}: {reason}")


def leaf_exceptions(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as task groups raise them."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaf_exceptions(inner)]
    return [exc]


async def run_until_signalled(main: Callable[[], Awaitable[None]]) -> None:
    async with anyio.create_task_group() as tg:

        async def watch_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    log.info("process.draining", signal=signal.Signals(signum).name)
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(watch_signals)
        await main()
        tg.cancel_scope.cancel()


def write_ports_file(path: Path | None, ports: Mapping[str, int]) -> None:
    """Writes the bound ports as JSON, atomically: lets tests and scripts start a process on port 0."""
    if path is None:
        return
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dict(ports)))
    os.replace(tmp, path)
