"""DNS benchmark: `.mesh` answers with --names names loaded vs a bare UDP echo on the same event loop.

One server process runs, on one asyncio loop, the zone's DNS server (`meshgate.dns.server.DnsServer`, the
table holding --names names) and a bare UDP echo (a datagram protocol that sends every datagram back). The same
load is then driven at each port in turn, in the same run:

- with `dnsperf` (Debian package `dnsperf`: `apt-get install dnsperf`) when it is on PATH;
- otherwise with a small Python load generator in a separate process: --sockets UDP sockets, each keeping
  --window queries in flight (closed loop), A queries for random loaded names. The output says which.

Printed per target: answers per second, p50 latency under that load, p50 with one query in flight, and the
server process's CPU time per answer (from /proc): the last figure does not depend on whether the load
generator or the server is the bottleneck, which on a small machine a Python generator may well be.
The ratio (target >= 0.8x of echo) is printed for qps and for CPU per answer.

Usage: python bench/dns.py [--names 10000] [--seconds 3] [--rounds 5] [--sockets 8] [--window 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import selectors
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's directory comes first on sys.path, and this file would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import anyio  # noqa: E402
import dns.message  # noqa: E402

from meshgate.dns.responder import Table  # noqa: E402
from meshgate.dns.server import DnsServer  # noqa: E402


def names(count: int) -> list[str]:
    return [f"svc-{i}_ns_svc_80.mesh" for i in range(count)]


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def _serve(count: int) -> None:
    table = Table("mesh", {name: IPv4Address(0xF0000001 + i) for i, name in enumerate(names(count))})
    server = DnsServer(table)
    loop = asyncio.get_running_loop()
    echo, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    try:
        async with anyio.create_task_group() as tg:
            port = await tg.start(server.serve, "127.0.0.1", 0)
            print(json.dumps({"dns": port, "echo": echo.get_extra_info("sockname")[1]}), flush=True)
            await anyio.sleep_forever()
    finally:
        echo.close()


def _queries(count: int, n: int) -> list[bytes]:
    rng = random.Random(7)
    pool = names(count)
    out = []
    for _ in range(n):
        q = dns.message.make_query(rng.choice(pool), "A")
        out.append(q.to_wire()[2:])  # without the id, which the generator sets per send
    return out


def load(port: int, count: int, seconds: float, sockets: int, window: int) -> dict[str, float]:
    """Closed-loop UDP load; returns answers/s and p50 latency (ms). Runs in its own process."""
    bodies = _queries(count, 4096)
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    sent_at: dict[tuple[int, int], float] = {}
    latencies: list[float] = []
    next_id = 0
    answered = 0

    def send(i: int, s: socket.socket) -> None:
        nonlocal next_id
        qid = next_id = (next_id + 1) & 0xFFFF
        sent_at[(i, qid)] = time.perf_counter()
        try:
            s.send(qid.to_bytes(2) + bodies[qid % len(bodies)])
        except BlockingIOError:
            del sent_at[(i, qid)]

    index = {s.fileno(): i for i, s in enumerate(socks)}
    for i, s in enumerate(socks):
        for _ in range(window):
            send(i, s)
    start = time.perf_counter()
    end = start + seconds
    last_sweep = start
    while (now := time.perf_counter()) < end:
        for key, _ in sel.select(0.05):
            i = index[key.fd]
            s = socks[i]
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                t = sent_at.pop((i, int.from_bytes(data[:2])), None)
                if t is None:
                    continue
                answered += 1
                latencies.append(time.perf_counter() - t)
                send(i, s)
        if now - last_sweep > 0.2:
            # A lost datagram would shrink the window for good: replace queries older than 200 ms.
            last_sweep = now
            for k, t in list(sent_at.items()):
                if now - t > 0.2:
                    del sent_at[k]
                    send(k[0], socks[k[0]])
    elapsed = time.perf_counter() - start
    for s in socks:
        s.close()
    return {"qps": answered / elapsed, "p50_ms": statistics.median(latencies) * 1000 if latencies else float("nan")}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _drive_python(port: int, args: argparse.Namespace, sockets: int, window: int, seconds: float) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--load", str(port), "--names", str(args.names), "--seconds", str(seconds)]
    cmd += ["--sockets", str(sockets), "--window", str(window)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return dict(json.loads(done.stdout))


def _drive_dnsperf(port: int, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        rng = random.Random(7)
        pool = names(args.names)
        f.write("".join(f"{rng.choice(pool)} A\n" for _ in range(10_000)))
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", f.name, "-l", str(args.seconds), "-c", "8", "-q", "128"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    os.unlink(f.name)
    figures: dict[str, float] = {}
    for line in out.splitlines():
        if "Queries per second:" in line:
            figures["qps"] = float(line.split(":")[1])
        elif "Average Latency" in line:
            figures["p50_ms"] = float(line.split(":")[1].split()[0]) * 1000  # dnsperf gives the mean, in s
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--sockets", type=int, default=8)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5, help="echo/dns rounds; the figures are their medians")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--load", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        anyio.run(_serve, args.names)
        return
    if args.load is not None:
        print(json.dumps(load(args.load, args.names, args.seconds, args.sockets, args.window)))
        return

    dnsperf = shutil.which("dnsperf")
    driver = "dnsperf" if dnsperf else f"Python load generator ({args.sockets} sockets x {args.window} in flight)"
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--names", str(args.names)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        while not line.startswith(b'{"dns"'):  # structlog's own lines come first
            line = server.stdout.readline()
        ports = json.loads(line)
        check = dns.message.make_query(names(args.names)[-1], "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(check.to_wire(), ("127.0.0.1", ports["dns"]))
            reply = dns.message.from_wire(s.recv(2048))
        assert reply.answer, "the DNS server did not answer a loaded name"
        print(f"names loaded: {args.names}; driver: {driver}")
        if not dnsperf:
            print("  (dnsperf not on PATH: `apt-get install dnsperf` to drive with it; using the Python generator)")
        rounds: list[dict[str, dict[str, float]]] = []
        for r in range(args.rounds):
            # Echo and DNS back to back, in alternating order, so a machine getting busier or quieter during the
            # run shifts both sides of a round's ratio alike; the median over rounds is the figure.
            results: dict[str, dict[str, float]] = {}
            for target in ("echo", "dns") if r % 2 == 0 else ("dns", "echo"):
                cpu0 = _cpu_seconds(server.pid)
                if dnsperf:
                    figures = _drive_dnsperf(ports[target], args)
                else:
                    figures = _drive_python(ports[target], args, args.sockets, args.window, args.seconds)
                cpu = _cpu_seconds(server.pid) - cpu0
                figures["cpu_us_per_answer"] = cpu / max(figures["qps"] * args.seconds, 1) * 1e6
                figures["p50_idle_ms"] = _drive_python(ports[target], args, 1, 1, 1.0)["p50_ms"]
                results[target] = figures
            rounds.append(results)
            qps_r = results["dns"]["qps"] / results["echo"]["qps"]
            cpu_r = results["echo"]["cpu_us_per_answer"] / results["dns"]["cpu_us_per_answer"]
            print(f"  round {r + 1}: {qps_r:.2f}x qps, {cpu_r:.2f}x by CPU", flush=True)
        for target in ("echo", "dns"):
            f = {k: statistics.median(rd[target][k] for rd in rounds) for k in rounds[0][target]}
            print(
                f"{target:>5}: {f['qps']:>9.0f} answers/s   p50 {f['p50_ms']:.3f} ms under load"
                f"   p50 {f['p50_idle_ms']:.3f} ms one in flight   server CPU {f['cpu_us_per_answer']:.1f} us/answer"
                f"   (medians of {len(rounds)} rounds)"
            )
        qps_ratios = sorted(rd["dns"]["qps"] / rd["echo"]["qps"] for rd in rounds)
        cpu_ratios = sorted(rd["echo"]["cpu_us_per_answer"] / rd["dns"]["cpu_us_per_answer"] for rd in rounds)
        print(
            f"ratio dns/echo, median of {len(rounds)} rounds: {statistics.median(qps_ratios):.2f}x qps"
            f" (range {qps_ratios[0]:.2f}-{qps_ratios[-1]:.2f}), {statistics.median(cpu_ratios):.2f}x by server CPU"
            f" per answer (range {cpu_ratios[0]:.2f}-{cpu_ratios[-1]:.2f}); target >= 0.8x"
        )
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
