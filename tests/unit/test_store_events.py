"""ChangeHub: coalescing, collapse to whole kinds, resync, and no spurious wakeups."""

from __future__ import annotations

import anyio

from meshgate.resources.model import ResourceKey
from meshgate.store.events import ChangeBatch, ChangeEvent, ChangeHub, ChangeSubscriber, Op

GUARD = 10.0  # deadlock guard, not a speed assertion


def ev(kind: str, name: str, op: Op = Op.UPDATE) -> ChangeEvent:
    return ChangeEvent(ResourceKey(kind, "default", name), op)


def key(kind: str, name: str) -> ResourceKey:
    return ResourceKey(kind, "default", name)


async def batch_of(sub: ChangeSubscriber) -> ChangeBatch:
    with anyio.fail_after(GUARD):
        return await sub.next_batch()


async def test_batches_coalesce_keys_per_kind() -> None:
    hub = ChangeHub()
    async with hub.subscribe() as sub:
        hub.publish([ev("A", "x", Op.CREATE), ev("A", "x", Op.DELETE), ev("A", "y"), ev("B", "x")])
        hub.publish([ev("A", "z")])
        assert await batch_of(sub) == {
            "A": frozenset({key("A", "x"), key("A", "y"), key("A", "z")}),
            "B": frozenset({key("B", "x")}),
        }


async def test_a_kind_collapses_to_none_past_max_keys_and_stays_collapsed() -> None:
    hub = ChangeHub(max_keys_per_kind=2)
    async with hub.subscribe() as sub:
        hub.publish([ev("A", "1"), ev("A", "2")])
        hub.publish([ev("A", "3"), ev("B", "1")])
        hub.publish([ev("A", "4")])
        assert await batch_of(sub) == {"A": None, "B": frozenset({key("B", "1")})}
        hub.publish([ev("A", "5")])  # the next batch starts fresh
        assert await batch_of(sub) == {"A": frozenset({key("A", "5")})}


async def test_resync_marks_whole_kinds() -> None:
    hub = ChangeHub()
    async with hub.subscribe() as sub:
        hub.publish([ev("A", "1"), ev("B", "1")])
        hub.publish_resync(["A", "C"])
        assert await batch_of(sub) == {"A": None, "B": frozenset({key("B", "1")}), "C": None}


async def test_every_subscriber_gets_every_change_and_leaving_stops_delivery() -> None:
    hub = ChangeHub()
    async with hub.subscribe() as first:
        async with hub.subscribe() as second:
            hub.publish([ev("A", "1")])
            assert await batch_of(second) == {"A": frozenset({key("A", "1")})}
        hub.publish([ev("A", "2")])
        assert await batch_of(first) == {"A": frozenset({key("A", "1"), key("A", "2")})}
    assert not hub._subscribers


async def test_publishing_nothing_wakes_nobody() -> None:
    hub = ChangeHub()
    batches: list[ChangeBatch] = []
    async with hub.subscribe() as sub:

        async def consume() -> None:
            batches.append(await batch_of(sub))

        async with anyio.create_task_group() as tg:
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            hub.publish([])
            hub.publish_resync([])
            await anyio.wait_all_tasks_blocked()
            assert batches == []  # an empty batch would be a spurious wakeup
            hub.publish([ev("A", "1")])
        assert batches == [{"A": frozenset({key("A", "1")})}]


def test_op_values_are_their_names() -> None:
    assert [str(op) for op in Op] == ["create", "update", "delete"]
