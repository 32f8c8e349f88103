"""How soon a new Dataplane's `.mesh` name resolves: PUT on the zone API -> an A answer from the zone's DNS.

Starts a global and two zones (memory stores, free ports), then registers `--dataplanes` Dataplanes one by one,
timing each from the API's answer to the first A record, polled every millisecond over UDP: first in zone-1
(resolved by zone-1), then in zone-2 (resolved by zone-1, after zone-2 -> global -> zone-1 over KDS).
Usage: python bench/dns_freshness.py [--dataplanes 40]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anyio  # noqa: E402
import dns.asyncquery  # noqa: E402
import dns.message  # noqa: E402
import dns.rdatatype  # noqa: E402
import httpx  # noqa: E402

from meshgate.testing.processes import CPProcess, free_port, global_argv, zone_argv, zone_security  # noqa: E402


async def resolves(name: str, port: int) -> bool:
    answer = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=1)
    return any(rrset.rdtype == dns.rdatatype.A for rrset in answer.answer)


async def zone_process(zone: str, g: CPProcess, work: Path) -> CPProcess:
    """A zone of global `g` with the defaults: a token from its API, its CA, grpcs://."""
    security = await zone_security(g, zone, work)
    argv = zone_argv(zone, g.ports["kds"], "--store", "memory", "--log-level", "warning", *security, scheme="grpcs")
    return CPProcess("zone_cp", argv, work, zone)


def summary(label: str, times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return (
        f"{label} ({len(times)} Dataplanes): p50 {statistics.median(times) * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms"
    )


async def time_names(
    http: httpx.AsyncClient, writer: dict[str, int], reader: dict[str, int], prefix: str, count: int
) -> list[float]:
    """PUT `count` Dataplanes on `writer`'s API; time each until `reader`'s DNS resolves its name."""
    times = []
    for i in range(count):
        name = f"{prefix}-{i}"
        doc = {
            "type": "Dataplane",
            "mesh": "default",
            "name": name,
            "networking": {
                "address": "127.0.0.1",
                "inbound": [{"port": 8000 + i, "tags": {"kuma.io/service": name}}],
            },
        }
        r = await http.put(f"http://127.0.0.1:{writer['api']}/meshes/default/dataplanes/{name}", json=doc)
        r.raise_for_status()
        t0 = time.perf_counter()
        while not await resolves(f"{name}.mesh", reader["dns"]):
            await anyio.sleep(0.001)
        times.append(time.perf_counter() - t0)
    return times


async def main(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="meshgate-dns-bench-"))
    g = CPProcess(
        "global_cp",
        global_argv(
            "--store", "memory", "--log-level", "warning", "--data-dir", str(work / "global"), kds_port=free_port()
        ),
        work,
        "global",
    )
    try:
        gp = await g.wait_ready(60)
        z1 = await zone_process("zone-1", g, work)
        z2 = await zone_process("zone-2", g, work)
        try:
            zp1 = await z1.wait_ready(60)
            zp2 = await z2.wait_ready(60)
            async with httpx.AsyncClient() as http:
                await http.put(f"http://127.0.0.1:{gp['api']}/meshes/default", json={"type": "Mesh", "name": "default"})
                for zp in (zp1, zp2):
                    while (await http.get(f"http://127.0.0.1:{zp['api']}/meshes/default")).status_code != 200:
                        await anyio.sleep(0.01)
                local = await time_names(http, zp1, zp1, "local", count)
                # zone-2's Dataplane goes up to the global, which relays it down to zone-1.
                remote = await time_names(http, zp2, zp1, "remote", count)
        finally:
            z1.stop()
            z2.stop()
    finally:
        g.stop()
    print(summary("new Dataplane in zone-1 -> its .mesh name resolves in zone-1", local))
    print(summary("new Dataplane in zone-2 -> its .mesh name resolves in zone-1 (via the global)", remote))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataplanes", type=int, default=40)
    anyio.run(main, parser.parse_args().dataplanes)
