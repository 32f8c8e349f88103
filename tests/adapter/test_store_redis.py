"""RedisStore beyond the shared contract: replicas, races, outages and crashes, on a real redis-server.

Every test starts its own server on a free port (it may kill or restart it) and stops it by its handle.
"""

from __future__ import annotations

import pathlib
import secrets
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator

import anyio
import anyio.to_thread
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from meshgate.resources.model import Resource, ResourceKey
from meshgate.store import ConflictError, RedisStore, StoreUnavailableError
from tests.store_support import next_batch, resource, struct
from tests.support.redis_server import RedisServer, redis_server
from tests.support.wait import eventually

GW = "MeshGateway"
EDGE = ResourceKey(GW, "default", "edge")
# Deadlock guard around calls that must fail rather than hang; never a speed assertion.
HANG_GUARD = 15.0


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[RedisServer]:
    # Without persistence: the outage tests restart it and expect it empty, as a volatile Redis comes back.
    with redis_server(tmp_path / "redis", durable=False) as s:
        yield s


def gw(name: str, **fields: str | float | bool) -> Resource:
    return resource(GW, "default", name, struct(**fields) if fields else None)


def replicas(
    server: RedisServer, n: int = 2, *, timeout: float = 2.0, resync_interval: float = 30.0
) -> list[RedisStore]:
    """`n` stores on one server and one prefix: the replicas of one global."""
    prefix = f"t-{secrets.token_hex(4)}:"
    return [RedisStore(server.url, prefix=prefix, timeout=timeout, resync_interval=resync_interval) for _ in range(n)]


async def close_all(stores: list[RedisStore]) -> None:
    for s in stores:
        await s.close()


async def test_a_unix_socket_url_names_its_path() -> None:
    store = RedisStore("unix:///run/redis.sock?db=1&prefix=g:")
    try:
        assert (store.address, store.prefix) == ("/run/redis.sock", "g:")
    finally:
        await store.close()


async def test_a_write_on_one_replica_reaches_the_other(server: RedisServer) -> None:
    a, b = replicas(server)
    assert a.shared
    assert b.shared
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(a.run)
            await tg.start(b.follow)  # the protocol's change feed is the listener
            async with a.changes.subscribe() as on_a, b.changes.subscribe() as on_b:
                await a.create(gw("edge"))
                assert await next_batch(on_b) == {GW: frozenset({EDGE})}
                assert await next_batch(on_a) == {GW: frozenset({EDGE})}
                await b.delete(EDGE)
                assert await next_batch(on_a) == {GW: frozenset({EDGE})}
                assert await next_batch(on_b) == {GW: frozenset({EDGE})}
            tg.cancel_scope.cancel()
    finally:
        await close_all([a, b])


async def test_without_run_a_store_sees_its_own_writes_only(server: RedisServer) -> None:
    a, b = replicas(server)
    try:
        async with b.changes.subscribe() as on_b:
            await a.create(gw("from-a"))
            await b.create(gw("from-b"))
            assert await next_batch(on_b) == {GW: frozenset({ResourceKey(GW, "default", "from-b")})}
    finally:
        await close_all([a, b])


async def test_starting_the_listener_resyncs_every_kind_written_before(server: RedisServer) -> None:
    a, b = replicas(server)
    try:
        await a.create(gw("edge"))
        await a.create(resource("Dataplane", "default", "dp"))
        async with b.changes.subscribe() as on_b, anyio.create_task_group() as tg:
            await tg.start(b.run)
            assert await next_batch(on_b) == {GW: None, "Dataplane": None}
            tg.cancel_scope.cancel()
    finally:
        await close_all([a, b])


async def test_the_listener_resyncs_periodically(server: RedisServer) -> None:
    (store,) = replicas(server, 1, resync_interval=0.05)
    try:
        async with store.changes.subscribe() as sub, anyio.create_task_group() as tg:
            await tg.start(store.run)
            await store.create(gw("edge"))
            seen = [await next_batch(sub) for _ in range(4)]
            # The first resync may have coalesced with the write's own event; the later ones are whole-kind.
            assert seen[-2:] == [{GW: None}, {GW: None}]
            tg.cancel_scope.cancel()
    finally:
        await store.close()


async def test_stores_with_different_prefixes_share_nothing(server: RedisServer) -> None:
    blue, green = RedisStore(server.url, prefix="blue:"), RedisStore(server.url, prefix="green:")
    try:
        async with green.changes.subscribe() as on_green, anyio.create_task_group() as tg:
            await tg.start(green.run)  # green knows no kind yet: its first resync wakes nobody
            await blue.create(gw("edge"))
            await green.create(resource("Marker", "", "m"))
            assert await next_batch(on_green) == {"Marker": frozenset({ResourceKey("Marker", "", "m")})}
            assert (await green.list(GW)).total == 0
            tg.cancel_scope.cancel()
    finally:
        await close_all([blue, green])


async def update_into(
    store: RedisStore, attempt: Resource, winners: list[Resource], conflicts: list[ConflictError]
) -> None:
    try:
        winners.append(await store.update(attempt))
    except ConflictError as exc:
        conflicts.append(exc)


async def test_concurrent_updates_from_two_replicas_one_wins_each_round(server: RedisServer) -> None:
    a, b = replicas(server)
    try:
        current = await a.create(gw("edge", round=-1))
        for rnd in range(10):
            winners: list[Resource] = []
            conflicts: list[ConflictError] = []
            # 8 writers, 4 on each replica, all holding the same version.
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    attempt = resource(GW, "default", "edge", struct(round=rnd, i=i), version=current.meta.version)
                    tg.start_soon(update_into, (a, b)[i % 2], attempt, winners, conflicts)
            assert (len(winners), len(conflicts)) == (1, 7), f"round {rnd}"
            (current,) = winners
            assert all(c.actual == current.meta.version for c in conflicts)
            stored = await b.get(EDGE)
            assert (stored.meta.version, stored.spec) == (current.meta.version, current.spec)
    finally:
        await close_all([a, b])


async def test_an_outage_fails_every_call_then_the_store_recovers(server: RedisServer) -> None:
    (store,) = replicas(server, 1, timeout=0.5)
    unavailable = rf"redis at 127\.0\.0\.1:{server.port} unavailable: "
    try:
        with capture_logs() as logs:
            async with anyio.create_task_group() as tg:
                await tg.start(store.run)
                before = await store.create(gw("edge"))
                async with store.changes.subscribe() as sub:
                    server.kill()
                    calls: list[Callable[[], Awaitable[object]]] = [
                        lambda: store.get(EDGE),
                        lambda: store.list(GW),
                        lambda: store.create(gw("other")),
                        lambda: store.update(before),
                        lambda: store.delete(EDGE),
                        lambda: store.apply_sync(GW, [gw("other")], [EDGE]),
                    ]
                    for call in calls:
                        with anyio.fail_after(HANG_GUARD), pytest.raises(StoreUnavailableError, match=unavailable):
                            await call()
                    # The listener has noticed too, and keeps retrying.
                    await eventually(lambda: any(e["event"] == "redis.unavailable" for e in logs), what="the log")

                    server.start()  # same port, empty: the server had no persistence
                    assert await next_batch(sub) == {GW: None}  # the resync after resubscribing
                    after = await store.create(gw("edge"))
                    assert await next_batch(sub) == {GW: frozenset({EDGE})}
                    # The version counter restarted from the clock: no version of the old data comes back.
                    assert int(after.meta.version) > int(before.meta.version)
                tg.cancel_scope.cancel()
        assert [e["event"] for e in logs if e["event"].startswith("redis.")] == ["redis.unavailable", "redis.recovered"]
    finally:
        await store.close()


async def test_pooled_connections_survive_a_graceful_restart(server: RedisServer) -> None:
    """A restart closes every pooled connection; the first calls afterwards must not fail on them."""
    (store,) = replicas(server, 1)
    outcomes: list[object] = []

    async def read() -> None:
        try:
            outcomes.append((await store.list(GW)).total)
        except StoreUnavailableError as exc:
            outcomes.append(exc)

    try:
        for _ in range(2):  # before the restart: fill the pool; after it: reuse the pool
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(read)
            assert outcomes == [0] * 10
            outcomes.clear()
            # In a thread, so the loop runs on meanwhile and sees the server close the connections, as it
            # would in production (a restart that blocked the loop would hide them until they are used).
            await anyio.to_thread.run_sync(server.restart)
        await store.create(gw("edge"))
    finally:
        await store.close()


async def test_a_store_started_while_redis_is_down_starts_and_catches_up(server: RedisServer) -> None:
    (store,) = replicas(server, 1, timeout=0.5)
    server.kill()
    try:
        async with store.changes.subscribe() as sub, anyio.create_task_group() as tg:
            with anyio.fail_after(HANG_GUARD):
                await tg.start(store.run)  # reports started after a failed first attempt
            with pytest.raises(StoreUnavailableError):
                await store.list(GW)
            server.start()
            assert await next_batch(sub) == {GW: None}
            await store.create(gw("edge"))
            assert await next_batch(sub) == {GW: frozenset({EDGE})}
            tg.cancel_scope.cancel()
    finally:
        await store.close()


async def test_a_foreign_message_on_the_channel_is_ignored(server: RedisServer) -> None:
    (store,) = replicas(server, 1)
    raw = Redis.from_url(server.url)
    try:
        async with store.changes.subscribe() as sub, anyio.create_task_group() as tg:
            await tg.start(store.run)
            with capture_logs() as logs:
                await raw.publish(f"{store.prefix}changes", b"not json")
                await raw.publish(f"{store.prefix}changes", b'{"e": [["x", "K", "no separator"]]}')
                await store.create(gw("edge"))
            assert await next_batch(sub) == {GW: frozenset({EDGE})}
            assert [e["event"] for e in logs] == ["redis.bad_change_message"] * 2
            tg.cancel_scope.cancel()
    finally:
        await raw.aclose()
        await store.close()


async def test_close_ends_the_listener_and_later_calls_fail(server: RedisServer) -> None:
    (store,) = replicas(server, 1)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            await store.close()
            # No cancel: the task group exits only because run() returned by itself.
    with pytest.raises(StoreUnavailableError, match="closed"):
        await store.get(EDGE)
    await store.close()  # idempotent


async def test_one_listener_per_store(server: RedisServer) -> None:
    (store,) = replicas(server, 1)
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(store.run)
            with pytest.raises(RuntimeError, match="already running"):
                await store.run()
            tg.cancel_scope.cancel()
    finally:
        await store.close()


CRASH_KIND = "Blob"
CRASH_BATCH = 4
CRASH_WINDOW = 3


async def test_kill_9_mid_writes_leaves_only_whole_writes(tmp_path: pathlib.Path) -> None:
    """With an fsync'd append-only file, every write told "done" survives kill -9, and no write is half there.

    Each batch upserts 4 resources and removes the batch CRASH_WINDOW before it, in one apply_sync.
    """
    with redis_server(tmp_path / "redis", durable=True) as server:
        store = RedisStore(server.url, timeout=0.5)
        acked: list[int] = []
        payload = "x" * 50_000

        async def writer() -> None:
            batch = 0
            while True:
                upserts = [
                    resource(CRASH_KIND, "default", f"b{batch}-{i}", struct(batch=batch, payload=payload))
                    for i in range(CRASH_BATCH)
                ]
                gone = [ResourceKey(CRASH_KIND, "default", f"b{batch - CRASH_WINDOW}-{i}") for i in range(CRASH_BATCH)]
                try:
                    await store.apply_sync(CRASH_KIND, upserts, gone)
                except StoreUnavailableError:
                    return
                acked.append(batch)
                batch += 1

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                await eventually(lambda: len(acked) >= 20, what="20 acknowledged batches")
                server.kill()
            server.start()

            by_batch: dict[int, int] = defaultdict(int)
            for r in (await store.list(CRASH_KIND)).items:
                by_batch[int(r.spec["batch"])] += 1  # type: ignore[index]
            last = acked[-1]
            # The batch in flight at the kill may or may not have committed, but only as a whole.
            expected = {b for b in range(last - CRASH_WINDOW + 1, last + 1)}
            assert set(by_batch) in (expected, {b for b in range(last - CRASH_WINDOW + 2, last + 2)})
            assert all(n == CRASH_BATCH for n in by_batch.values()), by_batch
            raw = Redis.from_url(server.url)
            try:
                assert await raw.zcard(f"meshgate:i:{CRASH_KIND}") == await raw.hlen(f"meshgate:d:{CRASH_KIND}")
            finally:
                await raw.aclose()
        finally:
            await store.close()
