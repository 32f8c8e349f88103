"""The reconciler's work queue: coalescing, one worker per key at a time, delayed retries."""

from __future__ import annotations

import anyio

from meshgate.k8s.workqueue import WorkQueue

DEADLINE = 5.0


async def test_a_key_is_queued_once_however_often_it_is_added() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(10):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    with anyio.fail_after(DEADLINE):
        assert [await queue.get(), await queue.get()] == ["a", "b"]
    assert len(queue) == 0


async def test_a_key_added_while_processing_comes_back_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    with anyio.fail_after(DEADLINE):
        key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0  # never handed to a second worker while the first holds it
    queue.done(key)
    assert len(queue) == 1
    with anyio.fail_after(DEADLINE):
        assert await queue.get() == "a"


async def test_done_without_a_new_add_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    with anyio.fail_after(DEADLINE):
        queue.done(await queue.get())
    assert len(queue) == 0


async def test_get_waits_for_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    got: list[str] = []
    async with anyio.create_task_group() as tg:

        async def worker() -> None:
            got.append(await queue.get())

        tg.start_soon(worker)
        await anyio.sleep(0)
        queue.add("late")
    assert got == ["late"]


async def test_add_after_delivers_when_due_and_keeps_the_earliest() -> None:
    queue: WorkQueue[str] = WorkQueue()
    start = anyio.current_time()
    queue.add_after("a", 0.05)
    queue.add_after("a", 10)  # a later retry does not postpone the earlier one
    with anyio.fail_after(DEADLINE):
        assert await queue.get() == "a"
    assert anyio.current_time() - start >= 0.05


async def test_add_after_of_a_queued_key_does_not_duplicate_it() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_after("a", 0)
    assert len(queue) == 1
