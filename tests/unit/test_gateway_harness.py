"""The gateway tests' fixture helpers (tests/support/gateway_harness.py), without Envoy: `rig_in_one_task`
enters and leaves its stack in one task whatever tasks set the fixture up and tear it down, and leaves it on
a failed build; `ready_probe` waits through transport errors and fails with the process's log."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TypeVar

import anyio
import httpx
import pytest

from tests.support.gateway_harness import ready_probe, rig_in_one_task

T = TypeVar("T")


async def _in_another_task(fn: Callable[[], Awaitable[T]]) -> T:
    out: list[T] = []

    async def run() -> None:
        out.append(await fn())

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
    return out[0]


async def test_the_stack_is_entered_and_left_by_one_task_while_setup_and_teardown_run_in_two() -> None:
    owners: list[asyncio.Task[object] | None] = []
    left: list[str] = []

    async def build(stack: AsyncExitStack) -> str:
        # A task group must be left by the task that entered it: the ADS server's is why the helper exists.
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)
        owners.append(asyncio.current_task())
        stack.callback(lambda: owners.append(asyncio.current_task()))
        stack.callback(left.append, "built things")
        return "the rig"

    rig = rig_in_one_task(build)
    assert await _in_another_task(rig.__aenter__) == "the rig"
    assert left == []
    await _in_another_task(lambda: rig.__aexit__(None, None, None))
    assert left == ["built things"]
    assert len(owners) == 2
    assert owners[0] is owners[1]


async def test_a_failed_build_has_left_its_stack_when_its_error_is_raised() -> None:
    left: list[str] = []

    async def build(stack: AsyncExitStack) -> str:
        stack.callback(left.append, "the process started before the failure")
        raise AssertionError("the gateway never answered")

    with pytest.raises(AssertionError, match="the gateway never answered"):
        async with rig_in_one_task(build):
            pytest.fail("a failed build yields nothing")
    assert left == ["the process started before the failure"]


class _Proc:
    def logs(self) -> str:
        return "early lines\nwhy it failed"


async def test_ready_probe_counts_a_transport_error_as_not_yet() -> None:
    calls = 0

    async def check() -> bool:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.ConnectError("no listener yet")
        return True

    await ready_probe(check, _Proc(), what="the gateway")
    assert calls == 3


async def test_ready_probe_fails_with_the_process_log_or_its_tail() -> None:
    async def never() -> bool:
        raise httpx.ConnectError("no listener")

    with pytest.raises(AssertionError) as whole:
        await ready_probe(never, _Proc(), what="the gateway", timeout=0.05)
    assert str(whole.value) == "timed out after 0.05s waiting for the gateway\nearly lines\nwhy it failed"

    with pytest.raises(AssertionError) as tail:
        await ready_probe(never, _Proc(), what="the gateway", timeout=0.05, tail=len("why it failed"))
    assert str(tail.value) == "timed out after 0.05s waiting for the gateway\nwhy it failed"
