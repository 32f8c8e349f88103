"""The global's memory per connected zone: RSS with 1 zone and with N zones over R routes, and after a resume.

Issue 12's item 7 asks that once a zone has ACKed, the global keep for it a cursor into the shared snapshot
plus what is in flight or rejected, not a copy of every version: RSS with 200 zones <= 1.5x RSS with 1 zone.

How it runs. R MeshGatewayRoutes (plus a Mesh and a MeshGateway) are written straight into a SQLite store file
(the API has no bulk path and R PUTs would take minutes), copied for each run. For each zone count N, a fresh
`meshgate-global run` (`python -m global_cp run`) starts on that file with its secure defaults (KDS over TLS
from its own CA, a zone token per zone, issued by its API), and its RSS is taken with zero zones ("empty").
Then one separate process (bench/zone_fleet.py) connects N real zone clients over gRPC; once every zone holds
the full state and the global's own insight shows every response of every kind ACKed and none in flight, the
global's RSS is taken again after a settle (the global is another process: nothing can call its gc, so the
settle is a quiet wait, RSS read three times a second apart, the last one kept). For the largest N, every
zone then disconnects (RSS again) and reconnects offering what it holds as initial_resource_versions: the
zones count the resources and removals they receive after that, and the global's insight `resourcesSent` of
the new streams must be 0 too.

`--trace` instead runs the global in this process under tracemalloc (Python allocations only: gRPC core,
OpenSSL and upb arenas are not traced) with `--trace-zones` zones, and prints where the allocations made
while the zones connected live, by line and by file.

Where the per-zone memory goes today (meshgate/kds/sender.py, transport/kds_server.py, transport/streams.py).
Measured 2026-12-05 on 10k routes (secure defaults): RSS 175 MiB with 1 zone, 325 MiB with 200 (1.85x, the
target is 1.5x), 631 MiB once the 200 have resumed (3.60x); `--trace` with 20 zones shows what Python holds.
  * Per stream the global holds a `Sender`, a `SenderKind` per kind, and per kind three dicts with an entry for
    every resource the zone has: `known` (name -> version), `confirmed` (name -> version, what it ACKed) and
    `sent` (name -> (nonce, time) of the response that last carried it). After an initial sync their keys and
    values are the snapshot's own strings and `sent` shares one tuple per response, so what each costs is its
    table: a 10k-entry str-keyed dict is a 16k-slot table of about 205 KiB. Three per zone, about 615 KiB, or
    63 B per (zone, resource): tracemalloc finds exactly these (sender.py: `known.update`, `sent.update`,
    `confirmed.update`, 4.0 MiB each for 20 zones), and the marginal RSS of a zone between 1 and 200 is 770 KiB
    (79 B per (zone, resource)). Everything else per stream (the StreamSession, `rejected`/`oversized`/in-flight,
    empty once all is ACKed, a cached snapshot view that is the shared snapshot itself, gRPC call and TLS
    session) is small next to that.
  * A resumed stream costs more: `known = dict(req.initial_resource_versions)` and `confirmed = dict(known)`
    hold new strings decoded from the zone's request, not shared with the snapshot: a name (about 85 B) and a
    version (about 70 B) per resource on top of the two tables, 201 B per (zone, resource) traced (sender.py
    `known = dict(...)` and the upb map's iteration), and the RSS after 200 zones resume is 2.4 MiB per zone
    over the empty global.
  * RSS grows by more than Python holds: the first response to each zone is a 3.6 MB message copied from the
    snapshot, serialized and encrypted per zone; freed afterwards, but the allocator keeps the high-water mark
    (`--trace` with 20 zones connecting at once: RSS +176 MiB, Python +13 MiB). That is why 1 zone already
    adds 23 MiB over the empty global, and why the ratio depends on how many zones sync at once.
  A cursor (the snapshot revision a zone ACKed, plus what is in flight or rejected) instead of `known`,
  `confirmed` and `sent` would leave a per-zone cost independent of the resource count.
Since then (meshgate/delta/versions.py, stamps.py): a settled KDS stream keeps `known` and `confirmed` as views
on the snapshot with empty overlays and `sent` as one stamp run per response; a resume's initial versions
are interned against the snapshot at its first response. Measured after that, same 10k routes: RSS 159 MiB
with 1 zone, 201 MiB with 200 (1.27x; 218 KiB per zone), 251 MiB once the 200 have resumed (1.58x): what is
left per zone is mostly the allocator's high-water mark of each zone's first 3.6 MB response and resume.

Resume depends on the process: `to_envelope` (meshgate/kds/envelope.py) packs the spec with `Any.Pack` without
`deterministic=True`, so a map field with two or more keys (these routes' backend `destination` tags) is
serialized in an order that varies from process to process, and so does the content version. When the
global's order differs from a zone's, every such resource is re-sent on every resume (the report says how
many arrived with content the zone already held); in the smoke runs that was one run in two or three.

Usage: python bench/zone_memory.py [--zones 1,200] [--routes 10000] [--plaintext] [--trace [--trace-zones 20]]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import httpx  # noqa: E402
from anyio.abc import Process  # noqa: E402
from anyio.streams.buffered import BufferedByteReceiveStream  # noqa: E402

from bench.propagation import MESH, route_doc  # noqa: E402
from bench.zone_fleet import rss_kib  # noqa: E402
from global_cp.app import GlobalConfig, run_global  # noqa: E402
from meshgate.auth import KDSAuth  # noqa: E402
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources import codec  # noqa: E402
from meshgate.store.sqlite import SqliteStore  # noqa: E402
from meshgate.testing.processes import CPProcess, global_argv  # noqa: E402

FLEET = Path(__file__).with_name("zone_fleet.py")
GATEWAY = {
    "type": "MeshGateway",
    "mesh": "default",
    "name": "edge",
    "selectors": [{"match": {"kuma.io/service": "edge"}}],
    "conf": {"listeners": [{"port": 8080, "protocol": "HTTP", "hostname": "*"}]},
}
TARGET = 1.5


@dataclass(frozen=True, slots=True)
class Memory:
    rss: int  # KiB, VmRSS
    pss: int  # KiB, smaps_rollup Pss
    private: int  # KiB, smaps_rollup Private_Clean + Private_Dirty


def memory(pid: int) -> Memory:
    rollup = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        rollup[key] = int(value.split()[0])
    return Memory(rss_kib(pid), rollup["Pss"], rollup["Private_Clean"] + rollup["Private_Dirty"])


async def settled(pid: int, settle: float) -> Memory:
    await anyio.sleep(settle)
    m = memory(pid)
    for _ in range(2):
        await anyio.sleep(1.0)
        m = memory(pid)
    return m


@dataclass(slots=True)
class Run:
    zones: int
    empty: Memory
    synced: Memory | None = None
    seconds: float = 0.0
    resources_per_zone: int = 0
    disconnected: Memory | None = None
    resumed: Memory | None = None
    resume: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Global:
    """A running global, however it was started: what the bench needs to reach and weigh it."""

    pid: int
    api: str
    kds: str  # grpc(s)://127.0.0.1:PORT
    ca_file: Path | None
    tokens: bool  # whether zones need a zone token (--kds-auth cp-token)


async def seed(db: Path, routes: int) -> None:
    store = await SqliteStore.open(db)
    try:
        await store.create(codec.load(MESH))
        await store.create(codec.load(GATEWAY))
        await store.apply_sync("MeshGatewayRoute", [codec.load(route_doc(i)) for i in range(routes)], [])
    finally:
        await store.close()


def fresh_copy(db: Path, into: Path) -> Path:
    into.mkdir(parents=True)
    for src in db.parent.glob(db.name + "*"):  # the file, and its -wal/-shm if SQLite left them
        shutil.copy(src, into / src.name)
    return into / db.name


async def issue_tokens(g: Global, zones: list[str], out: Path) -> Path:
    """A zone token per zone from the global's API (a loopback caller is its admin), in a 0600 JSON file."""
    tokens = {}
    async with httpx.AsyncClient(base_url=g.api, timeout=30) as c:
        for zone in zones:
            r = await c.post("/tokens/zone", json={"zone": zone, "validFor": "24h"})
            r.raise_for_status()
            tokens[zone] = r.text
    out.touch(mode=0o600)
    out.write_text(json.dumps(tokens))
    return out


def open_streams(overview: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        sub
        for item in overview["items"]
        for sub in item["zoneInsight"]["subscriptions"]
        if sub.get("direction") == "global-to-zone" and not sub.get("disconnectTime")
    ]


def all_acked(sub: dict[str, Any]) -> bool:
    return all(
        s["responsesSent"] == s["responsesAcknowledged"] and "inFlightNonce" not in s
        for s in sub["status"]["stat"].values()
    )


async def global_view(g: Global, zones: int, timeout: float) -> list[dict[str, Any]]:
    """The global's open global-to-zone streams once there are `zones` of them and every response of every
    kind is ACKed with none in flight, twice in a row a second apart."""
    steady = 0
    with anyio.fail_after(timeout):
        async with httpx.AsyncClient(base_url=g.api, timeout=60) as c:
            while True:
                r = await c.get("/zones/_overview")
                r.raise_for_status()
                subs = open_streams(r.json())
                steady = steady + 1 if len(subs) == zones and all(all_acked(s) for s in subs) else 0
                if steady == 2:
                    return subs
                await anyio.sleep(1.0)


def resources_sent(subs: list[dict[str, Any]]) -> int:
    return sum(int(s["resourcesSent"]) + int(s["removalsSent"]) for sub in subs for s in sub["status"]["stat"].values())


class FleetProcess:
    """bench/zone_fleet.py as a child process: commands on its stdin, JSON reports on its stdout."""

    def __init__(self, proc: Process) -> None:
        self.proc = proc
        assert proc.stdout is not None
        self._out = BufferedByteReceiveStream(proc.stdout)

    @classmethod
    async def start(
        cls,
        g: Global,
        zones: int,
        routes: int,
        tokens: Path | None,
        log: Path,
        *,
        first: int = 0,
        shared_decode: bool = False,
    ) -> FleetProcess:
        argv = [sys.executable, str(FLEET), "--address", g.kds, "--zones", str(zones), "--first", str(first)]
        argv += ["--shared-decode"] if shared_decode else []
        argv += ["--expect", "Mesh=1", "MeshGateway=1", f"MeshGatewayRoute={routes}"]
        argv += ["--ca-cert-file", str(g.ca_file)] if g.ca_file else []
        argv += ["--tokens-file", str(tokens)] if tokens else []
        with log.open("ab") as err:
            proc = await anyio.open_process(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        return cls(proc)

    async def report(self, timeout: float) -> dict[str, Any]:
        with anyio.fail_after(timeout):
            line = await self._out.receive_until(b"\n", 1 << 20)
        out: dict[str, Any] = json.loads(line)
        return out

    async def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        await self.proc.stdin.send(command.encode() + b"\n")

    async def command(self, command: str, timeout: float) -> dict[str, Any]:
        await self.send(command)
        return await self.report(timeout)

    async def stop(self) -> None:
        """Stops this child by its own handle (its PID), escalating to SIGKILL."""
        if self.proc.returncode is None:
            self.proc.terminate()
            with anyio.move_on_after(10):
                await self.proc.wait()
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


async def measure(g: Global, work: Path, n: int, routes: int, settle: float, *, resume: bool) -> Run:
    zones = [f"zone-{i}" for i in range(n)]
    tokens = await issue_tokens(g, zones, work / f"tokens-{n}.json") if g.tokens else None
    run = Run(n, await settled(g.pid, settle))
    print(f"  {n} zones: global RSS empty {run.empty.rss / 1024:.0f} MiB; connecting ...", flush=True)
    sync_timeout = 120 + 3 * n
    fleet = await FleetProcess.start(g, n, routes, tokens, work / f"fleet-{n}.log")
    try:
        synced = await fleet.report(sync_timeout)
        subs = await global_view(g, n, sync_timeout)
        run.seconds = synced["seconds"]
        run.resources_per_zone = resources_sent(subs) // n
        run.synced = await settled(g.pid, settle)
        print(
            f"  {n} zones synced in {run.seconds:.1f}s ({run.resources_per_zone} resources each, fleet RSS"
            f" {synced['rss_mib']:.0f} MiB): global RSS {run.synced.rss / 1024:.0f} MiB",
            flush=True,
        )
        if resume:
            await fleet.command("disconnect", 60)
            await global_view(g, 0, 60)
            run.disconnected = await settled(g.pid, settle)
            resumed = await fleet.command("reconnect", sync_timeout)
            subs = await global_view(g, n, sync_timeout)
            run.resumed = await settled(g.pid, settle)
            run.resume = {
                "upserts": resumed["upserts"],
                "removals": resumed["removals"],
                "unchanged": resumed["unchanged"],
                "responses": resumed["responses"],
                "bytes": resumed["bytes"],
                "sent_by_global": resources_sent(subs),
                "seconds": resumed["seconds"],
            }
        await fleet.command("quit", 60)
    finally:
        await fleet.stop()
    return run


async def subprocess_run(work: Path, db: Path, n: int, args: argparse.Namespace, *, resume: bool) -> Run:
    run_dir = work / f"global-{n}"
    copy = fresh_copy(db, run_dir)
    insecure = ["--no-kds-tls-enabled", "--kds-auth", "none"] if args.plaintext else []
    argv = global_argv("--store", f"sqlite:{copy}", "--data-dir", str(run_dir), "--log-level", "warning", *insecure)
    proc = CPProcess("global_cp", argv, work, f"global-{n}")
    try:
        ports = await proc.wait_ready(120)
        scheme = "grpc" if args.plaintext else "grpcs"
        g = Global(proc.proc.pid, proc.url(), f"{scheme}://127.0.0.1:{ports['kds']}", proc.kds_ca_file, proc.kds_auth)
        return await measure(g, work, n, args.routes, args.settle, resume=resume)
    finally:
        proc.stop()


def print_table(runs: list[Run], routes: int) -> None:
    mib = 1024

    def row(label: str, empty: Memory, m: Memory, zones: int, per: int) -> None:
        delta = m.rss - empty.rss
        per_zone = f"{delta / zones:>12.0f}" if zones else f"{'':>12}"
        per_res = f"{delta * 1024 / (zones * per):>10.0f}" if zones and per else f"{'':>10}"
        print(
            f"{label:<26}{m.rss / mib:>9.0f}{m.pss / mib:>9.0f}{m.private / mib:>9.0f}"
            f"{delta / mib:>10.0f}{per_zone}{per_res}"
        )

    print()
    print(f"global RSS over {routes} MeshGatewayRoutes (+ Mesh, MeshGateway); MiB unless said")
    print(f"{'':<26}{'RSS':>9}{'Pss':>9}{'Private':>9}{'delta':>10}{'KiB/zone':>12}{'B/(z,res)':>10}")
    for run in runs:
        row(f"empty (before {run.zones})", run.empty, run.empty, 0, 0)
        assert run.synced is not None
        row(f"{run.zones} zones synced", run.empty, run.synced, run.zones, run.resources_per_zone)
        if run.disconnected is not None and run.resumed is not None:
            row(f"{run.zones} zones disconnected", run.empty, run.disconnected, run.zones, 0)
            row(f"{run.zones} zones resumed", run.empty, run.resumed, run.zones, run.resources_per_zone)
    lo, hi = runs[0], runs[-1]
    assert lo.synced is not None
    assert hi.synced is not None
    if hi.zones > lo.zones:
        ratio = hi.synced.rss / lo.synced.rss
        marginal = (hi.synced.rss - lo.synced.rss) / (hi.zones - lo.zones)
        verdict = "meets" if ratio <= TARGET else "misses"
        print(
            f"RSS({hi.zones})/RSS({lo.zones}) = {ratio:.2f}x, target <= {TARGET}x: {verdict} it;"
            f" marginal cost {marginal:.0f} KiB per zone"
            f" ({marginal * 1024 / max(1, hi.resources_per_zone):.0f} B per (zone, resource))"
        )
        if hi.resumed is not None:
            r = hi.resumed.rss / lo.synced.rss
            print(f"after resume: RSS({hi.zones})/RSS({lo.zones}) = {r:.2f}x")
    if hi.resume:
        res = hi.resume
        print(
            f"resume of {hi.zones} zones in {res['seconds']:.1f}s: zones received"
            f" {sum(res['upserts'].values())} resources {res['upserts']} and {sum(res['removals'].values())}"
            f" removals in {res['responses']} responses ({res['bytes']} bytes);"
            f" the global counts {res['sent_by_global']} sent"
        )
        if res["unchanged"]:
            print(
                f"  of those, {sum(res['unchanged'].values())} had the very content the zone held: the global's"
                " version of it differs from the zone's (a content hash not canonical across processes)"
            )


async def trace(work: Path, db: Path, args: argparse.Namespace) -> None:
    """The global in this process under tracemalloc: which lines hold what the zones' streams added."""
    run_dir = work / "global-trace"
    copy = fresh_copy(db, run_dir)
    tracemalloc.start(1)
    cfg = GlobalConfig(
        bind_address="127.0.0.1",
        api_port=0,
        kds_port=0,
        diagnostics_port=0,
        store=f"sqlite:{copy}",
        data_dir=run_dir,
        kds_tls_enabled=not args.plaintext,
        kds_auth=KDSAuth.NONE if args.plaintext else KDSAuth.CP_TOKEN,
    )
    n = args.trace_zones
    async with anyio.create_task_group() as tg:
        ports = await tg.start(run_global, cfg)
        scheme = "grpc" if args.plaintext else "grpcs"
        ca = None if args.plaintext else run_dir / "kds-ca.crt"
        api, kds = f"http://127.0.0.1:{ports['api']}", f"{scheme}://127.0.0.1:{ports['kds']}"
        g = Global(os.getpid(), api, kds, ca, not args.plaintext)
        zones = [f"zone-{i}" for i in range(n)]
        tokens = await issue_tokens(g, zones, work / "tokens-trace.json") if g.tokens else None
        snapshots = [await traced_state("empty", 0.0)]
        fleet = await FleetProcess.start(g, n, args.routes, tokens, work / "fleet-trace.log")
        try:
            await fleet.report(600 + 10 * n)
            subs = await global_view(g, n, 600)
            snapshots.append(await traced_state(f"{n} zones synced", args.settle))
            await fleet.command("disconnect", 60)
            await global_view(g, 0, 60)
            resumed = await fleet.command("reconnect", 600 + 10 * n)
            resent = resources_sent(await global_view(g, n, 600))
            snapshots.append(await traced_state(f"{n} zones resumed", args.settle))
            await fleet.command("quit", 60)
        finally:
            await fleet.stop()
        tg.cancel_scope.cancel()
    tracemalloc.stop()
    per_zone = resources_sent(subs) // n
    (_, before, rss_before), *later = snapshots
    print(f"resume: the zones received {dict(resumed['upserts'])}, the global counts {resent} resources sent")
    print()
    print("tracemalloc, global in this process (Python allocations; not gRPC core, OpenSSL, upb arenas):")
    for label, after, rss_after in later:
        traced = sum(s.size_diff for s in after.compare_to(before, "filename"))
        print(
            f"{label} x {per_zone} resources: RSS +{(rss_after - rss_before) / 1024:.0f} MiB, traced"
            f" +{traced / 2**20:.0f} MiB ({traced / (n * per_zone):.0f} B per (zone, resource)); largest growth:"
        )
        for group, top in (("lineno", 12), ("filename", 6)):
            for stat in after.compare_to(before, group)[:top]:
                frame = stat.traceback[0]
                where = _short(frame.filename) + (f":{frame.lineno}" if group == "lineno" else " (file)")
                print(f"  {stat.size_diff / 2**20:>8.1f} MiB {stat.count_diff:>+9} blocks  {where}")


async def traced_state(label: str, settle: float) -> tuple[str, tracemalloc.Snapshot, int]:
    await anyio.sleep(settle)
    gc.collect()
    ignore = [
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap>"),
    ]
    return label, tracemalloc.take_snapshot().filter_traces(ignore), rss_kib()


def _short(filename: str) -> str:
    for marker in ("/site-packages/", "/wt-zonebench/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


async def main(args: argparse.Namespace) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="zone-memory-"))
    db = work / "seed" / "meshgate.db"
    db.parent.mkdir()
    t0 = time.perf_counter()
    await seed(db, args.routes)
    print(f"seeded {args.routes} MeshGatewayRoutes into {db} in {time.perf_counter() - t0:.1f}s (logs in {work})")
    if args.trace:
        await trace(work, db, args)
        return
    counts = sorted({int(z) for z in args.zones.split(",")})
    runs = [await subprocess_run(work, db, n, args, resume=n == counts[-1]) for n in counts]
    print_table(runs, args.routes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", default="1,200", help="comma-separated zone counts, one fresh global each")
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of quiet before RSS is read")
    parser.add_argument("--plaintext", action="store_true", help="KDS without TLS and zone tokens")
    parser.add_argument("--trace", action="store_true", help="in-process global under tracemalloc instead")
    parser.add_argument("--trace-zones", type=int, default=20)
    anyio.run(main, parser.parse_args())
