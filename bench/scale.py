"""Zone scale: what N zones over R routes cost the global, how they come back after it is killed, and how fast
one change reaches all of them.

For each zone count N (`--zones 100,250,500,1000`), on a fresh copy of one SQLite store seeded with R
MeshGatewayRoutes (written straight into the file, as bench/zone_memory.py does: the fastest way this tree
has), the global runs as a real process with its secure defaults (KDS over TLS from its own CA, a zone token
per zone from its API), and `--fleets` client processes (bench/zone_fleet.py) hold N real KDS clients between
them. Phases, each measured on the global's process (/proc: VmRSS, utime + stime):

  sync      all N connect at once; seconds until every zone holds the full state, the global's CPU seconds
            for it per zone, its RSS before and after (settled), and its CPU while the N sit idle (health
            checks, stream upkeep) as a share of one core.
  change    `--changes` single-route PUTs (after warm-up ones): for each, when every zone's store received it
            (the fleets stamp it with time.time(); same host, same clock); p50/p99 over all (zone, change)
            and the global's CPU per change per zone.
  restart   `kill -9` of the global by its PID, restarted on the same store, data dir and KDS port; the zones
            reconnect by themselves offering what they hold (resume). Seconds from the restart (spawn of the
            new process, and its readiness) until every zone is back in sync, the resources and removals
            the zones received meanwhile and the global counts as sent (both must be 0), its CPU per zone.
  storm     half the zones' fleets drop and resume while the other half are in sync: changes are made during
            the reconnects, and their p99 to the zones in sync is set against the quiet p99 above. The global
            admits at most `--kds-max-concurrent-admissions` initial syncs at once (`--admissions` here).

The fleets share decoding (`zone_fleet.py --shared-decode`): each zone still receives, parses, applies and
ACKs its own responses, but the N zones' decoding is done once per fleet, since real zones would do it on
their own CPUs, not on the global's host. The machine's two cores are still shared by the global and the
fleets: the global's figures are its own process's, the seconds are the whole system's.

Usage: python bench/scale.py [--zones 100,250,500,1000] [--routes 10000] [--fleets 2] [--changes 5]
    [--admissions 16] [--json out.json] [--restart-only]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import httpx  # noqa: E402

from bench.propagation import pct, route_doc  # noqa: E402
from bench.zone_memory import (  # noqa: E402
    FleetProcess,
    Global,
    fresh_copy,
    global_view,
    issue_tokens,
    memory,
    resources_sent,
    seed,
    settled,
)
from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.testing.processes import CPProcess, free_port, global_argv  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
# Changes made and not measured first: cold code paths on both sides.
WARMUP = 2
# Seconds between changes during the storm: a steady operator's pace, not a second storm of writes.
STORM_CHANGE_PAUSE = 0.5


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` (every thread), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@dataclass(slots=True)
class Point:
    zones: int
    routes: int
    fleets: int
    admissions: int
    sync_seconds: float = 0.0
    sync_cpu: float = 0.0  # global CPU seconds, all N zones' initial sync
    rss_empty: int = 0  # KiB
    rss_synced: int = 0
    idle_cpu: float = 0.0  # share of one core while the N zones sit in sync
    change_latencies: list[float] = field(default_factory=list)  # seconds, every (zone, change)
    change_cpu: float = 0.0  # global CPU seconds per change
    restart_from_spawn: float = 0.0  # seconds until all N resumed, from the new process's spawn
    restart_from_ready: float = 0.0  # ... from its readiness (ports bound)
    restart_p50: float = 0.0  # seconds from spawn until half the zones resumed
    resent_to_zones: int = 0  # resources + removals the zones received across the restart
    resent_by_global: int = 0  # resources + removals the restarted global counts as sent
    unchanged: int = 0  # of those, with content the zone already held
    resume_cpu: float = 0.0  # restarted global's CPU seconds from ready until all resumed
    rss_resumed: int = 0
    storm_zones: int = 0  # zones that dropped and resumed in the storm
    storm_seconds: float = 0.0
    storm_latencies: list[float] = field(default_factory=list)  # changes to the zones in sync, during the storm

    def per_zone(self, value: float) -> float:
        return value / self.zones


async def change(fleets: list[FleetProcess], api: str, k: int, timeout: float) -> list[float]:
    """PUTs route k with a new path; the seconds until each of `fleets`' zones received it."""
    doc = route_doc(k, prefix=f"/scale/{time.time_ns()}")  # k < R: the fleets expect R routes, no more
    for f in fleets:
        await f.command(f"watch {doc['name']}", 60)
    async with httpx.AsyncClient(base_url=api, timeout=60) as c:
        t0 = time.time()
        r = await c.put(f"/meshes/default/meshgatewayroutes/{doc['name']}", json=doc)
        r.raise_for_status()
    out: list[float] = []
    for f in fleets:
        out += [t - t0 for t in (await f.command("arrivals", timeout))["times"]]
    return out


class Run:
    """One zone count: the global (restarted once), its fleets, and what is measured."""

    def __init__(self, work: Path, db: Path, point: Point, settle: float, progress: Callable[[str], None]) -> None:
        self.work = work / f"n{point.zones}"
        self.db = db
        self.p = point
        self.settle = settle
        self.progress = progress
        self.timeout = 120 + 2.0 * point.zones
        self.fleets: list[FleetProcess] = []
        self.sizes: list[int] = []  # zones per fleet
        self.proc: CPProcess | None = None
        self.port = free_port()

    async def start_global(self, name: str) -> Global:
        argv = global_argv(
            *("--store", f"sqlite:{self.work / 'store' / self.db.name}", "--data-dir", str(self.work / "data")),
            *("--log-level", "warning", "--kds-max-zones", str(self.p.zones + 10)),
            *("--kds-max-concurrent-admissions", str(self.p.admissions)),
            kds_port=self.port,
        )
        self.proc = CPProcess("global_cp", argv, self.work, name)
        ports = await self.proc.wait_ready(120)
        p = self.proc
        return Global(p.proc.pid, p.url(), f"grpcs://127.0.0.1:{ports['kds']}", p.kds_ca_file, p.kds_auth)

    async def run(self, changes: int, *, restart_only: bool = False) -> Point:
        """Every phase; `restart_only` skips the changes and the storm (sync, then kill -9 and resume)."""
        p = self.p
        fresh_copy(self.db, self.work / "store")
        g = await self.start_global("global")
        zones = [f"zone-{i}" for i in range(p.zones)]
        tokens = await issue_tokens(g, zones, self.work / "tokens.json")
        p.rss_empty = (await settled(g.pid, self.settle)).rss
        await self.sync(g, tokens)
        if not restart_only:
            await self.changes(g, changes)
        g = await self.restart(g)
        if len(self.fleets) > 1 and not restart_only:
            await self.storm(g)
        return p

    async def sync(self, g: Global, tokens: Path) -> None:
        p = self.p
        cpu0 = cpu_seconds(g.pid)
        sizes = self.sizes = [p.zones // p.fleets + (i < p.zones % p.fleets) for i in range(p.fleets)]
        for i, size in enumerate(sizes):
            log = self.work / f"fleet-{i}.log"
            first = sum(sizes[:i])
            self.fleets.append(
                await FleetProcess.start(g, size, p.routes, tokens, log, first=first, shared_decode=True)
            )
        synced = [await f.report(self.timeout) for f in self.fleets]
        p.sync_seconds = max(r["seconds"] for r in synced)
        await global_view(g, p.zones, self.timeout)
        p.sync_cpu = cpu_seconds(g.pid) - cpu0
        p.rss_synced = (await settled(g.pid, self.settle)).rss
        cpu0, t0 = cpu_seconds(g.pid), time.perf_counter()
        await anyio.sleep(self.settle)
        p.idle_cpu = (cpu_seconds(g.pid) - cpu0) / (time.perf_counter() - t0)
        self.progress(
            f"  {p.zones} zones synced in {p.sync_seconds:.1f}s, global CPU {p.sync_cpu:.1f}s,"
            f" RSS {p.rss_synced / 1024:.0f} MiB (empty {p.rss_empty / 1024:.0f} MiB), idle CPU {p.idle_cpu:.1%}"
        )

    async def changes(self, g: Global, changes: int) -> None:
        p = self.p
        cpu = 0.0
        for k in range(WARMUP + changes):
            cpu0 = cpu_seconds(g.pid)
            latencies = await change(self.fleets, g.api, k % p.routes, self.timeout)
            if k >= WARMUP:
                cpu += cpu_seconds(g.pid) - cpu0
                p.change_latencies += latencies
        p.change_cpu = cpu / max(1, changes)
        lat = p.change_latencies
        self.progress(f"  change to all {p.zones}: p50 {pct(lat, 0.5) * 1e3:.0f} ms, p99 {pct(lat, 0.99) * 1e3:.0f} ms")

    async def restart(self, g: Global) -> Global:
        """kill -9 of the global by its PID, a new one on the same store and port; back when all resumed."""
        p = self.p
        assert self.proc is not None
        for f in self.fleets:
            await f.command("mark", 60)
        self.proc.stop(signal.SIGKILL)
        spawned = time.time()
        g = await self.start_global("global-restarted")
        ready, cpu0 = time.time(), cpu_seconds(g.pid)
        times: list[float] = []
        for f in self.fleets:
            resynced = await f.command("resynced", self.timeout)
            times += resynced["times"]
            p.resent_to_zones += sum(resynced["upserts"].values()) + sum(resynced["removals"].values())
            p.unchanged += sum(resynced["unchanged"].values())
        p.resume_cpu = cpu_seconds(g.pid) - cpu0
        p.restart_from_spawn = max(times) - spawned
        p.restart_from_ready = max(times) - ready
        p.restart_p50 = pct(times, 0.5) - spawned
        p.resent_by_global = resources_sent(await global_view(g, p.zones, self.timeout))
        p.rss_resumed = memory(g.pid).rss
        self.progress(
            f"  kill -9 + restart: all {p.zones} resumed {p.restart_from_spawn:.1f}s after the spawn"
            f" ({p.restart_from_ready:.1f}s after ready); re-sent: {p.resent_to_zones} received by zones,"
            f" {p.resent_by_global} counted by the global"
        )
        return g

    async def storm(self, g: Global) -> None:
        """The first fleet stays in sync; the others drop and resume together, while changes are made."""
        p = self.p
        steady, stormy = self.fleets[:1], self.fleets[1:]
        for f in stormy:
            await f.command("disconnect", 60)
        held = self.sizes[0]
        p.storm_zones = p.zones - held
        done = anyio.Event()

        async def reconnect() -> None:
            for f in stormy:
                await f.send("reconnect")
            for f in stormy:
                await f.report(self.timeout)
            done.set()

        k = WARMUP + len(p.change_latencies)
        with anyio.fail_after(self.timeout):
            await self._storm(g, steady, reconnect, done, k)
        lat = p.storm_latencies
        self.progress(
            f"  storm: {p.storm_zones} zones resumed in {p.storm_seconds:.1f}s; changes to the {held} in sync"
            f" meanwhile: p50 {pct(lat, 0.5) * 1e3:.0f} ms, p99 {pct(lat, 0.99) * 1e3:.0f} ms"
        )

    async def _storm(
        self, g: Global, steady: list[FleetProcess], reconnect: Callable[[], Any], done: anyio.Event, k: int
    ) -> None:
        p = self.p
        async with anyio.create_task_group() as tg:
            t0 = time.perf_counter()
            tg.start_soon(reconnect)
            while not done.is_set() or not p.storm_latencies:
                p.storm_latencies += await change(steady, g.api, k % p.routes, self.timeout)
                k += 1
                await anyio.sleep(STORM_CHANGE_PAUSE)
            p.storm_seconds = time.perf_counter() - t0

    async def stop(self) -> None:
        for f in self.fleets:
            await f.stop()
        if self.proc is not None:
            self.proc.stop()


async def run_scale(
    work: Path,
    counts: list[int],
    routes: int,
    *,
    fleets: int = 2,
    changes: int = 5,
    admissions: int = 16,
    settle: float = 3.0,
    restart_only: bool = False,
    progress: Callable[[str], None] = print,
) -> list[Point]:
    db = work / "seed" / "meshgate.db"
    db.parent.mkdir(parents=True)
    t0 = time.perf_counter()
    await seed(db, routes)
    progress(f"seeded {routes} MeshGatewayRoutes in {time.perf_counter() - t0:.1f}s (logs in {work})")
    points = []
    for n in counts:
        run = Run(work, db, Point(n, routes, min(fleets, n), admissions), settle, progress)
        run.work.mkdir()
        try:
            points.append(await run.run(changes, restart_only=restart_only))
        finally:
            await run.stop()
    return points


def _pct(values: list[float], q: float) -> float:
    """`pct`, or NaN when a phase was skipped (`--restart-only`)."""
    return pct(values, q) if values else float("nan")


def table(points: list[Point]) -> str:
    head = (
        f"{'zones':>6}{'sync s':>8}{'CPU ms/z':>9}{'RSS MiB':>8}{'KiB/z':>7}{'idle':>6}"
        f"{'chg p50':>8}{'p99 ms':>7}{'CPU ms/z':>9}{'resume s':>9}{'(ready)':>8}{'p50 s':>6}{'resent':>7}"
        f"{'CPU ms/z':>9}{'RSS MiB':>8}{'storm p99':>10}"
    )
    lines = [
        "sync: all zones' initial sync; chg: one change to all zones; resume: kill -9 + restart until all resumed",
        "(from spawn, from ready); storm: p99 to zones in sync while the others resume. CPU: the global's.",
        head,
    ]
    for p in points:
        grow = (p.rss_synced - p.rss_empty) / p.zones
        storm = f"{_pct(p.storm_latencies, 0.99) * 1e3:>8.0f}ms" if p.storm_latencies else f"{'-':>10}"
        lines.append(
            f"{p.zones:>6}{p.sync_seconds:>8.1f}{p.per_zone(p.sync_cpu) * 1e3:>9.1f}{p.rss_synced / 1024:>8.0f}"
            f"{grow:>7.0f}{p.idle_cpu:>6.0%}{_pct(p.change_latencies, 0.5) * 1e3:>8.0f}"
            f"{_pct(p.change_latencies, 0.99) * 1e3:>7.0f}{p.per_zone(p.change_cpu) * 1e3:>9.2f}"
            f"{p.restart_from_spawn:>9.1f}{p.restart_from_ready:>8.1f}{p.restart_p50:>6.1f}"
            f"{p.resent_to_zones + p.resent_by_global:>7}{p.per_zone(p.resume_cpu) * 1e3:>9.1f}"
            f"{p.rss_resumed / 1024:>8.0f}{storm}"
        )
    return "\n".join(lines)


def bends(points: list[Point]) -> list[str]:
    """Where a per-zone figure grows by more than half from one zone count to the next."""
    figures: dict[str, Callable[[Point], float]] = {
        "sync CPU per zone": lambda p: p.per_zone(p.sync_cpu),
        "sync seconds per zone": lambda p: p.per_zone(p.sync_seconds),
        "change p99 per zone": lambda p: p.per_zone(_pct(p.change_latencies, 0.99)),
        "resume seconds per zone": lambda p: p.per_zone(p.restart_from_ready),
        "resume CPU per zone": lambda p: p.per_zone(p.resume_cpu),
    }
    out = []
    for lo, hi in pairwise(points):
        for name, f in figures.items():
            a, b = f(lo), f(hi)
            if a > 0 and b > 1.5 * a:
                out.append(f"{name}: {a * 1e3:.2f} ms at {lo.zones} -> {b * 1e3:.2f} ms at {hi.zones} ({b / a:.1f}x)")
    return out


def targets(p: Point) -> list[str]:
    rss = p.rss_synced / 2**20
    p99 = _pct(p.change_latencies, 0.99)
    resent = p.resent_to_zones + p.resent_by_global
    return [
        f"global RSS {rss:.2f} GiB with {p.zones} zones (target <= 2 GiB): {'met' if rss <= 2 else 'MISSED'}",
        f"all {p.zones} resumed {p.restart_from_spawn:.1f}s after the restart (target <= 60 s):"
        f" {'met' if p.restart_from_spawn <= 60 else 'MISSED'}",
        f"resources re-sent on resume: {resent} (target 0): {'met' if resent == 0 else 'MISSED'}",
        f"one change to all {p.zones}: p99 {p99:.2f}s (target <= 2 s): {'met' if p99 <= 2 else 'MISSED'}",
    ]


async def main(args: argparse.Namespace) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    counts = sorted({int(z) for z in args.zones.split(",")})
    points = await run_scale(
        work,
        counts,
        args.routes,
        fleets=args.fleets,
        changes=args.changes,
        admissions=args.admissions,
        settle=args.settle,
        restart_only=args.restart_only,
    )
    print()
    print(
        f"{args.routes} MeshGatewayRoutes, {args.fleets} fleet processes, --kds-max-concurrent-admissions"
        f" {args.admissions}, {os.cpu_count()} cores"
    )
    print(table(points))
    for line in bends(points) or ["no per-zone figure grows by more than half between zone counts"]:
        print("bend: " + line)
    for line in targets(points[-1]):
        print("target: " + line)
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(p) for p in points], indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zones", default="100,250,500,1000", help="comma-separated zone counts, a fresh global each")
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--fleets", type=int, default=2, help="client processes the zones are spread over")
    parser.add_argument("--changes", type=int, default=5, help="measured single-route changes per zone count")
    parser.add_argument("--admissions", type=int, default=16, help="the global's --kds-max-concurrent-admissions")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of quiet before RSS and idle CPU")
    parser.add_argument("--json", help="also write every figure here")
    parser.add_argument(
        "--restart-only", action="store_true", help="only the sync and the kill -9 + resume (no changes, no storm)"
    )
    anyio.run(main, parser.parse_args())
