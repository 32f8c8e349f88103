"""KDS propagation benchmark: one global process, 50 zone clients in this process, 10k routes.

Every figure is printed next to a baseline measured in the same run on the same machine:
  (a) full initial sync of one zone   vs  the same response bytes over a raw grpc.aio stream, parsed+ACKed
  (b) one change reaching 50 zones    vs  fanning pre-serialized bytes out to 50 raw streams, parsed+ACKed
  (c) bytes per zone for one change   vs  the size of the changed resource itself

The zone side is the real client code (GlobalToZoneClient: decode, validate, store, ACK) over real
loopback gRPC. Usage: python bench/propagation.py [--zones 50] [--routes 10000] [--changes 40]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import grpc
import httpx
from envoy.service.discovery.v3 import discovery_pb2

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.zone_fleet import zone_client  # noqa: E402
from meshgate.api.mesh.v1alpha1 import kds_pb2  # noqa: E402
from meshgate.kds import ownership  # noqa: E402
from meshgate.kds.envelope import to_envelope  # noqa: E402
from meshgate.kds.naming import hashed_name  # noqa: E402
from meshgate.kds.sender import Sender  # noqa: E402
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources import codec, registry  # noqa: E402
from meshgate.resources.model import ResourceKey  # noqa: E402
from meshgate.store import MemoryStore  # noqa: E402
from meshgate.store.sqlite import SqliteStore  # noqa: E402
from meshgate.sync.snapshots import SnapshotSource  # noqa: E402
from meshgate.testing.processes import CPProcess, free_port, global_argv  # noqa: E402
from meshgate.transport.kds_client import GlobalToZoneClient, channel_options  # noqa: E402

MESH = {"type": "Mesh", "name": "default"}
# Changes sent before measuring, on both sides: the first ones pay for cold code paths and caches.
WARMUP = 3


def route_doc(i: int, prefix: str | None = None) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": f"route-{i:05d}",
        "selectors": [{"match": {"kuma.io/service": f"gateway-{i % 20}"}}],
        "conf": {
            "http": {
                "hostnames": [f"app-{i}.example.com"],
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": prefix or f"/api/{i}"}}],
                        "backends": [
                            {"weight": 90, "destination": {"kuma.io/service": f"svc-{i}", "version": "v1"}},
                            {"weight": 10, "destination": {"kuma.io/service": f"svc-{i}", "version": "v2"}},
                        ],
                    }
                ],
            }
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def seed(db: Path, routes: int) -> None:
    store = await SqliteStore.open(db)
    try:
        await store.create(codec.load(MESH))
        await store.apply_sync("MeshGatewayRoute", [codec.load(route_doc(i)) for i in range(routes)], [])
    finally:
        await store.close()


async def write_frames(db: Path, out: Path, change: dict[str, Any]) -> None:
    """The exact responses the global sends for an initial sync and for one change, pre-serialized."""
    store = await SqliteStore.open(db)
    try:
        source = SnapshotSource(
            store,
            registry.kinds_sent_to_zone(),
            include=lambda r: True,
            mapper=lambda r: ownership.to_zone(r, hash_suffix=False),
        )
        await source.refresh()
        sender = Sender(source.snapshots)
        n = 0
        for kind in source.snapshots:
            sender.receive(discovery_pb2.DeltaDiscoveryRequest(type_url=kind), 0)
            while (resp := sender.next_response(source.snapshots[kind], 0)) is not None:
                (out / f"sync-{n:04d}.bin").write_bytes(resp.SerializeToString())
                n += 1
                sender.receive(discovery_pb2.DeltaDiscoveryRequest(type_url=kind, response_nonce=resp.nonce), 0)
        current = await store.get(ResourceKey("MeshGatewayRoute", "default", change["name"]))
        await store.update(codec.load(change).with_meta(version=current.meta.version))
        await source.refresh()
        resp = sender.next_response(source.snapshots["MeshGatewayRoute"], 0)
        assert resp is not None
        (out / "change.bin").write_bytes(resp.SerializeToString())
    finally:
        await store.close()


def client(zone: str, port: int, store: MemoryStore) -> GlobalToZoneClient:
    return zone_client(zone, f"grpc://127.0.0.1:{port}", store)


async def until(check: Any, interval: float = 0.001) -> None:
    while not check():
        await anyio.sleep(interval)


async def initial_sync_ours(port: int, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        c = client(f"sync-{i}", port, MemoryStore())
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            tg.start_soon(c.run)
            await until(lambda c=c: c.synced)
            times.append(time.perf_counter() - t0)
            tg.cancel_scope.cancel()
    return times


async def initial_sync_raw(port: int, runs: int, frames: int, *, full_decode: bool) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as ch:
            call = ch.stream_stream("/bench.Raw/Sync")()  # type: ignore[call-arg]
            await call.write(b"")
            got = 0
            async for frame in call:
                resp = discovery_pb2.DeltaDiscoveryResponse.FromString(frame)
                if full_decode:
                    # Protobuf leaves Any payloads as bytes: decode every envelope and spec too.
                    spec_type = registry.get(resp.type_url).spec_type
                    for wire in resp.resources:
                        env = kds_pb2.KumaResource.FromString(wire.resource.value)
                        spec_type.FromString(env.spec.value)
                await call.write(
                    discovery_pb2.DeltaDiscoveryRequest(
                        type_url=resp.type_url, response_nonce=resp.nonce
                    ).SerializeToString()
                )
                got += 1
                if got == frames:
                    break
            call.cancel()
        times.append(time.perf_counter() - t0)
    return times


async def fanout_ours(api: str, port: int, zones: int, changes: int) -> tuple[list[float], list[int], int]:
    stores = [MemoryStore() for _ in range(zones)]
    clients = [client(f"zone-{i}", port, s) for i, s in enumerate(stores)]
    latencies: list[float] = []
    put_times: list[float] = []
    bytes_per_change: list[int] = []
    async with anyio.create_task_group() as tg, httpx.AsyncClient(base_url=api) as http:
        for c in clients:
            tg.start_soon(c.run)
        await until(lambda: all(c.synced for c in clients), 0.01)
        # 50 zones' stores (500k resources) share this one process; in production each zone has its own.
        # Freeze them out of the cyclic GC so a full collection over all 50 copies does not land inside
        # a measurement that a real, separate zone process would never see.
        gc.collect()
        gc.freeze()
        for k in range(WARMUP + changes):
            doc = route_doc(k, prefix=f"/changed/{k}")
            key = ResourceKey("MeshGatewayRoute", "default", hashed_name("default", doc["name"]))  # as a zone names it
            arrived: list[float] = []
            before = clients[0].receiver.kinds["MeshGatewayRoute"].bytes_received  # type: ignore[union-attr]

            async def watch(
                store: MemoryStore,
                arrived: list[float] = arrived,
                key: ResourceKey = key,
                value: str = f"/changed/{k}",
            ) -> None:
                async with store.changes.subscribe() as sub:
                    while True:
                        r = await store.get(key)
                        if r.spec.conf.http.rules[0].matches[0].path.value == value:  # type: ignore[attr-defined]
                            arrived.append(time.perf_counter())
                            return
                        await sub.next_batch()

            async with anyio.create_task_group() as watchers:
                for s in stores:
                    watchers.start_soon(watch, s)
                await anyio.sleep(0.01)  # let every watcher subscribe
                t0 = time.perf_counter()
                r = await http.put(f"/meshes/default/meshgatewayroutes/{doc['name']}", json=doc)
                put_times.append(time.perf_counter() - t0)
                r.raise_for_status()
            if k < WARMUP:
                continue
            latencies.append(max(arrived) - t0)
            after = clients[0].receiver.kinds["MeshGatewayRoute"].bytes_received  # type: ignore[union-attr]
            bytes_per_change.append(after - before)
        tg.cancel_scope.cancel()
    size = to_envelope(codec.load(route_doc(0))).ByteSize()
    print(
        f"    API write (validate + sqlite fsync) p50 {pct(put_times, 0.5) * 1e3:.1f} ms; "
        f"all latencies (ms): {' '.join(f'{x * 1e3:.0f}' for x in latencies)}"
    )
    return latencies, bytes_per_change, size


async def fanout_raw(port: int, zones: int, changes: int) -> list[float]:
    latencies = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options()) as ch:
        arrived: list[float] = []
        trigger = ch.unary_unary("/bench.Raw/Trigger")  # type: ignore[call-arg]

        async def stream() -> None:
            call = ch.stream_stream("/bench.Raw/Fanout")()  # type: ignore[call-arg]
            await call.write(b"")
            async for frame in call:
                resp = discovery_pb2.DeltaDiscoveryResponse.FromString(frame)
                arrived.append(time.perf_counter())
                await call.write(
                    discovery_pb2.DeltaDiscoveryRequest(
                        type_url=resp.type_url, response_nonce=resp.nonce
                    ).SerializeToString()
                )

        async with anyio.create_task_group() as tg:
            for _ in range(zones):
                tg.start_soon(stream)
            await anyio.sleep(0.5)  # streams open
            for k in range(WARMUP + changes):
                arrived.clear()
                t0 = time.perf_counter()
                await trigger(b"")
                await until(lambda: len(arrived) >= zones)
                if k >= WARMUP:
                    latencies.append(max(arrived) - t0)
            tg.cancel_scope.cancel()
    return latencies


async def main(zones: int, routes: int, changes: int, runs: int) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="meshgate-bench-"))
    db = work / "global" / "meshgate.db"
    db.parent.mkdir(parents=True)
    frames = work / "frames"
    frames.mkdir()
    print(f"seeding {routes} MeshGatewayRoutes into {db} ...", flush=True)
    await seed(db, routes)
    await write_frames(db, frames, route_doc(0, prefix="/baseline-change"))
    n_frames = len(list(frames.glob("sync-*.bin")))
    sync_bytes = sum(p.stat().st_size for p in frames.glob("sync-*.bin"))
    glob = CPProcess(
        "global_cp",
        # Explicit opt-out of TLS and zone tokens: this measures the KDS engine against a raw gRPC baseline
        # that is plaintext too; TLS would be a cost of its own in one column only.
        global_argv(
            "--store",
            f"sqlite:{db}",
            "--log-level",
            "warning",
            "--no-kds-tls-enabled",
            "--kds-auth",
            "none",
            kds_port=free_port(),
        ),
        work,
        "global",
    )
    raw_ports = work / "raw.ports.json"
    import subprocess

    raw = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("raw_grpc.py")),
            "--frames",
            str(frames),
            "--ports-file",
            str(raw_ports),
        ],
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        ports = await glob.wait_ready(60)
        await until(lambda: raw_ports.exists(), 0.05)
        raw_port = json.loads(raw_ports.read_text())["raw"]

        print(f"(a) initial sync: {n_frames} responses, {sync_bytes / 1e6:.2f} MB, {runs} runs each", flush=True)
        raw_a = await initial_sync_raw(raw_port, runs, n_frames, full_decode=False)
        raw_full_a = await initial_sync_raw(raw_port, runs, n_frames, full_decode=True)
        ours_a = await initial_sync_ours(ports["kds"], runs)
        a_ours, a_raw = statistics.median(ours_a), statistics.median(raw_a)
        a_full = statistics.median(raw_full_a)

        print(f"(b) one change to {zones} zones, {changes} changes each", flush=True)
        raw_b = await fanout_raw(raw_port, zones, changes)
        ours_b, bytes_c, size_c = await fanout_ours(f"http://127.0.0.1:{ports['api']}", ports["kds"], zones, changes)
    finally:
        glob.stop()
        raw.terminate()
        raw.wait(10)

    print()
    print(f"{'measure':<44}{'meshgate':>12}{'baseline':>12}{'ratio':>8}  target")
    print(
        f"{'(a) initial sync, one zone, median':<44}{a_ours * 1e3:>10.0f}ms{a_raw * 1e3:>10.0f}ms"
        f"{a_ours / a_raw:>7.2f}x  <= 3x"
    )
    print(
        f"{'    same; baseline also decodes every resource':<44}{a_ours * 1e3:>10.0f}ms{a_full * 1e3:>10.0f}ms"
        f"{a_ours / a_full:>7.2f}x"
    )
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        o, b = pct(ours_b, q), pct(raw_b, q)
        print(
            f"{f'(b) change -> all {zones} zones, {name}':<44}{o * 1e3:>10.1f}ms{b * 1e3:>10.1f}ms{o / b:>7.2f}x  <= 3x"
        )
    c = statistics.median(bytes_c)
    print(f"{'(c) bytes per zone for one change':<44}{c:>11.0f}B{size_c:>11}B{c / size_c:>7.2f}x  <= 2x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--zones", type=int, default=50)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    a = parser.parse_args()
    anyio.run(main, a.zones, a.routes, a.changes, a.runs)
