"""A real redis-server on a free loopback port for adapter tests: start, stop, kill -9, restart.

Each server persists as production Redis must (a global refuses a Redis that persists nothing,
`meshgate.store.redis_durability`): the append-only file, fsynced on every write, in its own `workdir`, so a
restart on the same port and workdir comes back with everything it acknowledged. `durable=False` runs it
without persistence (``--save "" --appendonly no``), so a restart comes back empty, for the tests that are
about exactly that; a control plane started on one needs `--store-allow-volatile`. It is always stopped by
its own Popen handle, never by name.
Starting is synchronous (it is called from sync fixtures and from tests alike); it takes a few
milliseconds, during which an async test's other tasks simply wait.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from meshgate.testing.processes import free_port
from meshgate.testing.tools import REDIS_SERVER, require

__all__ = ["RedisServer", "redis_server"]

# Deadlock guards, never speed assertions.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 10.0
# A port chosen free can be taken before redis-server binds it; then we try another one.
_PORT_ATTEMPTS = 5


class RedisServer:
    def __init__(self, workdir: Path, *, durable: bool = True, extra_args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.durable = durable
        # More redis-server flags, e.g. ("--rename-command", "CONFIG", "") as managed services do.
        self.extra_args = tuple(extra_args)
        self.port = 0
        self._spawns = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._binary = require(REDIS_SERVER)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """This run's log (a new file per start, so readiness is read from this run's lines only)."""
        return self.workdir / f"redis-{self.port}-{self._spawns}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Starts on a free port the first time, and on the same port after stop() or kill()."""
        assert not self.running, "already running"
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.port:
            self._spawn()
            return
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            try:
                self._spawn()
                return
            except _PortTakenError:
                continue
        raise RuntimeError(f"redis-server found no free port in {_PORT_ATTEMPTS} attempts")

    def stop(self) -> None:
        """SIGTERM by handle, then SIGKILL if it does not exit."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """kill -9 by handle: no shutdown, no goodbye to clients."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _spawn(self) -> None:
        self._spawns += 1
        argv = [
            str(self._binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.durable else "no",
            # Every write reaches the disk before its reply: what a client was told survives kill -9.
            "--appendfsync",
            "always",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.log_path),
            "--daemonize",
            "no",
            *self.extra_args,
        ]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._wait_ready(proc)
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            raise
        self._proc = proc

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        waited = 0.0
        step = 0.01
        while waited < _START_TIMEOUT:
            if self._ready():
                return
            try:
                # Waits on the process itself: returns early, with an exit code, if it died.
                proc.wait(step)
            except subprocess.TimeoutExpired:
                waited += step
                continue
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            if "Address already in use" in log:
                raise _PortTakenError
            raise RuntimeError(f"redis-server exited with {proc.returncode}:\n{log[-2000:]}")
        raise RuntimeError(f"redis-server on port {self.port} not ready after {_START_TIMEOUT}s")

    def _ready(self) -> bool:
        # Our own log line, not a PONG: a PONG could come from another server that took the port first.
        if not self.log_path.exists() or "Ready to accept connections" not in self.log_path.read_text(errors="replace"):
            return False
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class _PortTakenError(Exception):
    pass


@contextmanager
def redis_server(workdir: Path, *, durable: bool = True, extra_args: Sequence[str] = ()) -> Iterator[RedisServer]:
    server = RedisServer(workdir, durable=durable, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.stop()
