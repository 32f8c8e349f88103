"""Control-plane processes for end-to-end tests, each stopped by its own handle, even on failure."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

__all__ = ["CPProcess", "ProcessGroup", "free_port"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free right now, for a process that must come back on the same port after a restart."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CPProcess:
    def __init__(self, module: str, args: list[str], workdir: Path, name: str) -> None:
        self.name = name
        self.ports_file = workdir / f"{name}.ports.json"
        self.log_path = workdir / f"{name}.log"
        self.ports_file.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "run", *args, "--ports-file", str(self.ports_file)],
            cwd=workdir,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.ports: dict[str, int] = {}

    async def wait_ready(self, timeout: float = 30.0) -> dict[str, int]:
        with anyio.move_on_after(timeout):
            while not self.ports_file.exists():
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.logs()}")
                await anyio.sleep(0.05)
            self.ports = json.loads(self.ports_file.read_text())
            return self.ports
        raise AssertionError(f"{self.name} not ready after {timeout}s:\n{self.logs()}")

    def url(self, port: str = "api") -> str:
        return f"http://127.0.0.1:{self.ports[port]}"

    def logs(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signals this process (by its own handle), waits, and escalates to SIGKILL if it hangs."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def global_argv(*args: str, kds_port: int = 0) -> list[str]:
    """`meshgate-global run` flags for a loopback global: API and diagnostics on free ports, KDS on `kds_port`."""
    return [
        "--api-port",
        "0",
        "--kds-port",
        str(kds_port),
        "--diagnostics-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        *args,
    ]


def zone_argv(zone: str, global_kds_port: int, *args: str, scheme: str = "grpc") -> list[str]:
    """`meshgate-zone run` flags for a loopback zone of the global on `global_kds_port`, every port free."""
    return [
        "--zone",
        zone,
        "--global-address",
        f"{scheme}://127.0.0.1:{global_kds_port}",
        "--api-port",
        "0",
        "--diagnostics-port",
        "0",
        "--xds-port",
        "0",
        "--dns-port",
        "0",
        "--bind-address",
        "127.0.0.1",
        *args,
    ]


class ProcessGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[CPProcess] = []

    async def global_cp(self, name: str = "global", *args: str, kds_port: int = 0) -> CPProcess:
        argv = global_argv("--data-dir", str(self.workdir / name), *args, kds_port=kds_port)
        return await self._start("global_cp", argv, name)

    async def zone_cp(self, zone: str, global_kds_port: int, *args: str, scheme: str = "grpc") -> CPProcess:
        """A zone connected to the global on `global_kds_port`; `scheme="grpcs"` for KDS over TLS."""
        argv = zone_argv(zone, global_kds_port, "--data-dir", str(self.workdir / zone), *args, scheme=scheme)
        return await self._start("zone_cp", argv, zone)

    async def _start(self, module: str, argv: list[str], name: str) -> CPProcess:
        p = CPProcess(module, argv, self.workdir, name)
        self.procs.append(p)
        await p.wait_ready()
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            p.stop()


@contextmanager
def process_group(workdir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(workdir)
    try:
        yield group
    finally:
        group.stop_all()
