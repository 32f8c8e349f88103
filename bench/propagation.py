"""KDS propagation benchmark: one global process, 50 zone clients in this process, 10k routes.

Every figure is printed next to a baseline measured in the same run on the same machine:
  (a) full initial sync of one zone   vs  the same response bytes over a raw grpc.aio stream, parsed+ACKed
  (b) one change reaching 50 zones    vs  fanning pre-serialized bytes out to 50 raw streams, parsed+ACKed
  (c) bytes per zone for one change   vs  the size of the changed resource itself

The zone side is the real client code (GlobalToZoneClient: decode, validate, store, ACK) over real
loopback gRPC, one channel (TCP connection) per zone; the raw baseline opens one channel per stream as well.

Both sides run over TLS by default, as a zone and its global do: the global with its own certificate, which the
zones verify (`grpcs://`; a zone trusts what a global it authenticated validated, and skips validating it again),
and the baseline server with a certificate of its own CA, so TLS is no column's cost alone. `--plaintext` runs
both in plaintext (the zones then validate every resource).

Wall time swings on a shared machine, so (b) also prints CPU time per change of both sides: the sending process
(the global, or the raw server) and this process (the 50 zones, or the 50 raw streams), from /proc.

Usage: python bench/propagation.py [--zones 50] [--routes 10000] [--changes 40] [--runs 5] [--plaintext]
       [--py-spy DIR]   (records both processes of (b) with py-spy, which must be on PATH or in the venv)
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
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
from meshgate.pki import generate_authority, issue_server  # noqa: E402
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


@dataclass(frozen=True, slots=True)
class Target:
    """Where the benches' clients connect: the global's KDS port and the raw server's, with what TLS needs."""

    kds: str  # the global's KDS address, grpc:// or grpcs://
    ca: Path | None  # the CA a zone verifies the global's certificate with (None: plaintext)
    raw_port: int
    raw_credentials: grpc.ChannelCredentials | None = field(default=None)  # None: plaintext

    def raw_channel(self) -> grpc.aio.Channel:
        target, options = f"127.0.0.1:{self.raw_port}", channel_options()
        if self.raw_credentials is None:
            return grpc.aio.insecure_channel(target, options=options)
        return grpc.aio.secure_channel(target, self.raw_credentials, options=options)

    def zone(self, name: str, store: MemoryStore) -> GlobalToZoneClient:
        return zone_client(name, self.kds, store, ca_cert_file=self.ca)


def client(zone: str, port: int, store: MemoryStore) -> GlobalToZoneClient:
    """A zone of a plaintext global (bench/ha_propagation.py)."""
    return zone_client(zone, f"grpc://127.0.0.1:{port}", store)


def cpu_seconds(pid: int) -> float:
    """utime + stime of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds spent by a peer process and by this one between `start` and `stop`."""

    def __init__(self, peer_pid: int, on_start: Callable[[], object] = lambda: None) -> None:
        """`on_start`: called as the measurement starts (after the warm-up), to start a profiler."""
        self.peer_pid = peer_pid
        self.on_start = on_start
        self.peer = self.here = 0.0

    def start(self) -> None:
        self.on_start()
        self.peer, self.here = -cpu_seconds(self.peer_pid), -cpu_seconds(os.getpid())

    def stop(self) -> None:
        self.peer += cpu_seconds(self.peer_pid)
        self.here += cpu_seconds(os.getpid())


async def until(check: Any, interval: float = 0.001) -> None:
    while not check():
        await anyio.sleep(interval)


async def initial_sync_ours(target: Target, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        c = target.zone(f"sync-{i}", MemoryStore())
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            tg.start_soon(c.run)
            await until(lambda c=c: c.synced)
            times.append(time.perf_counter() - t0)
            tg.cancel_scope.cancel()
    return times


async def raw_sync(
    port: int, frames: int, credentials: grpc.ChannelCredentials | None = None, *, full_decode: bool = True
) -> None:
    """One full sync from bench/raw_grpc.py: parse each of `frames` responses (and, with `full_decode`, every
    envelope and spec in it, which protobuf leaves as bytes in the Any payloads) and ACK it."""
    async with Target("", None, port, credentials).raw_channel() as ch:
        call = ch.stream_stream("/bench.Raw/Sync")()  # type: ignore[call-arg]
        await call.write(b"")
        got = 0
        async for frame in call:
            resp = discovery_pb2.DeltaDiscoveryResponse.FromString(frame)
            if full_decode:
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


async def initial_sync_raw(target: Target, runs: int, frames: int, *, full_decode: bool) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await raw_sync(target.raw_port, frames, target.raw_credentials, full_decode=full_decode)
        times.append(time.perf_counter() - t0)
    return times


async def fanout_ours(
    api: str, target: Target, zones: int, changes: int, cpu: Cpu
) -> tuple[list[float], list[int], int]:
    stores = [MemoryStore() for _ in range(zones)]
    clients = [target.zone(f"zone-{i}", s) for i, s in enumerate(stores)]
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
            if k == WARMUP:
                cpu.start()
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
        cpu.stop()
        tg.cancel_scope.cancel()
    size = to_envelope(codec.load(route_doc(0))).ByteSize()
    print(
        f"    API write (validate + sqlite fsync) p50 {pct(put_times, 0.5) * 1e3:.1f} ms; "
        f"all latencies (ms): {' '.join(f'{x * 1e3:.0f}' for x in latencies)}"
    )
    return latencies, bytes_per_change, size


async def fanout_raw(target: Target, zones: int, changes: int, cpu: Cpu, *, shared: bool = False) -> list[float]:
    """Each stream on a channel (a TCP connection) of its own, as each zone has its own connection; `shared`: all
    streams on one channel, one connection (what this baseline was until TLS: cheaper than any 50 zones get)."""
    latencies = []
    arrived: list[float] = []
    async with target.raw_channel() as control:
        trigger = control.unary_unary("/bench.Raw/Trigger")  # type: ignore[call-arg]

        async def on(ch: grpc.aio.Channel) -> None:
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

        async def stream() -> None:
            if shared:
                await on(control)
                return
            async with target.raw_channel() as ch:
                await on(ch)

        async with anyio.create_task_group() as tg:
            for _ in range(zones):
                tg.start_soon(stream)
            while len(arrived) < zones:  # until every stream is open: one trigger then reaches them all
                arrived.clear()
                await trigger(b"")
                await anyio.sleep(0.2)
            for k in range(WARMUP + changes):
                if k == WARMUP:
                    cpu.start()
                arrived.clear()
                t0 = time.perf_counter()
                await trigger(b"")
                await until(lambda: len(arrived) >= zones)
                if k >= WARMUP:
                    latencies.append(max(arrived) - t0)
            cpu.stop()
            tg.cancel_scope.cancel()
    return latencies


def py_spy(out: Path, pid: int, name: str) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen(
        [exe, "record", "--pid", str(pid), "--rate", "500", "--format", "raw", "--output", str(out / f"{name}.txt")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def start_raw_server(
    work: Path, frames: Path, tls: bool
) -> tuple[subprocess.Popen[bytes], Path, grpc.ChannelCredentials | None]:
    """Starts bench/raw_grpc.py (the baseline) on `frames`; returns its process, the file it writes its port to,
    and the client credentials (None: plaintext). The caller stops the process."""
    raw_ports = work / "raw.ports.json"
    raw_args = ["--frames", str(frames), "--ports-file", str(raw_ports)]
    credentials = None
    if tls:
        # The baseline's own CA and certificate, as the global makes its own: both columns pay for TLS.
        authority = generate_authority("bench raw CA")
        cert = issue_server(authority, ["127.0.0.1"])
        (work / "raw.crt").write_bytes(cert.chain_pem)
        (work / "raw.key").write_bytes(cert.key_pem)
        raw_args += ["--tls-cert", str(work / "raw.crt"), "--tls-key", str(work / "raw.key")]
        credentials = grpc.ssl_channel_credentials(root_certificates=authority.cert_pem)
    raw = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("raw_grpc.py")), *raw_args],
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    return raw, raw_ports, credentials


async def main(args: argparse.Namespace) -> None:
    zones, changes, runs, tls = args.zones, args.changes, args.runs, not args.plaintext
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="meshgate-bench-"))
    db = work / "global" / "meshgate.db"
    db.parent.mkdir(parents=True)
    frames = work / "frames"
    frames.mkdir()
    print(f"seeding {args.routes} MeshGatewayRoutes into {db} ...", flush=True)
    await seed(db, args.routes)
    await write_frames(db, frames, route_doc(0, prefix="/baseline-change"))
    n_frames = len(list(frames.glob("sync-*.bin")))
    sync_bytes = sum(p.stat().st_size for p in frames.glob("sync-*.bin"))
    # No zone tokens: this measures the KDS engine against a raw gRPC baseline that has none either.
    flags = ["--store", f"sqlite:{db}", "--data-dir", str(db.parent), "--log-level", "warning", "--kds-auth", "none"]
    glob = CPProcess(
        "global_cp",
        global_argv(*flags, *([] if tls else ["--no-kds-tls-enabled"]), kds_port=free_port()),
        work,
        "global",
    )
    raw, raw_ports, credentials = start_raw_server(work, frames, tls)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        ports = await glob.wait_ready(60)
        await until(lambda: raw_ports.exists(), 0.05)
        target = Target(
            f"{'grpcs' if tls else 'grpc'}://127.0.0.1:{ports['kds']}",
            glob.kds_ca_file if tls else None,
            json.loads(raw_ports.read_text())["raw"],
            credentials,
        )
        print(
            f"(a) initial sync: {n_frames} responses, {sync_bytes / 1e6:.2f} MB, {runs} runs each, "
            f"{'TLS' if tls else 'plaintext'}",
            flush=True,
        )
        raw_a = await initial_sync_raw(target, runs, n_frames, full_decode=False)
        raw_full_a = await initial_sync_raw(target, runs, n_frames, full_decode=True)
        ours_a = await initial_sync_ours(target, runs)
        a_ours, a_raw = statistics.median(ours_a), statistics.median(raw_a)
        a_full = statistics.median(raw_full_a)

        print(f"(b) one change to {zones} zones, {changes} changes each", flush=True)

        def start_spies() -> None:  # the measured changes of ours only, not the zones' initial syncs nor the warm-up
            if args.py_spy:
                args.py_spy.mkdir(parents=True, exist_ok=True)
                procs = ((glob.proc.pid, "global"), (os.getpid(), "zones"))
                spies.extend(py_spy(args.py_spy, pid, name) for pid, name in procs)

        raw_cpu, ours_cpu = Cpu(raw.pid), Cpu(glob.proc.pid, start_spies)
        raw_b = await fanout_raw(target, zones, changes, raw_cpu)
        raw_shared = await fanout_raw(target, zones, changes, Cpu(raw.pid), shared=True)
        api = f"http://127.0.0.1:{ports['api']}"
        ours_b, bytes_c, size_c = await fanout_ours(api, target, zones, changes, ours_cpu)
    finally:
        for spy in spies:
            spy.send_signal(2)  # SIGINT: py-spy writes what it recorded
            spy.wait(30)
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
    for name, q, goal in (("p50", 0.5, "2.5x"), ("p99", 0.99, "3x")):
        o, b = pct(ours_b, q), pct(raw_b, q)
        print(
            f"{f'(b) change -> all {zones} zones, {name}':<44}{o * 1e3:>10.1f}ms{b * 1e3:>10.1f}ms{o / b:>7.2f}x"
            f"  <= {goal}"
        )
    for name, q in (("p50", 0.5), ("p99", 0.99)):
        o, b = pct(ours_b, q), pct(raw_shared, q)
        label = f"    same, baseline on one shared channel, {name}"
        print(f"{label:<44}{o * 1e3:>10.1f}ms{b * 1e3:>10.1f}ms{o / b:>7.2f}x")
    for name, o, b in (("sender", ours_cpu.peer, raw_cpu.peer), (f"{zones} receivers", ours_cpu.here, raw_cpu.here)):
        o, b = o / changes, b / changes
        ratio = f"{o / b:>7.2f}x" if b else f"{'-':>8}"  # /proc counts in clock ticks (10 ms)
        print(f"{f'    CPU per change, {name}':<44}{o * 1e3:>10.1f}ms{b * 1e3:>10.1f}ms{ratio}")
    c = statistics.median(bytes_c)
    print(f"{'(c) bytes per zone for one change':<44}{c:>11.0f}B{size_c:>11}B{c / size_c:>7.2f}x  <= 2x")
    print(
        "(CPU: utime+stime of the sending process (the global, incl. its API write; or the raw server) and of this"
        " process (the zones, or the raw streams), over the measured changes)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zones", type=int, default=50)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--plaintext", action="store_true", help="both sides without TLS (zones then validate)")
    parser.add_argument("--py-spy", type=Path, help="record both processes of (b) with py-spy into this directory")
    anyio.run(main, parser.parse_args())
