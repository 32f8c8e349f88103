"""A control plane checks that its Redis persists, against real redis-servers configured each way."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

# meshgate.store and meshgate.resources import each other: load resources first, as the processes do.
import meshgate.resources  # noqa: F401
from meshgate.store.redis_durability import ALLOW_VOLATILE_FLAG, VolatileStoreError, ensure_durable
from tests.support.redis_server import redis_server

# Deadlock guard, never a speed assertion.
GUARD = 30.0


async def test_an_aof_redis_passes(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as server, capture_logs() as logs, anyio.fail_after(GUARD):
        await ensure_durable(server.url, allow_volatile=False)
    assert [e["persistence"] for e in logs if e["event"] == "redis.durability.ok"] == ["appendonly yes"]


async def test_a_redis_that_persists_nothing_is_refused_naming_the_flag(tmp_path: Path) -> None:
    with (
        redis_server(tmp_path / "redis", durable=False) as server,
        anyio.fail_after(GUARD),
        pytest.raises(VolatileStoreError) as refused,
    ):
        await ensure_durable(server.url, allow_volatile=False)
    message = str(refused.value)
    assert ALLOW_VOLATILE_FLAG in message
    assert "appendonly no" in message
    assert "\n" not in message


async def test_allowed_volatility_is_a_warning(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis", durable=False) as server, capture_logs() as logs, anyio.fail_after(GUARD):
        await ensure_durable(server.url, allow_volatile=True)
    (warning,) = [e for e in logs if e["event"] == "redis.durability.volatile"]
    assert warning["log_level"] == "warning"
    assert warning["allowed_by"] == ALLOW_VOLATILE_FLAG


async def test_a_redis_without_config_is_refused_saying_so_unless_allowed(tmp_path: Path) -> None:
    renamed = ("--rename-command", "CONFIG", "")
    with redis_server(tmp_path / "redis", extra_args=renamed) as server, anyio.fail_after(GUARD):
        with pytest.raises(VolatileStoreError, match="CONFIG GET is disabled, renamed or not permitted"):
            await ensure_durable(server.url, allow_volatile=False)
        with capture_logs() as logs:
            await ensure_durable(server.url, allow_volatile=True)
    assert [e["log_level"] for e in logs if e["event"] == "redis.durability.unknown"] == ["warning"]


async def test_redis_down_at_start_is_checked_once_it_answers(tmp_path: Path) -> None:
    """The control plane starts while Redis is away (as it always could) and stops once it finds it volatile."""
    server_dir = tmp_path / "redis"
    with redis_server(server_dir, durable=False) as server:
        server.stop()

        async def start_then_bring_redis_back() -> None:
            async with anyio.create_task_group() as tg:
                await tg.start(partial(ensure_durable, server.url, allow_volatile=False))
                # Reported started without a verdict; the check goes on in the background.
                server.start()
                await anyio.sleep_forever()

        with anyio.fail_after(GUARD), pytest.raises(ExceptionGroup) as refused:
            await start_then_bring_redis_back()
    assert refused.group_contains(VolatileStoreError)
