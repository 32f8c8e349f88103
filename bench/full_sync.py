"""Full initial sync of one zone near decode speed (issue 16, point 2).

A real global process holds --routes MeshGatewayRoutes; one zone (the real GlobalToZoneClient, its store in this
process) connects and syncs in full, --runs times, each time from an empty store. The baseline, in the same run
on the same machine: a raw grpc.aio server process (bench/raw_grpc.py) sends the very response bytes the global
sends, and the client parses every response, every envelope and every spec (protobuf only) and ACKs it.

Both sides run over TLS by default: the zone skips semantic validation only for a global it authenticated (a
`grpcs://` address with a verified certificate), and the baseline pays for TLS too, so TLS is no column's cost
alone. `--plaintext` runs both in plaintext (the zone then validates every resource, as before issue 16).

Wall time swings on a shared machine, so CPU time per resource is printed for both sides of both columns (the
sender's process and this, receiving, process). `--callgrind` adds instruction counts of the zone's apply path
(decode, ownership, validation when on, the store's batch write, the ACK) against decoding the same responses,
under `valgrind --tool=callgrind`: the difference between a run applying the full sync once and one applying it
twice, so interpreter start, imports and setup cancel out.

Usage: python bench/full_sync.py [--routes 10000] [--runs 5] [--store memory|sqlite] [--plaintext]
       [--callgrind | --only-callgrind] [--callgrind-routes 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
from envoy.service.discovery.v3 import discovery_pb2

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.propagation import raw_sync, route_doc, seed, start_raw_server, until, write_frames  # noqa: E402
from bench.zone_fleet import zone_client  # noqa: E402
from meshgate.api.mesh.v1alpha1 import kds_pb2  # noqa: E402
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources import registry  # noqa: E402
from meshgate.store import MemoryStore  # noqa: E402
from meshgate.store.protocol import ResourceStore  # noqa: E402
from meshgate.store.sqlite import SqliteStore  # noqa: E402
from meshgate.testing.processes import CPProcess, free_port, global_argv  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sample:
    def __init__(self, wall: float, here: float, peer: float) -> None:
        self.wall, self.here, self.peer = wall, here, peer


async def measured(peer_pid: int, run: Callable[[], Awaitable[None]]) -> Sample:
    peer0, here0, t0 = cpu_seconds(peer_pid), time.process_time(), time.perf_counter()
    await run()
    return Sample(time.perf_counter() - t0, time.process_time() - here0, cpu_seconds(peer_pid) - peer0)


async def ours_sync(address: str, ca: Path | None, store: ResourceStore, name: str) -> None:
    c = zone_client(name, address, store, ca_cert_file=ca)
    async with anyio.create_task_group() as tg:
        tg.start_soon(c.run)
        await until(lambda: c.synced)
        tg.cancel_scope.cancel()


async def open_zone_store(kind: str, work: Path, i: int) -> ResourceStore:
    if kind == "memory":
        return MemoryStore()
    return await SqliteStore.open(work / f"zone-{i}.db")


def row(name: str, samples: list[Sample], resources: int, base: float | None) -> str:
    wall = statistics.median(s.wall for s in samples)
    here = statistics.median(s.here for s in samples) / resources * 1e6
    peer = statistics.median(s.peer for s in samples) / resources * 1e6
    ratio = f"{wall / base:>7.2f}x" if base else f"{'':>8}"
    return f"{name:<34}{wall * 1e3:>9.0f}ms{ratio}{here:>12.1f}{peer:>12.1f}"


async def main(args: argparse.Namespace) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="meshgate-fullsync-"))
    db = work / "global" / "meshgate.db"
    db.parent.mkdir(parents=True)
    frames = work / "frames"
    frames.mkdir()
    print(f"seeding {args.routes} MeshGatewayRoutes into {db} ...", flush=True)
    await seed(db, args.routes)
    await write_frames(db, frames, route_doc(0, prefix="/unused"))  # the change frame is not used here
    n_frames = len(list(frames.glob("sync-*.bin")))
    sync_bytes = sum(p.stat().st_size for p in frames.glob("sync-*.bin"))
    resources = args.routes + 1  # the routes and their Mesh

    tls = not args.plaintext
    flags = ["--store", f"sqlite:{db}", "--data-dir", str(db.parent), "--log-level", "warning", "--kds-auth", "none"]
    glob = CPProcess(
        "global_cp",
        global_argv(*flags, *([] if tls else ["--no-kds-tls-enabled"]), kds_port=free_port()),
        work,
        "global",
    )
    raw, raw_ports, credentials = start_raw_server(work, frames, tls)
    try:
        ports = await glob.wait_ready(60)
        await until(lambda: raw_ports.exists(), 0.05)
        raw_port = json.loads(raw_ports.read_text())["raw"]
        address = f"{'grpcs' if tls else 'grpc'}://127.0.0.1:{ports['kds']}"
        ca = glob.kds_ca_file if tls else None
        print(
            f"initial sync: {n_frames} responses, {sync_bytes / 1e6:.2f} MB, {args.runs} runs each, "
            f"{'TLS' if tls else 'plaintext'}, zone store {args.store}",
            flush=True,
        )
        # One warm-up each: the first connection pays for imports and cold caches on both sides.
        await raw_sync(raw_port, n_frames, credentials)
        await ours_sync(address, ca, MemoryStore(), "warmup")
        base: list[Sample] = []
        ours: list[Sample] = []
        for i in range(args.runs):
            base.append(await measured(raw.pid, partial(raw_sync, raw_port, n_frames, credentials)))
            store = await open_zone_store(args.store, work, i)
            try:
                ours.append(await measured(glob.proc.pid, partial(ours_sync, address, ca, store, f"z{i}")))
            finally:
                await store.close()
    finally:
        glob.stop()
        raw.terminate()
        raw.wait(10)
    b = statistics.median(s.wall for s in base)
    print()
    print(
        f"{'median of ' + str(args.runs) + ' runs':<34}{'wall':>11}{'ratio':>8}{'zone µs/res':>12}{'peer µs/res':>12}"
    )
    print(row("baseline: receive + decode all", base, resources, None))
    print(row(f"meshgate zone ({args.store} store)", ours, resources, b) + "   target <= 3x")
    print("(µs/res: CPU time per resource; zone = this receiving process, peer = the sending process)")
    if args.callgrind:
        callgrind(args.callgrind_routes, args.callgrind_sides.split(","))


# -- instruction counts ---------------------------------------------------------------------------------


def _worker(side: str, frames_dir: Path, reps: int) -> None:
    """Runs under callgrind: reads a full sync's responses, then applies (or decodes) it `reps` + 1 times."""
    import gc

    from meshgate.kds import ownership
    from meshgate.kds.receiver import Receiver
    from meshgate.resources import codec

    frames = [p.read_bytes() for p in sorted(frames_dir.glob("sync-*.bin"))]

    def run(coro: Any) -> None:  # the memory store awaits nothing: drive its coroutine without a loop
        try:
            coro.send(None)
        except StopIteration:
            return
        raise RuntimeError("the memory store awaited")

    def decode() -> None:
        for frame in frames:
            resp = discovery_pb2.DeltaDiscoveryResponse.FromString(frame)
            spec_type = registry.get(resp.type_url).spec_type
            for wire in resp.resources:
                env = kds_pb2.KumaResource.FromString(wire.resource.value)
                spec_type.FromString(env.spec.value)
            discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce).SerializeToString()

    def apply(validate: bool) -> None:
        # What GlobalToZoneClient does per response, minus the socket: receive, batch-write, ACK.
        kinds = registry.kinds_sent_to_zone()
        receiver = Receiver(
            kinds, codec.validate if validate else None, accept=partial(ownership.zone_accepts, "zone-1")
        )
        receiver.subscribe({})
        store = MemoryStore()
        for frame in frames:
            plan = receiver.receive(discovery_pb2.DeltaDiscoveryResponse.FromString(frame))
            assert not plan.rejections, plan.rejections
            run(store.apply_sync(plan.kind, [r for _, _, r in plan.upserts], [k for _, k in plan.removals]))
            receiver.applied(plan).SerializeToString()

    ops: dict[str, Callable[[], None]] = {
        "decode": decode,
        "trusted": partial(apply, False),
        "validating": partial(apply, True),
    }
    op = ops[side]
    op()  # warm
    gc.collect()
    for _ in range(reps):
        op()


def callgrind(routes: int, sides: list[str]) -> None:
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not on PATH")
    print(f"\ncallgrind: instructions per resource, full sync of {routes} routes (run x2 minus run x1)", flush=True)
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    counts: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="meshgate-callgrind-") as tmp:
        frames = Path(tmp) / "frames"
        frames.mkdir()

        async def prepare() -> None:  # natively, once: only the apply runs under valgrind
            await seed(Path(tmp) / "global.db", routes)
            await write_frames(Path(tmp) / "global.db", frames, route_doc(0, prefix="/unused"))

        anyio.run(prepare)
        for side in sides:
            totals = []
            for reps in (1, 2):
                out = Path(tmp) / f"{side}-{reps}.cg"
                subprocess.run(
                    ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
                     "--worker", f"{side}:{frames}:{reps}"],
                    check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                summary = next(line for line in out.read_text().splitlines() if line.startswith("summary:"))
                totals.append(int(summary.split()[1]))
            counts[side] = (totals[1] - totals[0]) / (routes + 1)
            print(f"  {side:<12}{counts[side]:>14,.0f} instructions/resource{counts[side] / counts['decode']:>8.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--store", choices=("memory", "sqlite"), default="memory")
    parser.add_argument("--plaintext", action="store_true")
    parser.add_argument("--callgrind", action="store_true")
    parser.add_argument("--callgrind-routes", type=int, default=2000)
    parser.add_argument("--callgrind-sides", default="decode,trusted,validating", help="decode first: the baseline")
    parser.add_argument("--only-callgrind", action="store_true", help="skip the wall-clock runs")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.worker:
        side, frames_dir, reps = a.worker.split(":")
        _worker(side, Path(frames_dir), int(reps))
    elif a.only_callgrind:
        callgrind(a.callgrind_routes, a.callgrind_sides.split(","))
    else:
        anyio.run(main, a)
