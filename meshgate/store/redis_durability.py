"""Whether a Redis persists what the control plane writes to it, checked before a control plane serves on it.

A Redis without persistence (no append-only file and no RDB `save` rule) loses every resource on its next
restart, and the global would then tell every zone to delete everything it holds. So a control plane whose
`--store` is Redis refuses to start on one, unless the operator says the data may be lost
(`--store-allow-volatile`, for tests and throwaway setups).

The verdict is a pure function of `CONFIG GET appendonly` and `CONFIG GET save` (`assess`); `ensure_durable`
is the adapter that asks Redis. CONFIG may be disabled or renamed (managed Redis services often do): then
durability cannot be known, and that is refused the same way, with a message saying so.

Redis unreachable at startup is not a verdict: the control plane starts (it serves 503s until Redis is back,
as it always has), and the check runs as soon as Redis answers; a volatile Redis then stops the process.

Errors: `VolatileStoreError` (a `StartupError`: one line on stderr, exit 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import structlog
from anyio.abc import TaskStatus
from redis import exceptions as redis_errors

from meshgate.observability.process import StartupError
from meshgate.store.redis_client import redis_client

__all__ = ["ALLOW_VOLATILE_FLAG", "Durability", "VolatileStoreError", "assess", "ensure_durable"]

ALLOW_VOLATILE_FLAG = "--store-allow-volatile"
# Bounds one CONFIG GET against a dead or partitioned Redis; the retry loop below waits between attempts.
_TIMEOUT = 5.0
_RETRY_INTERVAL = 2.0

_log = structlog.get_logger(__name__)


class VolatileStoreError(StartupError):
    """The Redis store would lose resources on a restart, and the operator did not allow that."""


@dataclass(frozen=True, slots=True)
class Durability:
    persists: bool
    # How Redis persists (`appendonly yes`, `save 3600 1`), or why it does not: for the log and the error.
    how: str


def assess(config: Mapping[str, str]) -> Durability:
    """The verdict on `CONFIG GET appendonly` and `CONFIG GET save` replies (names to values)."""
    aof = config.get("appendonly", "no").strip().lower() == "yes"
    save = config.get("save", "").strip()
    if aof:
        return Durability(True, "appendonly yes" + (f", save {save!r}" if save else ""))
    if save:
        return Durability(True, f"RDB snapshots (save {save!r}); writes since the last snapshot are lost on a crash")
    return Durability(False, "neither an append-only file (appendonly no) nor RDB snapshots (save '')")


def _decode(reply: Mapping[Any, object]) -> dict[str, str]:
    def text(v: object) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    return {text(k): text(v) for k, v in reply.items()}


async def _read_config(url: str) -> dict[str, str] | None:
    """CONFIG GET of both settings; None when CONFIG is unavailable. Connection errors propagate."""
    client = redis_client(url, timeout=_TIMEOUT)
    try:
        config: dict[str, str] = {}
        for name in ("appendonly", "save"):
            try:
                config |= _decode(await client.config_get(name))
            except redis_errors.ResponseError as exc:
                # "unknown command" (renamed or disabled with rename-command) or NOPERM (an ACL without it).
                _log.debug("redis.durability.config_unavailable", error=str(exc))
                return None
        return config
    finally:
        await client.aclose()


def _redacted(url: str) -> str:
    """The URL without its password, fit for a log line or an error message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _refuse(url: str, why: str) -> VolatileStoreError:
    return VolatileStoreError(
        f"--store {_redacted(url)}: {why}; a Redis restart would lose every resource. Turn on persistence"
        f" (redis-server --appendonly yes), or pass {ALLOW_VOLATILE_FLAG} (MESHGATE_STORE_ALLOW_VOLATILE=true)"
        " to run on it anyway"
    )


async def _verdict(url: str, allow_volatile: bool) -> None:
    config = await _read_config(url)
    if config is None:
        why = "cannot tell whether Redis persists its data: CONFIG GET is disabled, renamed or not permitted"
        if not allow_volatile:
            raise _refuse(url, why)
        _log.warning("redis.durability.unknown", store=_redacted(url), reason=why, allowed_by=ALLOW_VOLATILE_FLAG)
        return
    durability = assess(config)
    if durability.persists:
        _log.info("redis.durability.ok", store=_redacted(url), persistence=durability.how)
    elif not allow_volatile:
        raise _refuse(url, f"Redis persists nothing: {durability.how}")
    else:
        _log.warning(
            "redis.durability.volatile",
            store=_redacted(url),
            persistence=durability.how,
            allowed_by=ALLOW_VOLATILE_FLAG,
            consequence="a Redis restart loses every resource, and zones then delete theirs",
        )


async def ensure_durable(
    url: str, *, allow_volatile: bool, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Reports started once Redis has passed the check, or at once if Redis cannot be reached (and then
    keeps trying in the background); raises VolatileStoreError if Redis persists nothing and that is not
    allowed, before or after reporting started."""
    started = False
    while True:
        try:
            await _verdict(url, allow_volatile)
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            if not started:
                _log.warning(
                    "redis.durability.unchecked", store=_redacted(url), reason=str(exc), retry_every=_RETRY_INTERVAL
                )
                task_status.started()
                started = True
            await anyio.sleep(_RETRY_INTERVAL)
            continue
        if not started:
            task_status.started()
        return
