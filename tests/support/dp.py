"""meshgate-dp as a subprocess, stopped by its own handle (SIGKILL if it hangs), for end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.processes import ROOT, free_port
from tests.support.wait import eventually


class DpProcess:
    def __init__(self, workdir: Path, xds_port: int, api_port: int, *args: str) -> None:
        self.log_path = workdir / "dp.log"
        self.admin_port = free_port()
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "meshgate.dp",
                "run",
                "--cp-address",
                f"grpc://127.0.0.1:{xds_port}",
                "--cp-api",
                f"http://127.0.0.1:{api_port}",
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
