"""Bulk apply benchmark: 10k MeshGatewayRoutes and 20 MeshGateways into a real global process on sqlite.

Rows, all measured in the same run against one `global_cp` process (started here with `--store sqlite`, stopped
by its handle):
- bulk: one `POST /_apply` of every resource, sent by meshgatectl's own client (`ApiClient.apply`);
- bulk again: the same request once more, so every item is an update (the server reads what is stored first);
- per-resource PUT: `--per-put` routes (default 500) PUT one by one, as meshgatectl did before, into another
  mesh; the figure for every resource is extrapolated from that subset, and the table says so;
- baseline: a raw sqlite3 `executemany` of the same rows (the same encoded specs, WAL, synchronous=FULL, one
  transaction), in this process: the floor for storing these resources at all.
Each row gives wall time, and CPU time per resource of both sides (server: the global's utime + stime from
/proc; client: this process), because wall time on a shared machine swings between runs.
Usage: python bench/bulk_apply.py [--routes 10000] [--gateways 20] [--per-put 500]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

# Run as a script, bench/ comes first on sys.path, where bench/dns.py would shadow dnspython's `dns`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meshgate.cli.client import ApiClient  # noqa: E402
from meshgate.resources import codec, registry  # noqa: E402
from meshgate.store.sqlite_rows import encode  # noqa: E402
from meshgate.testing import factory  # noqa: E402
from meshgate.testing.processes import CPProcess, process_group  # noqa: E402

_TICK = os.sysconf("SC_CLK_TCK")


def server_cpu(proc: CPProcess) -> float:
    """Seconds of CPU (user + system) the process has used so far."""
    fields = Path(f"/proc/{proc.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def gateways(mesh: str, count: int) -> list[dict[str, Any]]:
    return [
        factory.gateway(
            f"edge-{g}", mesh, service=f"edge-{g}-gw", listeners=[factory.listener(8080, hostname=f"g{g}.example.com")]
        )
        for g in range(count)
    ]


def routes(mesh: str, count: int, gateway_count: int) -> list[dict[str, Any]]:
    return [
        factory.http_route(
            f"route-{i:05d}",
            mesh,
            service=f"edge-{i % gateway_count}-gw",
            backends=[factory.backend(f"backend-{i % 50}", weight=1)],
        )
        for i in range(count)
    ]


@dataclass
class Row:
    name: str
    resources: int
    wall: float
    server_cpu: float
    client_cpu: float
    note: str = ""

    def line(self, baseline: Row | None) -> str:
        ratio = f"{self.wall / baseline.wall:>8.1f}x" if baseline is not None else f"{'':>9}"
        per = 1e6 / self.resources
        return (
            f"{self.name:<42}{self.resources:>7}{self.wall:>10.3f}s{ratio}"
            f"{self.server_cpu * per:>14.1f}{self.client_cpu * per:>14.1f}  {self.note}"
        )


def measured(name: str, proc: CPProcess | None, count: int, fn: Any, note: str = "") -> Row:
    cpu0, client0, wall0 = server_cpu(proc) if proc else 0.0, time.process_time(), time.perf_counter()
    fn()
    wall = time.perf_counter() - wall0
    return Row(name, count, wall, (server_cpu(proc) - cpu0) if proc else 0.0, time.process_time() - client0, note)


def raw_sqlite(path: Path, docs: list[dict[str, Any]]) -> Row:
    """The same rows, encoded beforehand, in one executemany and one COMMIT."""
    rows = []
    for i, doc in enumerate(docs):
        r = codec.load(dict(doc))
        rows.append((r.kind, r.meta.mesh, r.meta.name, i + 1, *encode(r), "2026-01-01T00:00:00", "2026-01-01T00:00:00"))
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(
        "CREATE TABLE resources (kind TEXT NOT NULL, mesh TEXT NOT NULL, name TEXT NOT NULL, version INTEGER NOT NULL,"
        " labels TEXT NOT NULL, spec_type TEXT NOT NULL, spec BLOB NOT NULL, creation_time TEXT NOT NULL,"
        " modification_time TEXT NOT NULL, PRIMARY KEY (kind, mesh, name))"
    )

    def insert() -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO resources VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("COMMIT")

    try:
        return measured("baseline: raw sqlite executemany", None, len(rows), insert, "same rows, encoded beforehand")
    finally:
        conn.close()


async def main(route_count: int, gateway_count: int, per_put: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, process_group(Path(tmp)) as group:
        g = await group.global_cp("global", "--store", "sqlite")
        bulk_docs = gateways("default", gateway_count) + routes("default", route_count, gateway_count)
        put_docs = routes("perput", per_put, gateway_count)
        total = len(bulk_docs)
        mesh_kind, route_kind = registry.lookup("Mesh"), registry.lookup("MeshGatewayRoute")
        with ApiClient(g.url(), timeout=600.0) as client:
            for name in ("default", "perput"):
                client.put(mesh_kind, "", name, factory.mesh(name))
            rows: list[Row] = []
            statuses: list[str] = []

            def bulk() -> None:
                statuses[:] = client.apply(bulk_docs)

            rows.append(measured(f"bulk: one POST /_apply ({total})", g, total, bulk))
            assert statuses.count("created") == total, statuses[:3]
            rows.append(measured("bulk again: every item an update", g, total, bulk))
            assert statuses.count("updated") == total, statuses[:3]

            def put_each() -> None:
                for doc in put_docs:
                    client.put(route_kind, "perput", doc["name"], doc)

            subset = measured(f"per-resource PUT ({per_put})", g, per_put, put_each)
            rows.append(subset)
            scale = total / per_put
            rows.append(
                Row(
                    f"per-resource PUT ({total}), extrapolated",
                    total,
                    subset.wall * scale,
                    subset.server_cpu * scale,
                    subset.client_cpu * scale,
                    f"= the {per_put}-route subset x {scale:.1f}, not measured",
                )
            )
            stored = len(client.list(route_kind, "default"))
            assert stored == route_count, stored
        baseline = raw_sqlite(Path(tmp) / "raw.sqlite", bulk_docs)
    print(f"{route_count} MeshGatewayRoutes + {gateway_count} MeshGateways into a global process on sqlite")
    print(f"{'row':<42}{'items':>7}{'wall':>11}{'/ raw':>9}{'server us/op':>14}{'client us/op':>14}")
    for row in rows:
        print(row.line(baseline))
    print(baseline.line(None))
    first = rows[0]
    put_all = rows[3]
    print(
        f"bulk of {total}: {first.wall:.2f} s wall (target <= 5 s), {first.server_cpu:.2f} s of the global's CPU;"
        f" {put_all.wall / first.wall:.0f}x faster and {put_all.server_cpu / first.server_cpu:.0f}x less server CPU"
        f" than PUT one by one (extrapolated); {first.wall / baseline.wall:.0f}x the raw sqlite insert"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--gateways", type=int, default=20)
    parser.add_argument("--per-put", type=int, default=500)
    args = parser.parse_args()
    anyio.run(main, args.routes, args.gateways, args.per_put)
