"""KDS over TLS: a global serving TLS only, zones dialling grpcs:// with a CA, with skip-verify, or wrongly."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.support.processes import ROOT, CPProcess, ProcessGroup
from tests.support.tls import CertFiles, make_ca, make_server_cert
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}
DATAPLANE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]},
}


async def get(cp: CPProcess, path: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get(path)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return dict(r.json())


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return (await c.put(path, json=doc)).status_code


async def kds_status(zone: CPProcess) -> dict[str, Any]:
    status = await get(zone, "/status/kds")
    assert status is not None
    return status


def tls_flags(server: CertFiles) -> tuple[str, ...]:
    return "--kds-tls-cert-file", str(server.cert), "--kds-tls-key-file", str(server.key)


async def test_zone_trusting_the_ca_syncs_both_ways(procs: ProcessGroup, tmp_path: Path) -> None:
    """grpcs:// with --kds-ca-cert-file: the Mesh comes down and the Dataplane goes up, over TLS."""
    ca = make_ca(tmp_path / "pki")
    g = await procs.global_cp("global", *tls_flags(make_server_cert(tmp_path / "pki", ca)))
    assert await put(g, "/meshes/default", MESH) == 201
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--kds-ca-cert-file", str(ca.files.cert), scheme="grpcs")

    await eventually(lambda: get(z, "/meshes/default"), what="the mesh in zone-1")
    assert await put(z, "/meshes/default/dataplanes/web-1", DATAPLANE) == 201

    async def dataplane_on_global() -> bool:
        listed = await get(g, "/meshes/default/dataplanes")
        return listed is not None and [i["labels"]["kuma.io/display-name"] for i in listed["items"]] == ["web-1"]

    await eventually(dataplane_on_global, what="zone-1's dataplane on the global")
    status = await kds_status(z)
    assert status["connected"]
    assert status["globalAddress"] == f"127.0.0.1:{g.ports['kds']}"


async def test_untrusted_and_plaintext_zones_do_not_sync(procs: ProcessGroup, tmp_path: Path) -> None:
    """A zone trusting another CA fails the handshake and says so; a grpc:// zone is refused. Both keep
    retrying, and neither gets the Mesh that a trusting zone on the same global receives."""
    ca = make_ca(tmp_path / "pki")
    other_ca = make_ca(tmp_path / "other", "other-ca")
    g = await procs.global_cp("global", *tls_flags(make_server_cert(tmp_path / "pki", ca)))
    assert await put(g, "/meshes/default", MESH) == 201
    trusting = await procs.zone_cp("zone-ok", g.ports["kds"], "--kds-ca-cert-file", str(ca.files.cert), scheme="grpcs")
    untrusting = await procs.zone_cp(
        "zone-other-ca", g.ports["kds"], "--kds-ca-cert-file", str(other_ca.files.cert), scheme="grpcs"
    )
    plaintext = await procs.zone_cp("zone-plain", g.ports["kds"], scheme="grpc")

    await eventually(lambda: get(trusting, "/meshes/default"), what="the mesh in the trusting zone")

    async def failed(zone: CPProcess) -> bool:
        return bool((await kds_status(zone))["lastError"])

    await eventually(lambda: failed(untrusting), what="a KDS error in the zone trusting another CA")
    await eventually(lambda: failed(plaintext), what="a KDS error in the plaintext zone")

    error = (await kds_status(untrusting))["lastError"]
    assert "certificate" in error.lower()
    assert "CERTIFICATE_VERIFY_FAILED" in error
    assert "--kds-ca-cert-file" in error  # the hint names the flag to fix
    for zone in (untrusting, plaintext):
        status = await kds_status(zone)
        assert not status["connected"]
        assert status["connects"] == 0
        assert await get(zone, "/meshes/default") is None
    # The reconnect log line carries the same error.
    await eventually(
        lambda: "kds.client.reconnecting" in untrusting.logs() and "CERTIFICATE_VERIFY_FAILED" in untrusting.logs(),
        what="the reconnect log line with the TLS error",
    )
    zones = await get(g, "/zones")
    assert zones is not None
    assert [i["name"] for i in zones["items"]] == ["zone-ok"]


async def test_skip_verify_zone_syncs(procs: ProcessGroup, tmp_path: Path) -> None:
    """--kds-tls-skip-verify: the certificate names neither 127.0.0.1 nor a CA the zone knows, and it syncs."""
    ca = make_ca(tmp_path / "pki")
    server = make_server_cert(tmp_path / "pki", ca, hosts=("kds.global.test",))
    g = await procs.global_cp("global", *tls_flags(server))
    assert await put(g, "/meshes/default", MESH) == 201
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--kds-tls-skip-verify", scheme="grpcs")
    await eventually(lambda: get(z, "/meshes/default"), what="the mesh in the skip-verify zone")
    assert (await kds_status(z))["connected"]


async def run_global(tmp_path: Path, *args: str) -> tuple[int, str]:
    argv = [sys.executable, "-m", "global_cp", "run", "--api-port", "0", "--kds-port", "0"]
    argv += ["--diagnostics-port", "0", "--bind-address", "127.0.0.1", "--data-dir", str(tmp_path / "g"), *args]
    done = await anyio.run_process(argv, check=False, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return done.returncode, done.stderr.decode()


async def test_global_with_a_cert_and_no_key_exits_1_naming_the_flag(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    server = make_server_cert(tmp_path / "pki", ca)
    code, stderr = await run_global(tmp_path, "--kds-tls-cert-file", str(server.cert))
    assert code == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("meshgate-global: ")
    assert "--kds-tls-key-file" in lines[0]


async def test_global_with_a_key_that_is_not_a_key_exits_1_naming_the_flag(tmp_path: Path) -> None:
    ca = make_ca(tmp_path / "pki")
    server = make_server_cert(tmp_path / "pki", ca)
    code, stderr = await run_global(
        tmp_path, "--kds-tls-cert-file", str(server.cert), "--kds-tls-key-file", str(server.cert)
    )
    assert code == 1, stderr
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "--kds-tls-key-file" in stderr
