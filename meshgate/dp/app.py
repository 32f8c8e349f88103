"""`meshgate-dp run`, wired: write the bootstrap, run Envoy, stop it on a signal.

    start   -> the access log pipe (meshgate.dp.access_logs: a FIFO in the config directory, named as Kuma
               names it, meshgate.sockets) -> bootstrap (token, CA, the Dataplane and that pipe's path in node
               metadata) -> Envoy, which opens the xDS stream on which the zone authenticates and registers the
               Dataplane (meshgate.dp.registration); the streamer sends the TrafficLog lines Envoy writes to the
               pipe to their TCP collectors while Envoy runs
    token   -> with a --dataplane-token-file, Envoy reads a clean copy of it (meshgate.dp.token_file, kept
               current by a poll while Envoy runs) for every new xDS stream (Kuma's reloadable tokens): a
               rotated file needs no restart of Envoy or of meshgate-dp
    metrics -> the metrics hijacker (meshgate.dp.metrics) on a Unix socket in the config directory, named as Kuma
               names it and sent in node metadata: Envoy's `kuma:metrics:prometheus` listener, which the zone
               adds when the Mesh enables a prometheus backend, forwards scrapes there; it answers with Envoy's
               stats merged with meshgate-dp's own metrics
    SIGTERM -> Envoy gets SIGTERM (SIGKILL after --drain-timeout) -> exit 0; its stream closes and the zone
               removes the Dataplane; the streamer stops and the pipe is removed
    Envoy exits by itself -> exit with Envoy's code (128+N for a signal N)
    --transparent-proxy -> also the DNS server (meshgate.dp.dns_proxy) on --dns-coredns-port, 127.0.0.1 and ::1,
               beside Envoy for as long as it runs (kuma-dp's CoreDNS)

Signals are taken from the very start; a second signal while stopping kills Envoy at once.
"""

from __future__ import annotations

import contextlib
import json
import os
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
import structlog

from meshgate.dp.access_logs import AccessLogStreamer
from meshgate.dp.bootstrap import ControlPlaneAddress, reloads_token_file, render_bootstrap
from meshgate.dp.dns_proxy import DnsProxy
from meshgate.dp.envoy import envoy_argv
from meshgate.dp.metrics import MetricsHijacker, dp_registry
from meshgate.dp.registration import node_metadata
from meshgate.dp.token_file import TokenCopy
from meshgate.resources.model import Resource
from meshgate.sockets import access_log_socket_name, metrics_socket_name

__all__ = ["DpConfig", "run_dp"]

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class DpConfig:
    dataplane: Resource
    cp: ControlPlaneAddress
    binary: Path
    base_id: int
    admin_port: int = 9901
    config_dir: Path | None = None
    concurrency: int = 2
    envoy_log_level: str = "info"
    drain_timeout: float = 10.0
    # The data plane token ("" sends none) and, for a TLS control plane, the CA that signed its certificate
    # (PEM text; "" with skip_verify: the certificate is not checked). With `token_file` (the token read from
    # it at start is `token`) Envoy re-reads the file for every stream when it can (reloads_token_file).
    token: str = ""
    token_file: Path | None = None
    ca_pem: str = ""
    ca_file: str = ""
    # With the transparent proxy: the DNS server the namespace's redirected queries reach, and its port.
    dns: DnsProxy | None = None
    dns_port: int = 15053

    @property
    def node_id(self) -> str:
        return f"{self.dataplane.meta.mesh}.{self.dataplane.meta.name}"

    def access_log_socket(self, workdir: Path) -> Path:
        """The access log pipe: Kuma's name for this Dataplane's, in the config directory (kuma-dp's socket
        directory is its temporary config directory, app/kuma-dp/cmd/run.go:117-119)."""
        meta = self.dataplane.meta
        return Path(access_log_socket_name(str(workdir.absolute()), meta.name, meta.mesh))

    def metrics_socket(self, workdir: Path) -> Path:
        """The metrics hijacker's socket: Kuma's name for this Dataplane's, in the config directory."""
        meta = self.dataplane.meta
        return Path(metrics_socket_name(str(workdir.absolute()), meta.name, meta.mesh))

    @property
    def reloaded_token_file(self) -> Path | None:
        """The token file Envoy reads itself, or None when the token is embedded in the bootstrap."""
        if self.token_file is None or not reloads_token_file(self.cp, ca_pem=self.ca_pem, ca_file=self.ca_file):
            return None
        return self.token_file


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
    if not cfg.token:
        slog.warning("dp.token.missing", reason="no data plane token: a zone with --dp-server-authn dpToken refuses us")
    if cfg.cp.tls and not (cfg.ca_pem or cfg.ca_file):
        slog.warning("dp.tls.unverified", reason="--skip-verify: the zone's certificate is not checked")
    if cfg.token_file is not None and cfg.reloaded_token_file is None:
        slog.warning(
            "dp.token.not_reloaded",
            token_file=str(cfg.token_file),
            reason="Envoy re-reads a token file over verified TLS only (not grpc:// nor --skip-verify): the token"
            " read at start is embedded, and a rotated file takes a restart",
        )
    with sup.startup, _config_dir(cfg.config_dir) as workdir, contextlib.ExitStack() as stack:
        streamer = AccessLogStreamer(cfg.access_log_socket(workdir))
        try:
            stack.enter_context(streamer.open())
        except OSError as exc:
            slog.error("dp.access_logs.failed", path=str(streamer.path), error=str(exc))
            return 1
        return await _run_envoy(cfg, sup, workdir, streamer, slog)
    return 0  # a signal before Envoy started


async def _run_envoy(
    cfg: DpConfig,
    sup: _Supervisor,
    workdir: Path,
    streamer: AccessLogStreamer,
    slog: structlog.typing.FilteringBoundLogger,
) -> int:
    bootstrap = workdir / "bootstrap.json"
    reloaded = cfg.reloaded_token_file
    # Absolute: Envoy resolves a relative file name against its own working directory.
    token_copy = TokenCopy(reloaded, (workdir / "dataplane-token").absolute(), cfg.token) if reloaded else None
    config = render_bootstrap(
        cfg.node_id,
        cfg.cp,
        admin_port=cfg.admin_port,
        metadata=node_metadata(cfg.dataplane, cfg.admin_port, str(streamer.path), str(cfg.metrics_socket(workdir))),
        token="" if token_copy else cfg.token,
        token_file=str(token_copy.path) if token_copy else "",
        ca_pem=cfg.ca_pem,
        ca_file=cfg.ca_file,
    )
    # The bootstrap may hold the token: readable by this user only.
    fd = os.open(bootstrap, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(json.dumps(config, indent=2))
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
        xds=f"{'https' if cfg.cp.tls else 'grpc'}://{cfg.cp.host}:{cfg.cp.port}",
        token=bool(cfg.token),
        token_file=str(reloaded) if reloaded else None,
        admin=f"127.0.0.1:{cfg.admin_port}",
        base_id=cfg.base_id,
    )
    try:
        async with anyio.create_task_group() as tg:
            await tg.start(streamer.run)
            registry, scrape_errors = dp_registry(streamer)
            hijacker = MetricsHijacker(cfg.metrics_socket(workdir), cfg.admin_port, registry, scrape_errors)
            await tg.start(hijacker.serve)
            if token_copy is not None:
                tg.start_soon(token_copy.run)
            if cfg.dns is not None:
                await _start_dns(tg, cfg.dns, cfg.dns_port, slog)
            returncode = await proc.wait()
            tg.cancel_scope.cancel()
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


async def _start_dns(
    tg: anyio.abc.TaskGroup, dns: DnsProxy, port: int, slog: structlog.typing.FilteringBoundLogger
) -> None:
    # REDIRECT sends a local process's query to the loopback address of its family: 127.0.0.1, or ::1 for
    # ip6tables. IPv4 must bind (the redirect lands nowhere otherwise); ::1 is missing without IPv6.
    await tg.start(dns.serve, "127.0.0.1", port)
    try:
        await tg.start(dns.serve, "::1", port)
    except OSError as exc:
        slog.info("dp.dns.no_ipv6", reason=str(exc))
