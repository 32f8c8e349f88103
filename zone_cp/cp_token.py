"""The zone token a zone presents on KDS: inline (`--cp-token`) or from a file (`--cp-token-path`) that is
re-read when it changes, so a token can be renewed (or replaced after revocation) without a restart.

The file is polled (its mtime, size and inode, then its content) every `interval` seconds rather than
watched with inotify: it works the same on every platform and for Kubernetes Secret volumes, whose files
change by an atomic symlink swap. A new token is used from the next KDS call on; `on_change` lets the KDS
client cut its reconnect backoff short, so a zone refused as unauthenticated retries at once with it.
An unreadable or empty file at start fails the process naming the flag; later, the last good token is kept
and the problem logged once until it is fixed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import anyio
import structlog

from meshgate.observability.process import StartupError

__all__ = ["POLL_INTERVAL", "CpToken"]

log = structlog.get_logger(__name__)

# Renewal is rare and a refused zone already waits for its backoff: a few seconds is prompt enough, and a
# stat every few seconds costs nothing.
POLL_INTERVAL = 2.0


def _read(path: Path) -> str:
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise StartupError(f"--cp-token-path {path}: cannot read the zone token: {reason}") from None
    if not token:
        raise StartupError(f"--cp-token-path {path}: the file is empty, expected a zone token")
    return token


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


class CpToken:
    """The current zone token. Build it with `load`, which checks the flags (StartupError names them)."""

    def __init__(self, token: str, path: Path | None = None) -> None:
        self._token = token
        self.path = path
        self._stamp = _stamp(path) if path is not None else None
        self.on_change: Callable[[], None] | None = None
        self._problem = ""

    @classmethod
    def load(cls, inline: str, path: Path | None) -> CpToken:
        if inline and path is not None:
            raise StartupError("--cp-token and --cp-token-path are exclusive: give the zone token one way")
        if path is None:
            return cls(inline.strip())
        return cls(_read(path), path)

    def __call__(self) -> str:
        return self._token

    def poll(self) -> bool:
        """Re-reads the file if it changed; returns whether the token did."""
        if self.path is None:
            return False
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        try:
            token = _read(self.path)
        except StartupError as exc:
            if str(exc) != self._problem:
                log.warning("zone.cp_token.unreadable", path=str(self.path), error=str(exc), kept="the last token")
            self._problem = str(exc)
            return False
        self._stamp, self._problem = stamp, ""
        if token == self._token:
            return False
        self._token = token
        log.info("zone.cp_token.reloaded", path=str(self.path))
        if self.on_change is not None:
            self.on_change()
        return True

    async def run(
        self, interval: float = POLL_INTERVAL, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        if self.path is None:
            return
        while True:
            await anyio.sleep(interval)
            self.poll()
