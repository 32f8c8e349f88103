"""`meshgate-dp run`, wired: register the Dataplane, write the bootstrap, run Envoy, stop it on a signal.

    start   -> PUT the Dataplane (retrying while the zone is not up) -> bootstrap -> Envoy
    SIGTERM -> Envoy gets SIGTERM (SIGKILL after --drain-timeout) -> DELETE the Dataplane -> exit 0
    Envoy exits by itself -> DELETE the Dataplane -> exit with Envoy's code (128+N for a signal N)

Signals are taken from the very start, so one arriving during registration still deregisters; a second
signal while stopping kills Envoy at once. Deregistration is shielded from cancellation.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
import httpx
import structlog

from meshgate.dp.bootstrap import ControlPlaneAddress, render_bootstrap
from meshgate.dp.envoy import envoy_argv
from meshgate.dp.registration import deregister, register
from meshgate.resources.model import Resource

__all__ = ["DpConfig", "run_dp"]

log = structlog.get_logger("meshgate.dp")

# Time to DELETE the Dataplane on the way out; the zone is local, so a few seconds is plenty.
_DEREGISTER_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class DpConfig:
    dataplane: Resource
    cp: ControlPlaneAddress
    cp_api: str
    binary: Path
    base_id: int
    admin_port: int = 9901
    config_dir: Path | None = None
    concurrency: int = 2
    envoy_log_level: str = "info"
    register_timeout: float = 60.0
    drain_timeout: float = 10.0

    @property
    def node_id(self) -> str:
        return f"{self.dataplane.meta.mesh}.{self.dataplane.meta.name}"


def with_parent_death_signal(argv: list[str]) -> list[str]:
    """Makes Envoy receive SIGTERM if meshgate-dp dies without stopping it (a SIGKILL, a crash), so no Envoy
    is ever left running orphaned. Uses util-linux's `setpriv --pdeathsig` (Linux) when it is installed;
    elsewhere Envoy is started as is and only a graceful meshgate-dp exit stops it."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or not sys.platform.startswith("linux"):
        return argv
    return [setpriv, "--pdeathsig", "TERM", "--", *argv]


class _Supervisor:
    """Who to stop when a signal comes: the startup (before Envoy runs) or Envoy."""

    def __init__(self, drain_timeout: float) -> None:
        self.drain_timeout = drain_timeout
        self.startup = anyio.CancelScope()
        self.proc: anyio.abc.Process | None = None
        self.signalled: int | None = None

    async def watch(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            name = signal.Signals(signum).name
            if self.signalled is not None:
                log.warning("dp.kill", signal=name, reason="second signal while stopping")
                if self.proc is not None and self.proc.returncode is None:
                    self.proc.kill()
                continue
            self.signalled = signum
            log.info("dp.stopping", signal=name)
            if self.proc is None:
                self.startup.cancel()
                continue
            self.proc.terminate()
            with anyio.move_on_after(self.drain_timeout):
                await self.proc.wait()
            if self.proc.returncode is None:
                log.warning("dp.kill", reason=f"envoy still running after {self.drain_timeout}s")
                self.proc.kill()


@contextmanager
def _config_dir(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="meshgate-dp-") as tmp:
        yield Path(tmp)


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


async def run_dp(cfg: DpConfig) -> int:
    """Runs until Envoy exits or a signal stops it; returns the process exit code."""
    sup = _Supervisor(cfg.drain_timeout)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.watch, signals)
            try:
                code = await _run(cfg, sup)
            finally:
                tg.cancel_scope.cancel()
    return code


async def _run(cfg: DpConfig, sup: _Supervisor) -> int:
    slog = log.bind(dataplane=cfg.dataplane.meta.name, mesh=cfg.dataplane.meta.mesh)
    async with httpx.AsyncClient(base_url=cfg.cp_api, timeout=10.0) as client:
        registered = False
        try:
            with sup.startup:
                await register(client, cfg.dataplane, retry_for=cfg.register_timeout)
                registered = True
            if sup.signalled is not None:
                return 0
            with _config_dir(cfg.config_dir) as workdir:
                return await _run_envoy(cfg, sup, workdir, slog)
        finally:
            if registered:
                with anyio.CancelScope(shield=True), anyio.move_on_after(_DEREGISTER_TIMEOUT):
                    await deregister(client, cfg.dataplane)


async def _run_envoy(
    cfg: DpConfig, sup: _Supervisor, workdir: Path, slog: structlog.typing.FilteringBoundLogger
) -> int:
    bootstrap = workdir / "bootstrap.json"
    config = render_bootstrap(
        cfg.node_id,
        cfg.cp,
        admin_port=cfg.admin_port,
        metadata={"dataplane.admin.port": str(cfg.admin_port)},
    )
    bootstrap.write_text(json.dumps(config, indent=2))
    argv = envoy_argv(
        cfg.binary,
        bootstrap,
        base_id=cfg.base_id,
        concurrency=cfg.concurrency,
        log_level=cfg.envoy_log_level,
    )
    # Envoy's own log goes to our stderr, interleaved with ours: one stream for the operator to follow.
    proc = await anyio.open_process(with_parent_death_signal(argv), stdin=subprocess.DEVNULL, stdout=None, stderr=None)
    sup.proc = proc
    slog.info(
        "dp.envoy.started",
        pid=proc.pid,
        node_id=cfg.node_id,
        xds=f"{cfg.cp.host}:{cfg.cp.port}",
        admin=f"127.0.0.1:{cfg.admin_port}",
        base_id=cfg.base_id,
    )
    try:
        returncode = await proc.wait()
    finally:
        if proc.returncode is None:  # cancelled: never leave Envoy behind
            proc.kill()
            with anyio.CancelScope(shield=True):
                await proc.wait()
        await proc.aclose()
    if sup.signalled is not None:
        slog.info("dp.envoy.stopped", returncode=returncode)
        return 0
    slog.error("dp.envoy.exited", returncode=returncode)
    return _exit_code(returncode)
