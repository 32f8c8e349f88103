"""reconcile_forever: a first step, coalesced changes of the watched kinds only, resync, backoff after a
failing step, external wakes, readiness and cancellation."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import anyio
import pytest
import structlog
from google.protobuf import struct_pb2
from structlog.testing import capture_logs

from meshgate.backoff import Backoff
from meshgate.concurrency import Wakeup
from meshgate.resources.model import Meta, Resource
from meshgate.store import ChangeBatch, MemoryStore, StoreUnavailableError
from meshgate.store.watch import Started, WatchLog, reconcile_forever
from tests.support.thing import thing
from tests.support.wait import eventually

GUARD = 10.0  # deadlock guard, not a speed assertion
FAST = Backoff(initial=0.01, maximum=0.02)
LOG = WatchLog(structlog.get_logger("test.watch"), "test.failed")


@dataclass
class Recorder:
    """A step that records the batches it was given; `fail` more calls raise StoreUnavailableError and
    `gate`, when set, holds each call until it is set."""

    batches: list[ChangeBatch | None] = field(default_factory=list)
    fail: int = 0
    gate: anyio.Event | None = None
    result: object = None
    succeeded: int = 0

    async def __call__(self, batch: ChangeBatch | None) -> object:
        self.batches.append(batch)
        if self.fail:
            self.fail -= 1
            raise StoreUnavailableError("store down")
        if self.gate is not None:
            await self.gate.wait()
        self.succeeded += 1
        return self.result


def other(name: str) -> Resource:
    return Resource("Other", Meta(name=name, mesh="default"), struct_pb2.Struct())


async def test_runs_a_first_full_step_then_one_per_change_of_a_watched_kind() -> None:
    store, step = MemoryStore(), Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=LOG))
        await eventually(lambda: step.batches == [None], what="the first step")
        await store.create(other("x"))  # not a watched kind: no step
        created = await store.create(thing("a"))
        await eventually(lambda: len(step.batches) == 2, what="a step for the Thing")
        assert step.batches[1] == {"Thing": frozenset({created.key})}
        tg.cancel_scope.cancel()


async def test_changes_during_a_step_coalesce_into_the_next_one() -> None:
    store, gate = MemoryStore(), anyio.Event()
    step = Recorder(gate=gate)
    async with anyio.create_task_group() as tg:
        await tg.start(partial(reconcile_forever, store, ["Thing"], step, log=LOG))
        await eventually(lambda: len(step.batches) == 1, what="the first step")
        keys = {(await store.create(thing(f"t{i}"))).key for i in range(5)}
        gate.set()
        await eventually(lambda: len(step.batches) == 2, what="one step for the burst")
        assert step.batches[1] == {"Thing": frozenset(keys)}
        # The next step is for the next change alone: no step was spent on the burst's other events.
        last = await store.create(thing("later"))
        await eventually(lambda: len(step.batches) == 3, what="a step for the later change")
        assert step.batches[2] == {"Thing": frozenset({last.key})}
        tg.cancel_scope.cancel()


async def test_quiet_resync_rereads_everything_and_logs_what_it_found() -> None:
    store, step = MemoryStore(), Recorder(result=True)
    log = WatchLog(structlog.get_logger("test.watch"), "test.failed", resync_changed="test.resync_found")
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=log, resync=0.02))
            await eventually(lambda: len(step.batches) >= 3, what="two resyncs")
            tg.cancel_scope.cancel()
    assert all(b is None for b in step.batches)
    # The first step is no resync; every later one is.
    assert [e["event"] for e in logs].count("test.resync_found") == len(step.batches) - 1


async def test_a_failing_step_is_logged_and_retried_after_backoff_with_a_full_reread() -> None:
    store, step = MemoryStore(), Recorder()
    async with anyio.create_task_group() as tg:
        await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=LOG, backoff=FAST))
        await eventually(lambda: len(step.batches) == 1, what="the first step")
        step.fail = 2
        with capture_logs() as logs:
            await store.create(thing("a"))
            await eventually(lambda: len(step.batches) == 4, what="two failures and a success")
        tg.cancel_scope.cancel()
    assert step.batches[1] is not None
    assert step.batches[2:] == [None, None]  # after a failure, everything is re-read
    failed = [e for e in logs if e["event"] == "test.failed"]
    assert [(e["log_level"], e["error"]) for e in failed] == [("warning", "store down")] * 2
    assert all(0 < e["retry_in"] <= FAST.maximum for e in failed)


async def test_with_recovered_an_outage_is_logged_once_and_its_end_once() -> None:
    store, step = MemoryStore(), Recorder(fail=3)
    log = WatchLog(structlog.get_logger("test.watch"), "test.down", recovered="test.back")
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=log, backoff=FAST))
            await eventually(lambda: len(step.batches) == 4, what="three failures and a success")
            tg.cancel_scope.cancel()
    assert [e["event"] for e in logs] == ["test.down", "test.back"]


async def test_started_waits_for_the_first_successful_step_when_asked() -> None:
    store, step = MemoryStore(), Recorder(fail=2)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(GUARD):
            await tg.start(
                partial(reconcile_forever, store, {"Thing"}, step, log=LOG, backoff=FAST, started=Started.RECONCILED)
            )
        assert len(step.batches) == 3
        tg.cancel_scope.cancel()


async def test_started_by_default_once_subscribed_even_while_the_store_fails() -> None:
    store, step = MemoryStore(), Recorder(fail=1_000_000)
    async with anyio.create_task_group() as tg:
        with anyio.fail_after(GUARD):
            await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=LOG, backoff=FAST))
        await eventually(lambda: len(step.batches) >= 2, what="retries while the store fails")
        step.fail = 0
        await eventually(lambda: step.succeeded == 1, what="a step once the store is back")
        assert step.batches[-1] is None
        tg.cancel_scope.cancel()


async def test_a_wake_asks_for_a_full_step() -> None:
    store, step, wake = MemoryStore(), Recorder(), Wakeup()
    async with anyio.create_task_group() as tg:
        await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=LOG, wake=wake))
        await eventually(lambda: len(step.batches) == 1, what="the first step")
        wake.set()
        await eventually(lambda: len(step.batches) == 2, what="a step for the wake")
        assert step.batches[1] is None
        tg.cancel_scope.cancel()


async def test_a_bug_in_the_step_ends_the_loop_loudly() -> None:
    async def broken(batch: ChangeBatch | None) -> None:
        raise ValueError("bug")

    with anyio.fail_after(GUARD), pytest.raises(ExceptionGroup) as raised:
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(reconcile_forever, MemoryStore(), {"Thing"}, broken, log=LOG))
    assert raised.group_contains(ValueError, match="bug")


async def test_cancelling_ends_the_loop_mid_step_and_unsubscribes() -> None:
    store, step = MemoryStore(), Recorder(gate=anyio.Event())
    with anyio.fail_after(GUARD):
        async with anyio.create_task_group() as tg:
            await tg.start(partial(reconcile_forever, store, {"Thing"}, step, log=LOG))
            await eventually(lambda: len(step.batches) == 1, what="the first step")
            tg.cancel_scope.cancel()  # while the step waits on its gate
    assert not store.changes._subscribers
    await store.create(thing("a"))
    assert len(step.batches) == 1
