"""Control-plane processes for end-to-end tests and benches, each stopped by its own handle, even on failure.

Globals run with the secure defaults (KDS over TLS from their own CA, zone tokens required). A zone started
with `ProcessGroup.zone_cp` finds the global it points to among the group's processes (by KDS port) and gets
what a zone needs to reach it: a zone token issued by that global's API (`POST /tokens/zone`) in a file
(`--cp-token-path`), and `--kds-ca-cert-file <global data dir>/kds-ca.crt` with `grpcs://`. A test that means
to test plaintext, a missing token or another CA says so: `secure=False`, `scheme=`, or its own flags.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx

__all__ = [
    "ROOT",
    "CPProcess",
    "ProcessGroup",
    "free_port",
    "global_argv",
    "issue_zone_token",
    "process_group",
    "zone_argv",
    "zone_security",
]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free right now, for a process that must come back on the same port after a restart."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class CPProcess:
    def __init__(
        self,
        module: str,
        args: list[str],
        workdir: Path,
        name: str,
        *,
        prefix: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        """`prefix` runs the process under another command that execs it (`ip netns exec NAME`: the handle is
        then the process itself); `host` is the address the test reaches its ports at."""
        self.name = name
        self.module = module
        self.args = list(args)
        self.host = host
        self.ports_file = workdir / f"{name}.ports.json"
        self.log_path = workdir / f"{name}.log"
        self.ports_file.unlink(missing_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", module, "run", *args, "--ports-file", str(self.ports_file)],
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
        return f"http://{self.host}:{self.ports[port]}"

    def _flag(self, flag: str) -> str | None:
        for i, arg in enumerate(self.args[:-1]):
            if arg == flag:
                return self.args[i + 1]
        return None

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    @property
    def kds_tls(self) -> bool:
        """Whether this global serves KDS over TLS (the default)."""
        return "--no-kds-tls-enabled" not in self.args

    @property
    def kds_auth(self) -> bool:
        """Whether this global requires zone tokens (the default)."""
        return self._flag("--kds-auth") != "none"

    @property
    def kds_ca_file(self) -> Path | None:
        """The CA certificate a zone trusts to reach this global: its own (in its data dir), or None when it
        serves an operator's certificate (the test knows that CA) or no TLS."""
        if not self.kds_tls or "--kds-tls-cert-file" in self.args:
            return None
        data_dir = self._flag("--data-dir")
        return None if data_dir is None else Path(data_dir) / "kds-ca.crt"

    def admin_headers(self) -> dict[str, str]:
        """The admin user's token (written on first start to `<data dir>/admin-user-token`), for a test that
        talks to a process started with `--api-localhost-is-admin=false`; none when there is no data dir."""
        data_dir = self._flag("--data-dir")
        path = None if data_dir is None else Path(data_dir) / "admin-user-token"
        if path is None or not path.exists():
            return {}
        return {"Authorization": f"Bearer {path.read_text().strip()}"}

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


async def issue_zone_token(g: CPProcess, zone: str, valid_for: str = "87600h") -> str:
    """A zone token for `zone`, issued by global `g`'s API as its admin user."""
    async with httpx.AsyncClient(base_url=g.url(), timeout=30, headers=g.admin_headers()) as c:
        r = await c.post("/tokens/zone", json={"zone": zone, "validFor": valid_for})
    r.raise_for_status()
    return r.text


_TOKEN_FLAGS = ("--cp-token", "--cp-token-path")
_TRUST_FLAGS = ("--kds-ca-cert-file", "--kds-tls-skip-verify")


async def zone_security(
    g: CPProcess | None, zone: str, workdir: Path, args: tuple[str, ...] = (), *, token: bool = True
) -> list[str]:
    """The flags a zone needs to reach global `g` with its defaults, beyond those in `args`: a token file
    (issued now while `g` runs, else the one issued before; none when not `token`) and `g`'s own CA."""
    out: list[str] = []
    token_file = workdir / f"{zone}.token"
    if token and g is not None and g.kds_auth and not any(f in args for f in _TOKEN_FLAGS):
        if g.running and g.ports:
            token_file.write_text(await issue_zone_token(g, zone) + "\n")
        if token_file.exists():
            out += ["--cp-token-path", str(token_file)]
    ca = g.kds_ca_file if g is not None else None
    if ca is not None and not any(f in args for f in _TRUST_FLAGS):
        out += ["--kds-ca-cert-file", str(ca)]
    return out


class ProcessGroup:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[CPProcess] = []

    async def global_cp(self, name: str = "global", *args: str, kds_port: int = 0) -> CPProcess:
        argv = global_argv("--data-dir", str(self.workdir / name), *args, kds_port=kds_port)
        return await self._start("global_cp", argv, name)

    def global_on(self, kds_port: int) -> CPProcess | None:
        """The group's global serving KDS on `kds_port`: the running one, else the last one that did."""
        globals_ = [p for p in self.procs if p.module == "global_cp" and p.ports.get("kds") == kds_port]
        running = [p for p in globals_ if p.running]
        candidates = running or globals_
        return candidates[-1] if candidates else None

    async def zone_cp(
        self,
        zone: str,
        global_kds_port: int,
        *args: str,
        scheme: str | None = None,
        secure: bool = True,
        token: bool = True,
        prefix: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> CPProcess:
        """A zone connected to the global on `global_kds_port`, with the token and CA that global wants
        (`zone_security`) and `grpcs://` when it serves TLS. `token=False`: no token (the CA still).
        `secure=False`: only the flags in `args`, and `grpc://` unless `scheme` says otherwise. `prefix` and
        `host`: as `CPProcess` (a zone in a network namespace)."""
        g = self.global_on(global_kds_port) if secure else None
        extra = await zone_security(g, zone, self.workdir, args, token=token) if g is not None else []
        if scheme is None:
            scheme = "grpcs" if g is not None and g.kds_tls else "grpc"
        argv = zone_argv(zone, global_kds_port, "--data-dir", str(self.workdir / zone), *extra, *args, scheme=scheme)
        return await self._start("zone_cp", argv, zone, prefix=prefix, host=host)

    async def _start(
        self, module: str, argv: list[str], name: str, *, prefix: Sequence[str] = (), host: str = "127.0.0.1"
    ) -> CPProcess:
        p = CPProcess(module, argv, self.workdir, name, prefix=prefix, host=host)
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
