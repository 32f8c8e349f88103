"""Zone authentication: a global with `--kds-auth cp-token` and zones with, without and with the wrong token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}
DATAPLANE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "web-1",
    "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web"}}]},
}
MESHGATECTL = Path(sys.executable).parent / "meshgatectl"


async def get(cp: CPProcess, path: str, port: str = "api") -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(port)) as c:
        return await c.get(path)


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> int:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return (await c.put(path, json=doc)).status_code


async def zone_token(g: CPProcess, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=g.url()) as c:
        return await c.post("/tokens/zone", json=body)


async def kds_status(z: CPProcess) -> dict[str, Any]:
    r = await get(z, "/status/kds")
    r.raise_for_status()
    return dict(r.json())


async def refused_with(z: CPProcess, reason: str) -> str:
    """Waits until the zone's last KDS error names `reason`; returns that error."""

    async def named() -> bool:
        return reason in (await kds_status(z))["lastError"]

    await eventually(named, what=f"{z.name} refused with {reason!r}")
    return str((await kds_status(z))["lastError"])


async def test_zones_prove_their_name_with_a_cp_token(procs: ProcessGroup, tmp_path: Path) -> None:
    g = await procs.global_cp("global", "--kds-auth", "cp-token")
    assert await put(g, "/meshes/default", MESH) == 201

    # Issued over the API: the raw token as text/plain; a bad request names its fields.
    r = await zone_token(g, {"zone": "west", "scope": ["cp"], "validFor": "720h"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    west_token = r.text
    assert west_token.count(".") == 2
    bad = await zone_token(g, {"zone": "", "scope": ["root"], "validFor": "soon"})
    assert bad.status_code == 400
    assert {p["field"] for p in bad.json()["invalid_parameters"]} == {"zone", "scope[0]", "validFor"}

    # Issued with the meshgatectl binary, as an operator would.
    cli = await anyio.to_thread.run_sync(
        lambda: subprocess.run(
            [str(MESHGATECTL), "--api", g.url(), "generate", "zone-token", "--zone", "south", "--valid-for", "24h"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    )
    assert cli.returncode == 0, cli.stderr
    south_token = cli.stdout.strip()
    assert south_token.count(".") == 2
    assert south_token != west_token

    # West presents its own token from a file: it syncs down and sends up.
    token_file = tmp_path / "west.token"
    token_file.write_text(west_token + "\n")
    west = await procs.zone_cp("west", g.ports["kds"], "--cp-token-path", str(token_file))
    await eventually(lambda: _ok(get(west, "/meshes/default")), what="mesh in west")
    assert await put(west, "/meshes/default/dataplanes/web-1", DATAPLANE) == 201

    async def dataplane_up() -> bool:
        listed = (await get(g, "/meshes/default/dataplanes?zone=west")).json()
        return [i["labels"]["kuma.io/display-name"] for i in listed["items"]] == ["web-1"]

    await eventually(dataplane_up, what="west's dataplane on the global")
    # The CLI's token is as good as the API's: south connects with it inline.
    south = await procs.zone_cp("south", g.ports["kds"], "--cp-token", south_token)
    await eventually(lambda: _ok(get(south, "/meshes/default")), what="mesh in south")
    assert (await kds_status(west))["lastError"] == ""

    # No token, or another zone's token: refused with the reason, and nothing syncs.
    nobody = await procs.zone_cp("nobody", g.ports["kds"], token=False)
    east = await procs.zone_cp("east", g.ports["kds"], "--cp-token", west_token)
    assert "UNAUTHENTICATED" in await refused_with(nobody, "missing zone token")
    assert "UNAUTHENTICATED" in await refused_with(east, 'zone token is for zone "west", not "east"')
    for z in (nobody, east):
        status = await kds_status(z)
        assert (status["connected"], status["connects"], status["syncedKinds"]) == (False, 0, [])
        assert (await get(z, "/meshes/default")).status_code == 404
    zones = (await get(g, "/zones")).json()
    assert sorted(i["name"] for i in zones["items"]) == ["south", "west"]

    async def counted() -> bool:
        text = (await get(g, "/metrics", port="diagnostics")).text
        return all(
            line in text
            for line in (
                'meshgate_kds_auth_failures{zone="nobody",reason="missing_token"}',
                'meshgate_kds_auth_failures{zone="east",reason="wrong_zone"}',
            )
        )

    await eventually(counted, what="auth failures in the global's metrics")
    assert "kds.auth.refused" in g.logs()


async def test_without_kds_auth_zones_need_no_token(procs: ProcessGroup) -> None:
    """The explicit opt-out: --kds-auth none takes zones without a token, and the global warns at start."""
    g = await procs.global_cp("global", "--kds-auth", "none")
    assert "kds.auth.disabled" in g.logs()
    assert "any client that reaches the KDS port can speak as any zone" in g.logs()
    assert await put(g, "/meshes/default", MESH) == 201
    zone = await procs.zone_cp("west", g.ports["kds"])
    assert "--cp-token-path" not in zone.args
    await eventually(lambda: _ok(get(zone, "/meshes/default")), what="mesh in west")
    assert await put(zone, "/meshes/default/dataplanes/web-1", DATAPLANE) == 201

    async def dataplane_up() -> bool:
        return bool((await get(g, "/meshes/default/dataplanes?zone=west")).json()["items"])

    await eventually(dataplane_up, what="west's dataplane on the global")
    # Tokens can still be issued ahead of turning enforcement on.
    assert (await zone_token(g, {"zone": "west"})).status_code == 200
    metrics = (await get(g, "/metrics", port="diagnostics")).text
    assert "meshgate_kds_auth_failures{" not in metrics


def test_unreadable_token_file_fails_the_zone_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.token"
    argv = ["--zone", "west", "--global-address", f"grpc://127.0.0.1:{free_port()}", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", "zone_cp", "run", *argv, "--cp-token-path", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"meshgate-zone: --cp-token-path {missing}: cannot read the zone token")


async def _ok(response: Awaitable[httpx.Response]) -> bool:
    return (await response).status_code == 200
