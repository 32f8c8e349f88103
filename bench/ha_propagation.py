"""HA propagation benchmark: a change applied on one global replica reaching zones on both replicas
(two globals sharing a real Redis), against a single global on the embedded sqlite store, in the same run.

Zones are the real client code (GlobalToZoneClient) in this process over loopback gRPC; half of them are
connected to replica A, half to replica B, and every change is applied through A's API, so half of the
zones can only learn of it through Redis. Usage: python bench/ha_propagation.py [--zones 10] [--changes 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.propagation import MESH, WARMUP, client, pct, route_doc, until  # noqa: E402
from meshgate.kds.naming import hashed_name  # noqa: E402
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources.model import ResourceKey  # noqa: E402
from meshgate.store import MemoryStore  # noqa: E402
from meshgate.store.protocol import NotFoundError  # noqa: E402
from meshgate.testing.processes import CPProcess, free_port, global_argv  # noqa: E402
from meshgate.testing.redis_server import redis_server  # noqa: E402


async def measure(api: str, kds_ports: list[int], zones: int, changes: int) -> list[float]:
    stores = [MemoryStore() for _ in range(zones)]
    clients = [client(f"zone-{i}", kds_ports[i % len(kds_ports)], s) for i, s in enumerate(stores)]
    latencies: list[float] = []
    async with anyio.create_task_group() as tg, httpx.AsyncClient(base_url=api, timeout=10) as http:
        for c in clients:
            tg.start_soon(c.run)
        r = await http.put("/meshes/default", json=MESH)
        assert r.status_code in (200, 201), r.text
        await until(lambda: all(c.synced for c in clients), 0.01)
        for k in range(WARMUP + changes):
            doc = route_doc(k, prefix=f"/ha/{k}")
            key = ResourceKey("MeshGatewayRoute", "default", hashed_name("default", doc["name"]))  # as a zone names it
            arrived: list[float] = []

            async def watch(
                store: MemoryStore, arrived: list[float] = arrived, key: ResourceKey = key, value: str = f"/ha/{k}"
            ) -> None:
                async with store.changes.subscribe() as sub:
                    while True:
                        try:
                            r = await store.get(key)
                            if r.spec.conf.http.rules[0].matches[0].path.value == value:  # type: ignore[attr-defined]
                                arrived.append(time.perf_counter())
                                return
                        except NotFoundError:  # not arrived yet
                            pass
                        await sub.next_batch()

            # A change that never arrives fails the bench instead of hanging it.
            with anyio.fail_after(60):
                async with anyio.create_task_group() as watchers:
                    for s in stores:
                        watchers.start_soon(watch, s)
                    await anyio.sleep(0.01)
                    t0 = time.perf_counter()
                    r = await http.put(f"/meshes/default/meshgatewayroutes/{doc['name']}", json=doc)
                    assert r.status_code in (200, 201), r.text
            if k >= WARMUP:
                latencies.append(max(arrived) - t0)
        tg.cancel_scope.cancel()
    return latencies


def start_global(work: Path, name: str, store: str) -> CPProcess:
    return CPProcess(
        "global_cp",
        # Explicit opt-out of TLS and zone tokens: the in-process zones are bench/propagation.py's plaintext
        # clients, and the figure compared is one replica against two, both without TLS.
        global_argv(
            "--store",
            store,
            "--log-level",
            "warning",
            "--data-dir",
            str(work / name),
            "--no-kds-tls-enabled",
            "--kds-auth",
            "none",
            kds_port=free_port(),
        ),
        work,
        name,
    )


async def main(zones: int, changes: int) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="meshgate-ha-bench-"))
    single = start_global(work, "single", "sqlite")
    try:
        ports = await single.wait_ready(60)
        print(f"single global on sqlite, {zones} zones, {changes} changes ...", flush=True)
        base = await measure(f"http://127.0.0.1:{ports['api']}", [ports["kds"]], zones, changes)
    finally:
        single.stop()
    with redis_server(work / "redis") as redis:
        a = start_global(work, "replica-a", redis.url)
        b = start_global(work, "replica-b", redis.url)
        try:
            pa, pb = await a.wait_ready(60), await b.wait_ready(60)
            print(f"two replicas on Redis (zones split across them), {zones} zones, {changes} changes ...", flush=True)
            ha = await measure(f"http://127.0.0.1:{pa['api']}", [pa["kds"], pb["kds"]], zones, changes)
        finally:
            a.stop()
            b.stop()
    print()
    print(f"{'measure':<46}{'2 replicas+Redis':>18}{'1 global+sqlite':>17}{'ratio':>8}")
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        h, s = pct(ha, q), pct(base, q)
        print(f"{f'change -> all {zones} zones, {name}':<46}{h * 1e3:>16.1f}ms{s * 1e3:>15.1f}ms{h / s:>7.2f}x")
    print(f"{'mean':<46}{statistics.mean(ha) * 1e3:>16.1f}ms{statistics.mean(base) * 1e3:>15.1f}ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--zones", type=int, default=10)
    parser.add_argument("--changes", type=int, default=60)
    a = parser.parse_args()
    anyio.run(main, a.zones, a.changes)
