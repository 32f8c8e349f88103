"""RedisLease against a real redis-server: one leader, takeover, step-down when Redis goes away.

The ttl is short (TTL) so takeovers happen quickly; every wait polls with a deadline (`eventually`).
"""

from __future__ import annotations

import pathlib
import secrets
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
import pytest
from redis.asyncio import Redis

from meshgate.ha import RedisLease
from tests.support.redis_server import RedisServer, redis_server
from tests.support.wait import eventually

TTL = 0.6


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[RedisServer]:
    # Without persistence: a restart must come back empty (the lease key gone) for the restart test.
    with redis_server(tmp_path / "redis", durable=False) as s:
        yield s


@pytest.fixture
async def raw(server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(server.url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@dataclass
class Contender:
    """A RedisLease whose leader work counts how often it started and how often it was cancelled."""

    lease: RedisLease
    terms: int = 0
    cancelled: int = 0
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    async def work(self) -> None:
        self.terms += 1
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.cancelled += 1
            raise

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        with self.scope:
            await self.lease.run(self.work, task_status=task_status)


def contenders(server: RedisServer, n: int) -> list[Contender]:
    name = f"cleanup-{secrets.token_hex(3)}"
    return [Contender(RedisLease(server.url, name, f"replica-{i}", ttl=TTL)) for i in range(n)]


@asynccontextmanager
async def running(*cs: Contender) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        for c in cs:
            await tg.start(c.run)
        yield
        tg.cancel_scope.cancel()


def leaders(cs: list[Contender]) -> list[Contender]:
    return [c for c in cs if c.lease.is_leader]


async def renewals(raw: Redis, key: str, count: int) -> None:
    """Waits until the key's remaining ttl has gone up `count` times: the holder renewed it."""
    seen = 0
    last = await raw.pttl(key)

    async def renewed() -> bool:
        nonlocal seen, last
        now = await raw.pttl(key)
        if now > last:
            seen += 1
        last = now
        return seen >= count

    await eventually(renewed, interval=TTL / 20, what=f"{count} renewals of {key}")


async def test_exactly_one_of_two_leads_and_keeps_leading(server: RedisServer, raw: Redis) -> None:
    cs = contenders(server, 2)
    async with running(*cs):
        # Started means "tried once": the first contender holds the lease, the second knows it does not.
        (leader,) = leaders(cs)
        (follower,) = [c for c in cs if c is not leader]
        assert await raw.get(leader.lease.key) == leader.lease.holder_id
        await renewals(raw, leader.lease.key, 3)
        assert leaders(cs) == [leader]
        assert (leader.terms, leader.cancelled, follower.terms) == (1, 0, 0)


async def test_cancelling_the_leader_releases_the_lease_to_the_other(server: RedisServer, raw: Redis) -> None:
    cs = contenders(server, 2)
    async with running(*cs):
        await eventually(lambda: len(leaders(cs)) == 1, what="a leader")
        (first,) = leaders(cs)
        first.scope.cancel()
        await eventually(lambda: leaders(cs) != [first] and len(leaders(cs)) == 1, what="the other to take over")
        (second,) = leaders(cs)
        assert second is not first
        assert (first.cancelled, second.terms) == (1, 1)
        assert await raw.get(first.lease.key) == second.lease.holder_id


async def test_a_crashed_holder_is_taken_over_when_its_lease_expires(server: RedisServer, raw: Redis) -> None:
    (c,) = contenders(server, 1)
    # A holder that died without releasing: its key simply runs out.
    await raw.set(c.lease.key, "dead-replica", px=int(TTL * 1000))
    async with running(c):
        assert not c.lease.is_leader
        await eventually(lambda: c.lease.is_leader, what="takeover after expiry")
        assert await raw.get(c.lease.key) == c.lease.holder_id


async def test_a_lease_taken_from_the_leader_cancels_its_work(server: RedisServer, raw: Redis) -> None:
    (c,) = contenders(server, 1)
    async with running(c):
        await eventually(lambda: c.lease.is_leader, what="a leader")
        await raw.set(c.lease.key, "usurper", px=60_000)
        await eventually(lambda: c.cancelled == 1, what="the work to be cancelled")
        assert not c.lease.is_leader
        assert c.terms == 1


async def test_a_redis_restart_makes_the_leader_lose_then_one_leads_again(server: RedisServer) -> None:
    cs = contenders(server, 2)
    async with running(*cs):
        await eventually(lambda: len(leaders(cs)) == 1, what="a leader")
        (first,) = leaders(cs)
        server.restart()  # comes back empty: the lease key is gone
        await eventually(lambda: first.cancelled == 1, what="the leader to lose its lease")
        await eventually(lambda: len(leaders(cs)) == 1, what="a new leader")
        assert sum(c.terms for c in cs) == 2


async def test_the_leader_steps_down_when_redis_stays_away(server: RedisServer) -> None:
    cs = contenders(server, 2)
    async with running(*cs):
        await eventually(lambda: len(leaders(cs)) == 1, what="a leader")
        (leader,) = leaders(cs)
        server.kill()
        await eventually(lambda: leader.cancelled == 1, what="the leader to step down")
        assert leaders(cs) == []
        server.start()
        await eventually(lambda: len(leaders(cs)) == 1, what="a leader after Redis came back")


async def test_when_the_work_returns_the_lease_is_released(server: RedisServer, raw: Redis) -> None:
    lease = RedisLease(server.url, f"once-{secrets.token_hex(3)}", "replica-0", ttl=TTL)
    ran: list[bool] = []

    async def work() -> None:
        ran.append(lease.is_leader)

    with anyio.fail_after(10):  # deadlock guard
        await lease.run(work)
    assert ran == [True]
    assert not lease.is_leader
    assert await raw.exists(lease.key) == 0


async def test_a_borrowed_client_is_left_open(server: RedisServer, raw: Redis) -> None:
    lease = RedisLease(raw, f"borrowed-{secrets.token_hex(3)}", "replica-0", ttl=TTL)

    async def work() -> None:
        return None

    await lease.run(work)
    assert await raw.ping()


@pytest.mark.parametrize(("ttl", "holder"), [(0.0, "a"), (1.0, "")])
def test_bad_arguments(ttl: float, holder: str) -> None:
    with pytest.raises(ValueError, match="must"):
        RedisLease("redis://127.0.0.1:1/0", "x", holder, ttl=ttl)


async def test_the_urls_prefix_is_the_leases_prefix(server: RedisServer, raw: Redis) -> None:
    """One `--store` URL configures the store and the lease alike; redis-py never sees `prefix`."""
    held: list[int] = []
    lease = RedisLease(f"{server.url}?prefix=blue:", "cleanup", "replica-0", ttl=TTL)
    assert lease.key == "blue:lease:cleanup"
    assert RedisLease(f"{server.url}?prefix=blue:", "cleanup", "r", prefix="green:").key == "green:lease:cleanup"

    async def work() -> None:
        held.append(await raw.exists("blue:lease:cleanup"))

    await lease.run(work)
    assert held == [1]
