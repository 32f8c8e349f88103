"""The real gateway pipeline minus processes: resources -> `generate` -> SnapshotStore -> ADS server -> Envoy.

Resources are Universal dicts loaded (and validated) with `meshgate.resources.codec.load`; `generate` builds
one proxy's snapshot; the snapshot goes into a `SnapshotStore` that the real delta ADS server serves on
loopback; a real Envoy (tests/support/envoy.py) takes it from there. Backends are in-process servers:

- `recording_backend(name)`: HTTP, answers `"<name> <path?query>"` and records every request it sees
  (method, path with query, headers), so tests can check request-header filters, rewrites and mirrors;
- `tls_backend(name, key, cert)`: TLS, writes `"<name>\\n"` after the handshake (TLS passthrough target);
- `tcp_echo_backend(name)`: TCP, answers each line with `"<name>:<line>"`.

Certificates are self-signed, made with the `openssl` command (`meshgate.testing.tools.OPENSSL`).
Every server is stopped in a `finally`; Envoy is stopped by its own Popen handle (`running_envoy`).

Two helpers serve the gateway test modules' fixtures and first requests:

- `rig_in_one_task(build)`: the body of a module-scoped fixture; `build` enters its servers and processes on an
  `AsyncExitStack` owned by one background task (see its docstring for why);
- `ready_probe(check, process, what=...)`: polls until the gateway answers, and fails with the process's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import httpx
from aiohttp import web

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing.tools import OPENSSL, require
from meshgate.transport.ads_server import ADS_SERVICE_NAME, AggregatedDiscoveryService, SnapshotStore, register_ads
from meshgate.transport.grpc_server import serve_grpc
from meshgate.xds import MeshContext, Snapshot, generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from tests.support.wait import eventually

__all__ = [
    "AdsServer",
    "Cert",
    "RecordingBackend",
    "Seen",
    "ads_server",
    "backend_dataplane",
    "builtin_gateway_dataplane",
    "gateway",
    "http_route",
    "load",
    "ready_probe",
    "recording_backend",
    "rig_in_one_task",
    "rule",
    "self_signed",
    "tcp_echo_backend",
    "tcp_route",
    "tls_backend",
    "to",
]

MESH = "default"


# --- resources -------------------------------------------------------------------------------------------


def load(doc: Mapping[str, Any]) -> Resource:
    """Decode and validate, exactly as the REST API would."""
    return codec.load(doc)


def builtin_gateway_dataplane(name: str, service: str) -> dict[str, Any]:
    return {
        "type": "Dataplane",
        "mesh": MESH,
        "name": name,
        "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": service}}},
    }


def backend_dataplane(
    name: str, port: int, service: str, *, zone: str | None = None, protocol: str | None = None
) -> dict[str, Any]:
    """A Dataplane with one inbound on 127.0.0.1:`port`; `zone` labels it as synced from that zone."""
    tags = {"kuma.io/service": service}
    if protocol:
        tags["kuma.io/protocol"] = protocol
    doc: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": MESH,
        "name": name,
        "networking": {"address": "127.0.0.1", "inbound": [{"port": port, "tags": tags}]},
    }
    if zone:
        doc["labels"] = {"kuma.io/zone": zone, "kuma.io/origin": "zone"}
    return doc


def gateway(
    name: str, service: str, listeners: Sequence[Mapping[str, Any]], *, tags: Mapping[str, str] | None = None
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "MeshGateway",
        "mesh": MESH,
        "name": name,
        "selectors": [{"match": {"kuma.io/service": service}}],
        "conf": {"listeners": list(listeners)},
    }
    if tags:
        doc["tags"] = dict(tags)
    return doc


def to(*services: str | tuple[str, int]) -> list[dict[str, Any]]:
    """Backends: a service name (weight 1), or (service, weight)."""
    out = []
    for s in services:
        service, weight = (s, 1) if isinstance(s, str) else s
        out.append({"weight": weight, "destination": {"kuma.io/service": service}})
    return out


def rule(
    *matches: Mapping[str, Any],
    backends: Sequence[Mapping[str, Any]] = (),
    filters: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    out: dict[str, Any] = {"matches": list(matches)}
    if backends:
        out["backends"] = list(backends)
    if filters:
        out["filters"] = list(filters)
    return out


def http_route(
    name: str,
    rules: Sequence[Mapping[str, Any]],
    *,
    selector: Mapping[str, str],
    hostnames: Sequence[str] = (),
) -> dict[str, Any]:
    http: dict[str, Any] = {"rules": list(rules)}
    if hostnames:
        http["hostnames"] = list(hostnames)
    return {
        "type": "MeshGatewayRoute",
        "mesh": MESH,
        "name": name,
        "selectors": [{"match": dict(selector)}],
        "conf": {"http": http},
    }


def tcp_route(name: str, service: str, *, selector: Mapping[str, str]) -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": MESH,
        "name": name,
        "selectors": [{"match": dict(selector)}],
        "conf": {"tcp": {"rules": [{"backends": to(service)}]}},
    }


# --- certificates ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cert:
    hostname: str
    key: Path
    cert: Path

    @property
    def pem(self) -> str:
        """Private key and certificate in one blob, as a MeshGateway `inlineString` certificate."""
        return self.key.read_text() + self.cert.read_text()

    def client_context(self) -> ssl.SSLContext:
        """Trusts this certificate only, and checks the host name: a handshake proves which one was served."""
        ctx = ssl.create_default_context(cafile=str(self.cert))
        ctx.check_hostname = True
        return ctx

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx


def self_signed(workdir: Path, hostname: str) -> Cert:
    """A self-signed P-256 certificate for `hostname` (CN and SAN), valid for two days."""
    workdir.mkdir(parents=True, exist_ok=True)
    key, cert = workdir / f"{hostname}.key", workdir / f"{hostname}.crt"
    subprocess.run(
        [
            str(require(OPENSSL)),
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            f"/CN={hostname}",
            "-addext",
            f"subjectAltName=DNS:{hostname}",
        ],
        check=True,
        capture_output=True,
    )
    return Cert(hostname, key, cert)


# --- backends --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    method: str
    path: str  # with the query string
    headers: Mapping[str, str]  # lower-case names; repeated headers joined with ", "


@dataclass
class RecordingBackend:
    name: str
    port: int = 0
    requests: list[Seen] = field(default_factory=list)


@asynccontextmanager
async def recording_backend(name: str) -> AsyncIterator[RecordingBackend]:
    backend = RecordingBackend(name)

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        backend.requests.append(
            Seen(
                request.method,
                request.path_qs,
                {k.lower(): ", ".join(request.headers.getall(k)) for k in request.headers},
            )
        )
        return web.Response(text=f"{name} {request.path_qs}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        backend.port = int(runner.addresses[0][1])
        yield backend
    finally:
        await runner.cleanup()


@dataclass
class StreamBackend:
    name: str
    port: int
    connections: int = 0


@asynccontextmanager
async def _stream_server(
    name: str, handle: Any, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[StreamBackend]:
    backend = StreamBackend(name, 0)
    tasks: set[asyncio.Task[None]] = set()

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend.connections += 1
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()
            tasks.discard(task)

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0, ssl=ssl_context)
    try:
        backend.port = int(server.sockets[0].getsockname()[1])
        yield backend
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await server.wait_closed()


@asynccontextmanager
async def tcp_echo_backend(name: str) -> AsyncIterator[StreamBackend]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            writer.write(f"{name}:".encode() + line)
            await writer.drain()

    async with _stream_server(name, handle) as backend:
        yield backend


@asynccontextmanager
async def tls_backend(name: str, cert: Cert) -> AsyncIterator[StreamBackend]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(f"{name}\n".encode())
        await writer.drain()
        await reader.read(1)  # until the client closes

    async with _stream_server(name, handle, ssl_context=cert.server_context()) as backend:
        yield backend


# --- the ADS server --------------------------------------------------------------------------------------


@dataclass
class AdsServer:
    store: SnapshotStore
    registry: ProxyRegistry
    port: int

    def push(
        self,
        proxy: Resource,
        *,
        gateways: Sequence[Resource] = (),
        routes: Sequence[Resource] = (),
        dataplanes: Sequence[Resource] = (),
        zone: str = "zone-1",
    ) -> Snapshot:
        """`generate` for `proxy` and publish the snapshot; a snapshot with problems fails the test."""
        ctx = MeshContext.build(proxy.meta.mesh, gateways=gateways, routes=routes, dataplanes=dataplanes, zone=zone)
        snap = generate(proxy, ctx)
        assert not snap.problems, snap.problems
        self.store.set(ProxyId(proxy.meta.mesh, proxy.meta.name), snap)
        return snap

    def types(self, proxy: ProxyId) -> dict[str, Any]:
        """The per-type view of the proxy's last stream, as the registry describes it."""
        for p in self.registry.describe()["proxies"]:
            if p["proxy"] == str(proxy) and p["last"] is not None:
                types: dict[str, Any] = p["last"]["types"]
                return types
        return {}


@asynccontextmanager
async def ads_server() -> AsyncIterator[AdsServer]:
    """The real delta ADS server on 127.0.0.1 (a free port), serving a SnapshotStore."""
    store, registry = SnapshotStore(), ProxyRegistry()
    service = AggregatedDiscoveryService(store, registry)
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: serve_grpc(
                [register_ads(service)], [ADS_SERVICE_NAME], "127.0.0.1", 0, grace=0, task_status=task_status
            )
        )
        try:
            yield AdsServer(store, registry, int(port))
        finally:
            tg.cancel_scope.cancel()


# --- module-scoped rigs ----------------------------------------------------------------------------------

T = TypeVar("T")


@asynccontextmanager
async def rig_in_one_task(build: Callable[[AsyncExitStack], Awaitable[T]]) -> AsyncIterator[T]:
    """Yields what `build` returns; everything `build` enters on the stack is left when this context is.

    pytest-asyncio sets a fixture up and tears it down in two different tasks, while an anyio task group (the
    ADS server's) must be left by the task that entered it. So one background task owns the stack: it runs
    `build`, hands the value over, waits for the stop signal and then leaves the stack. The task is awaited on
    the way out, so its lifetime is still bounded by the fixture's; a `build` that fails has already left the
    stack (stopping what it started) before its exception is raised here."""
    built: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()

    async def run() -> None:
        async with AsyncExitStack() as stack:
            try:
                built.set_result(await build(stack))
            except BaseException as exc:
                built.set_exception(exc)
                return
            await stop.wait()

    task = asyncio.create_task(run())  # noqa: TID251
    try:
        yield await built
    finally:
        stop.set()
        await task


class Logged(Protocol):
    """A process with a log: `Envoy` (its last 8000 characters) or `DpProcess` (all of it)."""

    def logs(self) -> str: ...


async def ready_probe(
    check: Callable[[], Awaitable[bool]],
    process: Logged,
    *,
    what: str,
    timeout: float = 15.0,
    tail: int | None = None,
) -> None:
    """Polls `check` until it returns true; an `httpx.TransportError` counts as not yet (the listener or the
    route is not there yet). Past `timeout` (a deadlock guard) it fails with `process.logs()`, or their last
    `tail` characters: why the proxy did not serve is in its log, not in the test."""

    async def probe() -> bool:
        try:
            return await check()
        except httpx.TransportError:
            return False

    try:
        await eventually(probe, timeout=timeout, what=what)
    except AssertionError as exc:
        logs = process.logs()
        raise AssertionError(f"{exc}\n{logs if tail is None else logs[-tail:]}") from None
