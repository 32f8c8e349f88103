"""bench/mtls.py's harness in a tiny configuration: a handful of requests down each of its three paths.

What it checks is behaviour, never time: every request the bench counts was answered by the backend; the
mesh paths went through both Envoys (the sidecars forwarded every request, warm-up and readiness included,
to the backend), the mTLS path over TLS and the plaintext one without; the Envoys' CPU was read for the mesh
paths only; and the table and JSON carry every row and the mTLS/plaintext ratios.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.mtls import DIRECT, MTLS, PATHS, PLAINTEXT, as_json, run_bench, table

pytestmark = pytest.mark.e2e

REQUESTS, WARMUP, ROUNDS = 12, 4, 2
CONCURRENCY = (1, 3)


async def test_the_bench_drives_three_paths_and_checks_the_mesh_ones(tmp_path: Path) -> None:
    lines: list[str] = []
    result = await run_bench(
        tmp_path, requests=REQUESTS, concurrency=CONCURRENCY, rounds=ROUNDS, warmup=WARMUP, progress=lines.append
    )

    assert {(r.path, r.concurrency) for r in result.rows} == {(p, c) for p in PATHS for c in CONCURRENCY}
    for row in result.rows:
        assert row.requests == REQUESTS, row
        assert row.seconds > 0
        assert all(ns > 0 for ns in row.latencies_ns)
        if row.path == DIRECT:
            assert row.envoy_cpu == {}, "no Envoy on the direct path"
        else:
            assert set(row.envoy_cpu) == {"gateway", "sidecar"}
            assert all(v >= 0 for v in row.envoy_cpu.values())
    assert len(lines) == len(CONCURRENCY) * ROUNDS * len(PATHS)

    # Measured, warm-up (at least the concurrency, per round) and the one readiness request: all via the sidecar.
    through = sum(REQUESTS + ROUNDS * max(WARMUP, c) for c in CONCURRENCY) + 1
    for path in (PLAINTEXT, MTLS):
        assert result.checks[path]["sidecar_requests_to_backend"] == through, (path, result.checks)
        assert result.checks[path]["gateway_upstream_connections"] >= 1
    assert result.checks[MTLS]["gateway_upstream_tls_handshakes"] >= 1, result.checks
    assert result.checks[PLAINTEXT]["gateway_upstream_tls_handshakes"] == 0, result.checks

    doc = json.loads(json.dumps(as_json(result)))
    assert len(doc["rows"]) == len(PATHS) * len(CONCURRENCY)
    assert set(doc["mtls_vs_plaintext"]) == {str(c) for c in CONCURRENCY}
    assert all(r["vs_direct"]["rps"] == 1.0 for r in doc["rows"] if r["path"] == DIRECT)
    text = table(result)
    assert text.count("mTLS/plaintext") == len(CONCURRENCY)
