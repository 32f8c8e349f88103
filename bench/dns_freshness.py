"""How soon a new Dataplane's `.mesh` name resolves: PUT on the zone API -> an A answer from the zone's DNS.

Starts a global and a zone (memory stores, free ports), then registers `--dataplanes` Dataplanes one by one,
timing each from the API's answer to the first A record, polled every millisecond over UDP.
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

from tests.support.processes import CPProcess, free_port  # noqa: E402


async def resolves(name: str, port: int) -> bool:
    answer = await dns.asyncquery.udp(dns.message.make_query(name, "A"), "127.0.0.1", port=port, timeout=1)
    return any(rrset.rdtype == dns.rdatatype.A for rrset in answer.answer)


async def main(count: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="meshgate-dns-bench-"))
    g = CPProcess(
        "global_cp",
        [
            "--store",
            "memory",
            "--api-port",
            "0",
            "--kds-port",
            str(free_port()),
            "--diagnostics-port",
            "0",
            "--bind-address",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        work,
        "global",
    )
    try:
        gp = await g.wait_ready(60)
        z = CPProcess(
            "zone_cp",
            [
                "--zone",
                "zone-1",
                "--global-address",
                f"grpc://127.0.0.1:{gp['kds']}",
                "--store",
                "memory",
                "--api-port",
                "0",
                "--diagnostics-port",
                "0",
                "--xds-port",
                "0",
                "--dns-port",
                "0",
                "--bind-address",
                "127.0.0.1",
                "--log-level",
                "warning",
            ],
            work,
            "zone-1",
        )
        try:
            zp = await z.wait_ready(60)
            async with httpx.AsyncClient() as http:
                await http.put(f"http://127.0.0.1:{gp['api']}/meshes/default", json={"type": "Mesh", "name": "default"})
                while (await http.get(f"http://127.0.0.1:{zp['api']}/meshes/default")).status_code != 200:
                    await anyio.sleep(0.01)
                times = []
                for i in range(count):
                    doc = {
                        "type": "Dataplane",
                        "mesh": "default",
                        "name": f"svc-{i}",
                        "networking": {
                            "address": "127.0.0.1",
                            "inbound": [{"port": 8000 + i, "tags": {"kuma.io/service": f"svc-{i}"}}],
                        },
                    }
                    r = await http.put(f"http://127.0.0.1:{zp['api']}/meshes/default/dataplanes/svc-{i}", json=doc)
                    r.raise_for_status()
                    t0 = time.perf_counter()
                    while not await resolves(f"svc-{i}.mesh", zp["dns"]):
                        await anyio.sleep(0.001)
                    times.append(time.perf_counter() - t0)
        finally:
            z.stop()
    finally:
        g.stop()
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    print(
        f"new Dataplane -> its .mesh name resolves ({count} Dataplanes): "
        f"p50 {statistics.median(times) * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataplanes", type=int, default=40)
    anyio.run(main, parser.parse_args().dataplanes)
