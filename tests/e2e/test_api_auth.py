"""API authentication with real processes: a global and a zone run with `--api-localhost-is-admin=false`, so a
test on loopback is anonymous unless it brings a token. The demonstrated attacks (read the mesh CA key, delete a
mesh, mint a zone token) are refused; each control plane's admin token file works on its own API only; the CA key
reaches the zone yet no API, list, `meshgatectl get secrets -o yaml` or KDS trace shows it."""

from __future__ import annotations

import base64
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

CA_KEY = "default.ca-builtin-key-ca-1"
MTLS_MESH = {
    "type": "Mesh",
    "name": "default",
    "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
}
MESHGATECTL = Path(sys.executable).parent / "meshgatectl"
NO_LOCAL_ADMIN = "--api-localhost-is-admin=false"


def admin_token(cp: CPProcess, workdir: Path) -> str:
    path = workdir / cp.name / "admin-user-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    return path.read_text().strip()


def client(cp: CPProcess, token: str = "") -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=cp.url(), headers=headers, timeout=10)


async def secret_names(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await http.get("/meshes/default/secrets")
    if r.status_code != 200:
        return {}
    return {i["name"]: i for i in r.json()["items"]}


async def test_attacks_are_refused_and_private_keys_never_leave(procs: ProcessGroup, tmp_path: Path) -> None:
    """Anonymous: 401 on the CA key, DELETE /meshes/default and POST /tokens/zone, on global and zone. Admin
    (from the token files): the CA exists and syncs, but GET of its key is 403 everywhere and lists, YAML
    output and the KDS trace never carry it; each process's admin token is refused by the other."""
    g = await procs.global_cp("global", NO_LOCAL_ADMIN)
    z = await procs.zone_cp("zone-1", g.ports["kds"], NO_LOCAL_ADMIN)
    g_admin, z_admin = admin_token(g, tmp_path), admin_token(z, tmp_path)

    async with client(g, g_admin) as http:
        assert (await http.put("/meshes/default", json=MTLS_MESH)).status_code in (200, 201)

        async def ca_made() -> bool:
            return CA_KEY in await secret_names(http)

        await eventually(ca_made, what="the global made the mesh CA")
    for cp in (g, z):
        async with client(cp) as anonymous:
            for method, path, body in [
                ("GET", f"/meshes/default/secrets/{CA_KEY}", None),
                ("GET", "/meshes/default/secrets", None),
                ("DELETE", "/meshes/default", None),
                ("POST", "/tokens/zone", {"zone": "zone-1"}),
                ("POST", "/tokens/user", {"name": "me", "groups": ["mesh-system:admin"], "validFor": "1h"}),
            ]:
                r = await anonymous.request(method, path, json=body)
                assert r.status_code == 401, (cp.name, method, path, r.text)
            assert (await anonymous.get("/")).status_code == 200
    async with client(z, z_admin) as http:

        async def ca_synced() -> bool:
            return CA_KEY in await secret_names(http)

        await eventually(ca_synced, what="the CA Secret reached the zone")
    async with client(g, g_admin) as on_global, client(z, z_admin) as on_zone:
        for http in (on_global, on_zone):
            r = await http.get(f"/meshes/default/secrets/{CA_KEY}")
            assert r.status_code == 403, r.text
            assert "never served" in r.json()["detail"]
            for path in ("/meshes/default/secrets", "/secrets"):
                items = (await http.get(path)).json()["items"]
                assert CA_KEY in {i["name"] for i in items}
                for item in items:
                    assert b"PRIVATE KEY" not in base64.b64decode(item.get("data", ""))
            assert (await http.get("/meshes/default")).status_code == 200
        trace = await on_global.get("/kds/trace", params={"kind": "Secret", "name": CA_KEY, "mesh": "default"})
        assert trace.status_code == 200, trace.text
        assert "PRIVATE" not in trace.text
        # Each control plane signs user tokens for its own API only.
        async with client(z, g_admin) as crossed:
            assert (await crossed.get("/meshes")).status_code == 401
        # The zone issues its own user tokens; a reader there reads but may not touch Secrets.
        r = await on_zone.post("/tokens/user", json={"name": "alice", "groups": ["users"], "validFor": "1h"})
        assert r.status_code == 200, r.text
        async with client(z, r.text) as alice:
            assert (await alice.get("/meshes")).status_code == 200
            assert (await alice.get("/meshes/default/secrets")).status_code == 403
    yaml_out = subprocess.run(
        [str(MESHGATECTL), "--api", g.url(), "--auth-token", g_admin, "get", "secrets", "-o", "yaml"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert yaml_out.returncode == 0, yaml_out.stderr
    listed = yaml.safe_load(yaml_out.stdout)
    items = listed if isinstance(listed, list) else listed["items"]
    assert CA_KEY in {i["name"] for i in items}
    for item in items:
        assert b"PRIVATE KEY" not in base64.b64decode(item.get("data", ""))
    refused = subprocess.run(
        [str(MESHGATECTL), "--api", g.url(), "delete", "mesh", "default"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert refused.returncode == 1
    assert "Traceback" not in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    async with client(g, g_admin) as http:
        assert (await http.get("/meshes/default")).status_code == 200
