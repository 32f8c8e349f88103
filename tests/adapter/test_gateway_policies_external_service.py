"""ExternalService as a gateway route backend, through a real Envoy (issue 13, row ExternalService).

One gateway `edge`, one HTTP listener, one route per case; the backends are in-process servers that a route
reaches only through an ExternalService's `networking.address` (no Dataplane serves those services):

| path | ExternalService | expected |
|---|---|---|
| /plain | `plain`: plain HTTP backend | 200 from the backend |
| /secure | `secure`: TLS, serverName es.example.com, the CA that signed it, a client cert | 200; SNI, cert seen |
| /wrong-ca | `wrong-ca`: the same backend, a caCert that did not sign it | 503, the backend never answers |
| /anonymous | `anonymous`: the same backend, right CA, no client cert | 503: the backend requires one |
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from meshgate.resources.model import Resource
from meshgate.xds import MeshContext, generate
from meshgate.xds.ads import ProxyId
from tests.support.envoy import free_port, running_envoy
from tests.support.gateway_harness import (
    Cert,
    ads_server,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    load,
    ready_probe,
    recording_backend,
    rule,
    self_signed,
    to,
)

pytestmark = pytest.mark.asyncio

EDGE = ProxyId("default", "edge-1")
SNI = "es.example.com"


@dataclass
class TlsBackend:
    port: int = 0
    server_names: list[str | None] = field(default_factory=list)
    client_certs: list[bool] = field(default_factory=list)
    answered: int = 0


@asynccontextmanager
async def https_backend(cert: Cert, client_ca: Cert) -> AsyncIterator[TlsBackend]:
    """HTTPS on 127.0.0.1 with `cert`, requiring a client certificate signed by `client_ca`; records the SNI of
    each handshake and whether a client certificate came with each request."""
    backend = TlsBackend()
    context = cert.server_context()
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(client_ca.cert))

    def on_sni(_sock: Any, name: str | None, _ctx: Any) -> None:
        backend.server_names.append(name)

    context.sni_callback = on_sni

    async def answer(request: web.Request) -> web.Response:
        assert request.transport is not None
        backend.client_certs.append(bool(request.transport.get_extra_info("peercert")))
        backend.answered += 1
        return web.Response(text="secure")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        backend.port = int(runner.addresses[0][1])
        yield backend
    finally:
        await runner.cleanup()


def external_service(name: str, port: int, tls: dict[str, Any] | None = None) -> Resource:
    networking: dict[str, Any] = {"address": f"127.0.0.1:{port}"}
    if tls is not None:
        networking["tls"] = tls
    return load(
        {
            "type": "ExternalService",
            "mesh": "default",
            "name": name,
            "networking": networking,
            "tags": {"kuma.io/service": name, "kuma.io/protocol": "http"},
        }
    )


def prefix(value: str) -> dict[str, Any]:
    return {"path": {"match": "PREFIX", "value": value}}


async def test_route_backends_reach_external_services_with_their_tls(tmp_path: Path) -> None:
    server, client, stranger = (self_signed(tmp_path / n, h) for n, h in
                                (("server", SNI), ("client", "gateway.example.com"), ("other", SNI)))  # fmt: skip
    listen = free_port()
    async with (
        ads_server() as ads,
        recording_backend("plain") as plain,
        https_backend(server, client_ca=client) as secure,
    ):
        right = {"enabled": True, "serverName": SNI, "caCert": {"inlineString": server.cert.read_text()}}
        with_client = {
            **right,
            "clientCert": {"inlineString": client.cert.read_text()},
            "clientKey": {"inlineString": client.key.read_text()},
        }
        services = [
            external_service("plain", plain.port),
            external_service("secure", secure.port, with_client),
            external_service(
                "wrong-ca", secure.port, {**with_client, "caCert": {"inlineString": stranger.cert.read_text()}}
            ),
            external_service("anonymous", secure.port, right),
        ]
        rules = [rule(prefix(f"/{s.meta.name}"), backends=to(s.meta.name)) for s in services]
        proxy = load(builtin_gateway_dataplane("edge-1", "edge"))
        ctx = MeshContext.build(
            "default",
            zone="zone-1",
            gateways=[load(gateway("edge", "edge", [{"port": listen, "protocol": "HTTP"}]))],
            routes=[load(http_route("to-external", rules, selector={"kuma.io/service": "edge"}))],
            resources={"ExternalService": services},
        )
        snapshot = generate(proxy, ctx)
        assert not snapshot.problems, snapshot.problems
        ads.store.set(EDGE, snapshot)
        async with (
            running_envoy(tmp_path / "envoy", str(EDGE), ads.port, name="edge") as envoy,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}", timeout=10.0) as http,
        ):

            async def plain_answers() -> bool:
                return (await http.get("/plain/x")).text == "plain /plain/x"

            await ready_probe(plain_answers, envoy, what="the plain ExternalService reached through the gateway")

            ok = await http.get("/secure")
            assert (ok.status_code, ok.text) == (200, "secure")
            assert secure.server_names[-1] == SNI
            assert secure.client_certs == [True]

            before = secure.answered
            for path in ("/wrong-ca", "/anonymous"):
                failed = await http.get(path)
                assert failed.status_code == 503, (path, failed.text)
            assert secure.answered == before  # neither handshake got as far as a request
