"""Reloadable data plane tokens (Kuma's): meshgate-dp names its --dataplane-token-file in Envoy's bootstrap, and
Envoy reads the file for every new xDS stream. A global and a zone as processes, a real Envoy, real TLS.

The operator's rotation: a short-lived token, replaced in the file before it expires. When it expires the zone
closes the stream (it re-checks open streams at the token's expiry) and Envoy reconnects with the file's new
token; then the zone restarts (same xDS port, same CA) and the proxy comes back again. Neither meshgate-dp nor
its Envoy restarts. The files end in a newline, as `meshgatectl generate dataplane-token > file` writes them.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from meshgate.auth.jwt import unverified_payload
from tests.support.dp import DpProcess, dataplane_token, zone_ca
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

EDGE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "edge-1",
    "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
}
TOKEN_BODY = {"mesh": "default", "name": "edge-1", "type": "gateway"}


async def _get(cp: CPProcess, path: str, port: str = "api") -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(port), timeout=10) as c:
        return await c.get(path)


async def _connected(z: CPProcess, connects: int = 1) -> bool:
    """The zone has a live authenticated stream from default.edge-1, after `connects` streams in all, and
    registered its Dataplane."""
    proxies = (await _get(z, "/xds/proxies")).json()["proxies"]
    live = any(p["proxy"] == "default.edge-1" and p["connected"] and p["connects"] >= connects for p in proxies)
    return live and (await _get(z, "/meshes/default/dataplanes/edge-1")).status_code == 200


def _replace(path: Path, text: str) -> None:
    """As the kubelet and a careful operator do: write aside, then rename over, so no reader sees half a token."""
    aside = path.with_name(path.name + ".new")
    aside.write_text(text)
    os.replace(aside, path)


async def test_a_rotated_token_file_is_sent_when_the_stream_reconnects(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    xds_port = free_port()  # the restarted zone must come back where Envoy dials
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--xds-port", str(xds_port))
    async with httpx.AsyncClient(base_url=g.url(), timeout=10) as c:
        r = await c.put("/meshes/default", json={"type": "Mesh", "name": "default"})
    assert r.status_code in (200, 201), r.text

    token_file = procs.workdir / "edge-1.token"
    short = await dataplane_token(z, {**TOKEN_BODY, "validFor": "15s"})
    # A trailing newline, as `meshgatectl generate dataplane-token > file` writes it.
    token_file.write_text(short + "\n")
    dp = DpProcess(
        procs.workdir,
        xds_port,
        "--dataplane",
        json.dumps(EDGE),
        token_file=token_file,
        ca_cert_file=zone_ca(procs, z),
    )
    try:
        await eventually(lambda: _connected(z), timeout=30, what=f"edge-1 on zone-1\n{dp.logs()[-3000:]}")
        (started,) = dp.events("dp.envoy.started")
        assert started["token_file"] == str(token_file)
        envoy_pid = int(started["pid"])

        # The operator rotates the file before the short token expires.
        fresh = await dataplane_token(z, {**TOKEN_BODY, "validFor": "1h"})
        _replace(token_file, fresh + "\n")

        # Wait out the first token (a deadline, not a speed check): from now on only the file's new token works.
        expiry = float(unverified_payload(short)["exp"])
        await eventually(lambda: time.time() > expiry + 1, timeout=30, what="the first token to expire")
        # The zone closed the stream of the expired token; Envoy came back with the new one.
        await eventually(lambda: _connected(z, connects=2), timeout=30, what=f"edge-1 reconnected\n{dp.logs()[-3000:]}")
        assert "expired" in z.logs()
        assert dp.events("dp.token.reloaded")

        # The stream breaks: the zone restarts on the same port, with the same store and CA.
        assert z.stop() == 0
        z = await procs.zone_cp("zone-1", g.ports["kds"], "--xds-port", str(xds_port))
        await eventually(lambda: _connected(z), timeout=60, what=f"edge-1 back on zone-1\n{dp.logs()[-3000:]}")

        # Neither meshgate-dp nor its Envoy restarted.
        assert dp.proc.poll() is None
        assert [int(e["pid"]) for e in dp.events("dp.envoy.started")] == [envoy_pid]
        metrics = (await _get(z, "/metrics", port="diagnostics")).text
        assert "meshgate_xds_auth_failures{" not in metrics, metrics

        dp.proc.send_signal(signal.SIGTERM)
        assert await dp.exited() == 0
    finally:
        dp.stop()
