"""Store latency benchmark: RedisStore on a local redis-server against SqliteStore, measured in the same run.

Prints p50 (and p99) of create, update and list of 10k resources. The redis store runs as a replica does:
its listener is running, so each write also waits for its own change event to come back through pub/sub.
The redis-server is started here, on a free port, without persistence, and stopped by its handle.
Usage: python bench/redis_store.py [--writes 1000] [--resources 10000] [--lists 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshgate.resources.model import Meta, Resource  # noqa: E402
from meshgate.store import RedisStore, ResourceStore, SqliteStore  # noqa: E402
from meshgate.testing.factory import struct  # noqa: E402
from meshgate.testing.redis_server import redis_server  # noqa: E402

KIND = "MeshGatewayRoute"


def route(i: int, version: str = "") -> Resource:
    spec = struct(hostname=f"svc-{i}.example.com", path=f"/api/v1/{i}", backend=f"backend-{i % 50}", weight=100)
    return Resource(KIND, Meta(name=f"route-{i:05d}", mesh="default", version=version), spec)


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def summary(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000


async def measure(store: ResourceStore, writes: int, resources: int, lists: int) -> dict[str, tuple[float, float]]:
    created = [await timed(lambda i=i: store.create(route(i))) for i in range(writes)]  # type: ignore[misc]
    current = [await store.get(route(i).key) for i in range(writes)]
    updated = [await timed(lambda r=r: store.update(r)) for r in current]  # type: ignore[misc]
    await store.apply_sync(KIND, [route(i) for i in range(writes, resources)], [])
    listed = [await timed(lambda: store.list(KIND)) for _ in range(lists)]
    assert (await store.list(KIND, size=1)).total == resources
    return {"create": summary(created), "update": summary(updated), f"list({resources})": summary(listed)}


async def main(writes: int, resources: int, lists: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp) / "redis") as server:
        redis = RedisStore(server.url, prefix="bench:")
        sqlite = await SqliteStore.open(Path(tmp) / "bench.db")
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(redis.run)
                on_redis = await measure(redis, writes, resources, lists)
                tg.cancel_scope.cancel()
            on_sqlite = await measure(sqlite, writes, resources, lists)
        finally:
            await redis.close()
            await sqlite.close()
    print(f"{'operation':<14}{'redis p50':>12}{'p99':>10}{'sqlite p50':>13}{'p99':>10}{'redis/sqlite':>14}")
    for op, (r50, r99) in on_redis.items():
        s50, s99 = on_sqlite[op]
        print(f"{op:<14}{r50:>10.3f}ms{r99:>8.3f}ms{s50:>11.3f}ms{s99:>8.3f}ms{r50 / s50:>13.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--resources", type=int, default=10_000)
    parser.add_argument("--lists", type=int, default=20)
    args = parser.parse_args()
    anyio.run(main, args.writes, args.resources, args.lists)
