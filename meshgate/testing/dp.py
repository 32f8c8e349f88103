"""meshgate-dp as a subprocess, stopped by its own handle (SIGKILL if it hangs), for end-to-end tests.

`DpProcess(workdir, xds_port, ...)` dials `https://127.0.0.1:<xds_port>` trusting `ca_cert_file`, or
`grpc://` without one (an in-process ADS server, or a zone run with `--no-dp-server-tls`). `zone_dp(procs,
zone, dataplane)` is the usual way against a real zone: it asks the zone for a data plane token bound to the
Dataplane's mesh and name (`POST /tokens/dataplane`, retried while the mesh's key has not synced), and trusts
the CA the zone wrote to `<data-dir>/xds-ca.crt`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from meshgate.resources import codec
from meshgate.testing.processes import ROOT, CPProcess, ProcessGroup, free_port
from meshgate.testing.tools import ENVOY, require
from meshgate.testing.wait import eventually

__all__ = ["DpProcess", "dataplane_token", "zone_ca", "zone_dp"]


class DpProcess:
    def __init__(
        self,
        workdir: Path,
        xds_port: int,
        *args: str,
        token_file: Path | None = None,
        ca_cert_file: Path | None = None,
        prefix: Sequence[str] = (),
        log_name: str = "dp.log",
        cp_host: str = "127.0.0.1",
    ) -> None:
        """`prefix`: a command that execs meshgate-dp (`ip netns exec NAME`), so the handle is meshgate-dp's.
        `cp_host`: where the zone's xDS port is, from where meshgate-dp runs (another namespace's address)."""
        require(ENVOY)  # meshgate-dp finds the same binary; a missing one is named here, not in dp.log
        self.log_path = workdir / log_name
        self.admin_port = free_port()
        self._log = self.log_path.open("ab")
        security = ["--ca-cert-file", str(ca_cert_file)] if ca_cert_file is not None else []
        if token_file is not None:
            security += ["--dataplane-token-file", str(token_file)]
        scheme = "https" if ca_cert_file is not None else "grpc"
        self.proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "meshgate.dp",
                "run",
                "--cp-address",
                f"{scheme}://{cp_host}:{xds_port}",
                *security,
                "--admin-port",
                str(self.admin_port),
                "--concurrency",
                "1",
                "--log-format",
                "json",
                *args,
            ],
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )

    def logs(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def events(self, name: str) -> list[dict[str, Any]]:
        out = []
        for line in self.logs().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # Envoy's own log lines, interleaved on the same stream
            if isinstance(entry, dict) and entry.get("event") == name:
                out.append(entry)
        return out

    async def exited(self) -> int:
        await eventually(lambda: self.proc.poll() is not None, what=f"meshgate-dp to exit\n{self.logs()[-3000:]}")
        return self.proc.returncode

    def stop(self) -> None:
        """By its own handle: SIGTERM first (meshgate-dp then stops its Envoy and deregisters), SIGKILL if it
        hangs. Envoy also dies with meshgate-dp (parent-death signal), so nothing is left running."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def zone_ca(procs: ProcessGroup, zone: CPProcess) -> Path:
    """The CA a zone started by `procs` wrote for its xDS port (its --data-dir is `procs.workdir/<name>`)."""
    return procs.workdir / zone.name / "xds-ca.crt"


async def dataplane_token(cp: CPProcess, body: dict[str, Any]) -> str:
    """A token from `POST /tokens/dataplane` on `cp`, asked again while the zone waits for the mesh (a zone
    answers 400 "mesh of name ... is not found" until the Mesh has synced from the global) or for its key (503)."""
    token = ""

    async def issued() -> bool:
        nonlocal token
        # The admin token, for a zone reached from another address than localhost (one in a network namespace).
        async with httpx.AsyncClient(base_url=cp.url(), timeout=10, headers=cp.admin_headers()) as client:
            resp = await client.post("/tokens/dataplane", json=body)
        mesh_not_synced = resp.status_code == 400 and "is not found" in resp.text
        assert resp.status_code in (200, 503) or mesh_not_synced, resp.text
        token = resp.text if resp.status_code == 200 else ""
        return bool(token)

    await eventually(issued, timeout=30, interval=0.1, what=f"a data plane token from {cp.name}")
    return token


async def zone_dp(
    procs: ProcessGroup, zone: CPProcess, dataplane: str, *args: str, workdir: Path | None = None
) -> DpProcess:
    """meshgate-dp for `dataplane` (JSON or YAML) against `zone`, over TLS, with a token for its mesh and name."""
    (doc,) = codec.load_documents(dataplane)
    where = workdir or procs.workdir
    where.mkdir(parents=True, exist_ok=True)
    token_file = where / f"{doc['mesh']}.{doc['name']}.token"
    token_file.write_text(await dataplane_token(zone, {"mesh": doc["mesh"], "name": doc["name"]}))
    return DpProcess(
        where,
        zone.ports["xds"],
        "--dataplane",
        dataplane,
        *args,
        token_file=token_file,
        ca_cert_file=zone_ca(procs, zone),
    )
