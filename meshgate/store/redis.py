"""Redis ResourceStore: the shared store of a highly available global (several replicas, one Redis).

Layout and formats: `meshgate.store.redis_layout`; the Lua scripts: `meshgate.store.redis_scripts`.

Writes
    create, update, delete, apply_sync and write_batch are each exactly one run of the WRITE script (EVALSHA; redis-py
    loads the script again after a NOSCRIPT, e.g. after a Redis restart). The script checks, writes and
    publishes the change message atomically; a failed check changes nothing and publishes nothing.
    A write is never retried: one whose reply was lost may have committed, and a retry would report a
    spurious AlreadyExistsError or ConflictError. The caller gets StoreUnavailableError instead and
    re-reads. (Reads are repeated once on a lost connection; see `redis_client` for stale connections.)

Change events (`run`, the protocol's `follow`)
    `changes` is fed by the listener, `run`, which the owning process starts in its task group
    (``await tg.start(store.follow)``). It subscribes to the change channel and hands every message, from
    every replica and from this one alike, to the hub, in Redis's publish order (commit order). Pub/sub
    drops messages while a subscriber is disconnected, so on every (re)subscribe and every
    `resync_interval` seconds the listener marks every known kind dirty (`ChangeHub.publish_resync`): the
    kinds in Redis's kinds set plus every kind this process has seen (Redis may have come back empty).
    The first subscribe's resync also covers writes committed before the listener started.
    `run` reports started after its first attempt to subscribe, successful or not, so a process can start
    while Redis is down; it then retries with capped exponential backoff, logging once per outage.

    A write returns only after its own message went through the listener, so, as with memory and
    sqlite, its event is in the hub when the call returns ("read your own events"). If the listener is
    not subscribed, or the message does not arrive within `timeout` (the listener lost its
    connection), the write publishes its own events to the hub itself; the resync on resubscribe covers
    the rest. A duplicate event is harmless: events are hints to re-read, never data. Without `run`, a
    process thus still sees its own writes, never another replica's.

Failure mode
    Every call fails fast with StoreUnavailableError ("redis at HOST:PORT unavailable: ...") when Redis
    cannot be reached: connect and socket timeouts default to 2 s, and a refused connection fails at
    once. Reads are not served from a cache while Redis is down: a cache is correct only if it saw every
    change, and pub/sub gives no such guarantee, so a read fails like a write. (A global's KDS snapshots
    and the zones' own stores keep serving what they last had.)

Requires the asyncio backend of anyio (redis-py is asyncio-only); tested with Redis 7; not Redis Cluster.
"""

from __future__ import annotations

import contextlib
import itertools
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.to_thread
import structlog
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from meshgate.resources.kinds import MESH as _MESH_KIND
from meshgate.resources.model import Resource, ResourceKey
from meshgate.store import redis_scripts
from meshgate.store.events import ChangeHub
from meshgate.store.protocol import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    Page,
    StoreError,
    StoreUnavailableError,
    check_distinct,
)
from meshgate.store.redis_client import DEFAULT_PREFIX, redis_client, split_prefix
from meshgate.store.redis_layout import (
    EVENT_KEYS_PER_KIND,
    Keys,
    WriteOp,
    decode_message,
    decode_record,
    encode_body,
    from_micros,
    member,
    mesh_range,
    split_page,
    to_micros,
)

__all__ = ["DEFAULT_PREFIX", "RedisStore"]

_log = structlog.get_logger(__name__)

# The listener PINGs on its pub/sub connection this often when no message arrived, so a silently dead
# connection (no FIN, e.g. a partition) is noticed within this plus `timeout`.
_PING_INTERVAL: Final = 5.0
# Reconnect backoff of the listener: doubles from the first value up to the second.
_BACKOFF: Final = (0.05, 2.0)
# Pages bigger than this many bytes (~1000 small resources) are decoded in a worker thread.
_DECODE_IN_THREAD: Final = 256 * 1024
# Server replies meaning "cannot serve now" rather than "the request or the code is wrong".
_UNAVAILABLE_REPLIES: Final = ("OOM", "MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "BUSY")


class _Waiter:
    """A write waiting for its own message to come back through the listener."""

    __slots__ = ("delivered", "done")

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.delivered = False


class RedisStore:
    """A `ResourceStore` on a Redis server shared by every replica.

    The constructor does no I/O; the first call connects. Start `run` to receive every replica's changes.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        timeout: float = 2.0,
        resync_interval: float = 30.0,
        kinds: Iterable[str] = (),
    ) -> None:
        """`url`: redis://[user:pass@]HOST:PORT/DB (rediss:// for TLS); a `prefix` query parameter
        overrides `prefix`. `timeout`: connect and socket timeout in seconds. `kinds`: kinds to mark
        dirty on every resync even before this process has seen them (e.g. every registered kind)."""
        url, prefix = split_prefix(url, prefix)
        parts = urlsplit(url)
        unix = parts.scheme == "unix"
        self._address = parts.path if unix else f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        self._timeout = timeout
        self._resync_interval = resync_interval
        self._keys = Keys(prefix)
        self._client: Redis = redis_client(url, timeout=timeout)
        self._write_script = self._client.register_script(redis_scripts.WRITE)
        self._list_script = self._client.register_script(redis_scripts.LIST)
        self._changes = ChangeHub()
        self._known_kinds: set[str] = set(kinds)
        self._instance = secrets.token_hex(6)
        self._write_ids = itertools.count(1)
        self._waiters: dict[str, _Waiter] = {}
        self._listening = False
        self._pubsub: PubSub | None = None
        self._running = False
        self._closed = False

    @property
    def changes(self) -> ChangeHub:
        return self._changes

    @property
    def shared(self) -> bool:
        return True

    @property
    def address(self) -> str:
        return self._address

    @property
    def prefix(self) -> str:
        return self._keys.prefix

    # Reads

    async def get(self, key: ResourceKey) -> Resource:
        self._check_open()
        data, field = self._keys.data(key.kind), member(key)
        raw = await self._call(lambda: self._client.hget(data, field), read=True)
        if raw is None:
            raise NotFoundError(key)
        return decode_record(key, raw)

    async def list(self, kind: str, mesh: str | None = None, *, offset: int = 0, size: int | None = None) -> Page:
        # A size of 0 would answer next_offset == offset forever, and a negative offset has no order meaning.
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        if size is not None and size < 1:
            raise ValueError(f"size must be >= 1 or None, got {size}")
        self._check_open()
        self._known_kinds.add(kind)
        lo, hi = mesh_range(mesh)
        keys = [self._keys.index(kind), self._keys.data(kind)]
        args: list[str | int] = [lo, hi, offset, -1 if size is None else size]
        reply = await self._call(lambda: self._list_script(keys=keys, args=args), read=True)
        total, page = int(reply[0]), reply[1]
        # Decoding 10k resources takes tens of milliseconds: in a worker thread, as SqliteStore does, the
        # event loop keeps serving streams meanwhile (the GIL is handed back every few milliseconds).
        if len(page) > _DECODE_IN_THREAD:
            items = await anyio.to_thread.run_sync(split_page, kind, page)
        else:
            items = split_page(kind, page)
        end = total if size is None else offset + size
        return Page(items, total, end if end < total else None)

    # Writes

    async def create(self, resource: Resource) -> Resource:
        version, ctime, mtime = await self._write([WriteOp("create", resource.key, body=encode_body(resource))])
        return resource.with_meta(
            version=version, creation_time=from_micros(ctime), modification_time=from_micros(mtime)
        )

    async def update(self, resource: Resource) -> Resource:
        op = WriteOp("update", resource.key, expected=resource.meta.version, body=encode_body(resource))
        version, ctime, mtime = await self._write([op])
        return resource.with_meta(
            version=version, creation_time=from_micros(ctime), modification_time=from_micros(mtime)
        )

    async def delete(self, key: ResourceKey, *, version: str | None = None) -> None:
        cascade = key.name if key.kind == _MESH_KIND else ""
        if version is None:
            await self._write([WriteOp("delete", key, cascade=cascade)])
        else:
            await self._write([WriteOp("delete_if", key, expected=version, cascade=cascade)])

    async def apply_sync(self, kind: str, upserts: Sequence[Resource], removals: Sequence[ResourceKey]) -> None:
        # Checked before any change, so a wrong call changes nothing.
        stray = ({r.kind for r in upserts} | {k.kind for k in removals}) - {kind}
        if stray:
            raise ValueError(f"apply_sync({kind!r}) given resources of other kinds: {sorted(stray)}")
        ops = [
            WriteOp(
                "put",
                r.key,
                body=encode_body(r),
                creation=to_micros(r.meta.creation_time) if r.meta.creation_time else "",
            )
            for r in upserts
        ]
        ops += [WriteOp("remove", k, cascade=k.name if k.kind == _MESH_KIND else "") for k in removals]
        if ops:
            await self._write(ops)

    async def write_batch(self, resources: Sequence[Resource]) -> None:
        check_distinct(resources)
        # One run of the WRITE script: it checks every op before its first write and publishes one message.
        ops = [
            WriteOp("update", r.key, expected=r.meta.version, body=encode_body(r))
            if r.meta.version
            else WriteOp("create", r.key, body=encode_body(r))
            for r in resources
        ]
        if ops:
            await self._write(ops)

    async def _write(self, ops: Sequence[WriteOp]) -> tuple[str, str, str]:
        """Runs one WRITE script; returns (version, creation, modification) of its last put."""
        self._check_open()
        args: list[str | bytes | int] = [
            self._keys.prefix,
            self._keys.channel,
            write_id := f"{self._instance}:{next(self._write_ids)}",
            EVENT_KEYS_PER_KIND,
        ]
        for op in ops:
            args.extend(op.args())
            self._known_kinds.add(op.key.kind)
        waiter = _Waiter() if self._listening else None
        if waiter is not None:
            self._waiters[write_id] = waiter
        try:
            # Shielded (the socket timeout bounds it): a write that committed always publishes its event,
            # even if its caller was cancelled while the reply was on its way.
            with anyio.CancelScope(shield=True):
                keys = [self._keys.version, self._keys.kinds]
                reply = await self._call(lambda: self._write_script(keys=keys, args=args))
                if reply[0] == b"ok" and reply[4] and waiter is None:
                    self._deliver(reply[4])
            status = reply[0].decode()
            if status != "ok":
                raise _refusal(status, reply, ops)
            version, ctime, mtime = (x.decode() for x in reply[1:4])
            if reply[4] and waiter is not None:
                await self._see_own(waiter, reply[4])
            return version, ctime, mtime
        finally:
            self._waiters.pop(write_id, None)

    async def _see_own(self, waiter: _Waiter, message: bytes) -> None:
        """Waits for the listener to deliver this write's message, or delivers it here (module docstring)."""
        with anyio.move_on_after(self._timeout):
            await waiter.done.wait()
        if not waiter.delivered:
            self._deliver(message)

    async def close(self) -> None:
        """Closes the connections; `run` then returns and every later call raises StoreUnavailableError."""
        self._closed = True
        self._release_waiters()
        # Shielded: a cancelled shutdown must still close the sockets.
        with anyio.CancelScope(shield=True):
            if self._pubsub is not None:
                await self._pubsub.aclose()
            await self._client.aclose()

    # The listener

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Feeds `changes` from every replica until cancelled or closed (module docstring). One at a time."""
        if self._running:
            raise RuntimeError("RedisStore.run is already running")
        self._running = True
        started = False
        delay = _BACKOFF[0]
        down = False
        try:
            while not self._closed:
                try:
                    async with self._subscribed() as pubsub:
                        await self._resync()
                        if down:
                            _log.info("redis.recovered", address=self._address)
                            down = False
                        delay = _BACKOFF[0]
                        if not started:
                            task_status.started()
                            started = True
                        await self._pump(pubsub)
                except Exception as exc:
                    # close() pulls the connection from under a pending read: any error then means "stop".
                    if self._closed:
                        return
                    if not isinstance(exc, redis_errors.RedisError | OSError):
                        raise
                    if not down:
                        _log.warning(
                            "redis.unavailable",
                            address=self._address,
                            error=str(exc) or type(exc).__name__,
                            detail="changes from other replicas resume, with a resync, once Redis is back",
                        )
                        down = True
                if self._closed:
                    return
                if not started:
                    task_status.started()
                    started = True
                await anyio.sleep(delay)
                delay = min(delay * 2, _BACKOFF[1])
        finally:
            self._running = False
            self._listening = False
            self._release_waiters()

    async def follow(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """The protocol's change feed: `run`."""
        await self.run(task_status=task_status)

    def _subscribed(self) -> _Subscription:
        return _Subscription(self)

    async def _pump(self, pubsub: PubSub) -> None:
        """Hands messages to the hub; resyncs every `resync_interval`; raises when the connection dies."""
        clock = anyio.current_time
        next_resync = clock() + self._resync_interval
        last_heard = next_ping = clock()
        next_ping += _PING_INTERVAL
        while not self._closed:
            wait = max(0.0, min(next_resync, next_ping) - clock())
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
            now = clock()
            if message is not None:
                last_heard = now
                if message["type"] == "message":
                    self._deliver(message["data"])
            if now >= next_resync:
                await self._resync()
                next_resync = now + self._resync_interval
            if now >= next_ping:
                if now - last_heard > _PING_INTERVAL + self._timeout:
                    raise redis_errors.ConnectionError("no reply to PING on the change subscription")
                await pubsub.ping()
                next_ping = now + _PING_INTERVAL

    def _deliver(self, data: bytes) -> None:
        try:
            message = decode_message(data)
        except (ValueError, KeyError) as exc:
            _log.warning("redis.bad_change_message", address=self._address, error=str(exc))
            return
        self._known_kinds.update(ev.key.kind for ev in message.events)
        self._known_kinds.update(message.kinds)
        self._changes.publish(message.events)
        self._changes.publish_resync(message.kinds)
        waiter = self._waiters.get(message.write_id)
        if waiter is not None:
            waiter.delivered = True
            waiter.done.set()

    async def _resync(self) -> None:
        stored = await self._client.smembers(self._keys.kinds)
        self._known_kinds.update(k.decode() if isinstance(k, bytes) else k for k in stored)
        self._changes.publish_resync(sorted(self._known_kinds))

    def _release_waiters(self) -> None:
        # Their messages may never come: each write then publishes its own events (see _see_own).
        for waiter in self._waiters.values():
            waiter.done.set()

    # The boundary

    def _check_open(self) -> None:
        if self._closed:
            raise StoreUnavailableError(f"redis store at {self._address} is closed")

    async def _call(self, command: Callable[[], Awaitable[Any]], *, read: bool = False) -> Any:
        """Runs one redis-py call, mapping its exceptions (module docstring, "Failure mode").

        A read that lost its connection is repeated once, on a fresh one: a connection can die between
        the pool's check and our command, and a read is safe to repeat. A write never is (lost reply).
        """
        for attempt in (1, 2) if read else (2,):
            try:
                return await command()
            except redis_errors.ConnectionError as exc:
                if attempt == 1:
                    continue
                raise StoreUnavailableError(f"redis at {self._address} unavailable: {_reason(exc)}") from exc
            except (redis_errors.TimeoutError, OSError) as exc:
                raise StoreUnavailableError(f"redis at {self._address} unavailable: {_reason(exc)}") from exc
            except redis_errors.RedisError as exc:
                raise self._map(exc) from exc
        raise AssertionError("unreachable")

    def _map(self, exc: redis_errors.RedisError) -> StoreError:
        if str(exc).startswith(_UNAVAILABLE_REPLIES) or isinstance(exc, redis_errors.ReadOnlyError):
            return StoreUnavailableError(f"redis at {self._address} unavailable: {_reason(exc)}")
        return StoreError(f"redis at {self._address}: {_reason(exc)}")


class _Subscription:
    """The listener's subscription: a fresh PubSub each time, so a reconnect is never silent.

    (redis-py's PubSub reconnects and resubscribes by itself on the next read; we would miss the gap.)
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store

    async def __aenter__(self) -> PubSub:
        store = self._store
        pubsub = store._client.pubsub()
        store._pubsub = pubsub
        try:
            await pubsub.subscribe(store._keys.channel)
            # Wait for the server's confirmation: only then is every later write sure to reach us.
            with anyio.fail_after(store._timeout):
                while (await pubsub.get_message(timeout=store._timeout)) is None:
                    pass
        except BaseException:
            await self._close(pubsub)
            raise
        store._listening = True
        return pubsub

    async def __aexit__(self, *exc_info: object) -> None:
        store = self._store
        store._listening = False
        store._release_waiters()
        pubsub, store._pubsub = store._pubsub, None
        if pubsub is not None:
            await self._close(pubsub)

    async def _close(self, pubsub: PubSub) -> None:
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(redis_errors.RedisError, OSError):
                await pubsub.aclose()


def _refusal(status: str, reply: Sequence[Any], ops: Sequence[WriteOp]) -> StoreError:
    op = ops[int(reply[1])]
    if status == "exists":
        return AlreadyExistsError(op.key)
    if status == "missing":
        return NotFoundError(op.key)
    if status == "conflict":
        return ConflictError(op.key, op.expected, reply[2].decode())
    return StoreError(f"unexpected reply from the write script: {status!r}")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
