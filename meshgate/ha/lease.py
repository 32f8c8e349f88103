"""Leader election through a Redis lease: singleton work (e.g. zone-insight cleanup) runs on one replica.

The lease is one key holding the holder's id, with a TTL::

    acquire   SET key holder NX PX ttl          (or extend it, if this holder already has it)
    renew     every ttl/3: PEXPIRE key ttl, only if GET key == holder   (Lua: compare-and-pexpire)
    release   on exit: DEL key, only if GET key == holder               (Lua: compare-and-del)

`RedisLease.run(on_leader)` contends forever: while it holds the lease it runs `on_leader()`; when the
lease is lost it cancels `on_leader()` and contends again. The lease is lost when a renewal finds another
holder or no key (it expired, or Redis restarted empty), or when no renewal succeeded for long enough
that the key may have expired: the leader trusts its lease only until the moment it *sent* its last
successful SET/PEXPIRE plus ttl, minus a margin for clock-rate drift. Redis expires the key no earlier
than that, so a replica that cannot reach Redis steps down before anyone else can take over. (A lease
is no fencing token: work that must never overlap, not even by the margin, must also check `is_leader`
or fence its writes.)

Nothing is raised for Redis failures: they are logged once per outage and retried. `run` ends when it is
cancelled or when `on_leader()` returns or raises; either way it releases the lease first.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

import anyio
import anyio.abc
import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from meshgate.store.redis_client import DEFAULT_PREFIX, redis_client, split_prefix

__all__ = ["RedisLease"]

_log = structlog.get_logger(__name__)

# The leader steps down this fraction of the ttl before its lease could expire in Redis: slack for clock
# rates differing between replicas and Redis, and for `on_leader` to notice its cancellation.
_DRIFT: Final = 0.1

_ACQUIRE: Final = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
_RENEW: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_REDIS_FAILURES: Final = (redis_errors.RedisError, OSError)


class RedisLease:
    def __init__(
        self,
        client_or_url: Redis | str,
        name: str,
        holder_id: str,
        ttl: float = 10.0,
        *,
        prefix: str | None = None,
    ) -> None:
        """`client_or_url`: a client (borrowed, never closed here) or a URL (the lease owns the client).

        `name` names the singleton (the key is ``{prefix}lease:{name}``); `prefix` defaults to the URL's
        `prefix` parameter, as for the store, else ``meshgate:``. `holder_id` must be unique per replica
        (e.g. host name plus a random suffix); `ttl` in seconds.
        """
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0, got {ttl}")
        if not holder_id:
            raise ValueError("holder_id must not be empty")
        self._ttl = ttl
        self._ttl_ms = max(1, round(ttl * 1000))
        self._renew_every = ttl / 3
        self._holder = holder_id
        url_prefix = split_prefix(client_or_url)[1] if isinstance(client_or_url, str) else DEFAULT_PREFIX
        self._key = f"{url_prefix if prefix is None else prefix}lease:{name}"
        if isinstance(client_or_url, str):
            # Each command must fail well within a renewal period, never hang past the lease.
            self._client = redis_client(client_or_url, timeout=min(2.0, self._renew_every))
            self._owns_client = True
        else:
            self._client = client_or_url
            self._owns_client = False
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._leading = False
        self._failing = False
        self._log = _log.bind(lease=self._key, holder=holder_id)

    @property
    def is_leader(self) -> bool:
        """True while this holder trusts its lease (it becomes False before `on_leader` is cancelled)."""
        return self._leading

    @property
    def key(self) -> str:
        return self._key

    @property
    def holder_id(self) -> str:
        return self._holder

    async def run(
        self,
        on_leader: Callable[[], Awaitable[None]],
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Contends until cancelled, running `on_leader()` while leading (module docstring).

        Reports started after the first attempt to acquire, so `is_leader` is meaningful from then on.
        """
        started = False
        try:
            while True:
                sent = anyio.current_time()
                acquired = await self._attempt(self._acquire)
                self._leading = bool(acquired)
                if not started:
                    task_status.started()
                    started = True
                if not acquired:
                    await anyio.sleep(self._renew_every)
                    continue
                if await self._lead(on_leader, valid_until=self._expiry(sent)):
                    return
        finally:
            self._leading = False
            with anyio.CancelScope(shield=True):
                # Bounded: a Redis that is down must not hold up shutdown; the lease then simply expires.
                with anyio.move_on_after(self._renew_every):
                    await self._attempt(self._release)
                if self._owns_client:
                    await self._client.aclose()

    async def _lead(self, on_leader: Callable[[], Awaitable[None]], *, valid_until: float) -> bool:
        """Runs `on_leader` until it returns (True) or the lease is lost (False)."""
        self._leading = True
        self._log.info("lease.acquired", ttl=self._ttl)
        finished = False
        async with anyio.create_task_group() as tg:

            async def keep() -> None:
                await self._keep(valid_until)
                # Lost: is_leader is already False; now stop the leader's work promptly.
                tg.cancel_scope.cancel()

            tg.start_soon(keep)
            await on_leader()
            finished = True
            tg.cancel_scope.cancel()
        self._leading = False
        return finished

    async def _keep(self, valid_until: float) -> None:
        """Renews every ttl/3; returns once the lease is lost (module docstring)."""
        next_renew = anyio.current_time() + self._renew_every
        while True:
            await anyio.sleep(max(0.0, min(next_renew, valid_until) - anyio.current_time()))
            sent = anyio.current_time()
            if sent >= valid_until:
                self._lost("no renewal reached redis before the lease could expire")
                return
            renewed: bool | None = None
            with anyio.move_on_after(valid_until - sent):
                renewed = await self._attempt(self._renew)
            if renewed is None:
                # Redis failed or did not answer in time: retry soon, while the lease may still hold.
                next_renew = anyio.current_time() + self._renew_every / 3
                continue
            if not renewed:
                self._lost("the lease expired or another holder has it")
                return
            valid_until = self._expiry(sent)
            next_renew = sent + self._renew_every

    async def _attempt(self, script: AsyncScript) -> bool | None:
        """Runs one lease script; True/False as it answered, None when Redis failed (logged once)."""
        try:
            answer = await script(keys=[self._key], args=[self._holder, self._ttl_ms])
        except _REDIS_FAILURES as exc:
            if not self._failing:
                self._log.warning("lease.redis_unavailable", error=str(exc) or type(exc).__name__)
                self._failing = True
            return None
        if self._failing:
            self._log.info("lease.redis_recovered")
            self._failing = False
        return bool(answer)

    def _lost(self, reason: str) -> None:
        self._leading = False
        self._log.warning("lease.lost", reason=reason)

    def _expiry(self, sent: float) -> float:
        return sent + self._ttl * (1 - _DRIFT)
