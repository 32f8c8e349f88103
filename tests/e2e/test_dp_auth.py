"""The zone's xDS port is secure by default: each attack that used to work, now refused (global and zone as
processes, a raw gRPC client speaking delta ADS, real TLS with the CA the zone generated).

- anyone reaching the xDS port asked for `default.echo-1` and got its configuration: now UNAUTHENTICATED;
- a token for another name, tag or mesh: refused with Kuma's message;
- a revoked token: refused, and an open stream using it is closed;
- a plaintext client against the TLS port: fails in the handshake, never served;
- `GET .../dataplanes/{name}/xds` made the zone fetch 127.0.0.1:<any port a Dataplane named>: now the zone
  asks only a proxy with a live authenticated stream, so the named port is never requested.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import grpc
import httpx
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from grpc.aio import EOF  # type: ignore[attr-defined]

from meshgate.auth.jwt import unverified_payload
from meshgate.testing import factory
from meshgate.xds.ads import CLUSTER, LISTENER
from tests.support.dp import dataplane_token, zone_ca
from tests.support.envoy import http_backend
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESHGATECTL = str(Path(sys.executable).with_name("meshgatectl"))
# A deadlock guard for one gRPC exchange, never a speed assertion.
_CALL = 30.0


async def get(cp: CPProcess, path: str, port: str = "api") -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(port), timeout=30) as c:
        return await c.get(path)


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=30) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


def edge_dataplane(name: str = "edge-1", service: str = "edge") -> dict[str, Any]:
    return factory.gateway_dataplane(name, service, address="127.0.0.1")


def echo_dataplane(port: int) -> dict[str, Any]:
    return factory.dataplane("echo-1", "echo", address="127.0.0.1", port=port)


async def setup(procs: ProcessGroup) -> tuple[CPProcess, CPProcess]:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    for mesh in ("default", "other"):
        await put(g, f"/meshes/{mesh}", {"type": "Mesh", "name": mesh})
    listener = {"port": free_port(), "protocol": "HTTP", "hostname": "*"}
    await put(
        g,
        "/meshes/default/meshgateways/edge",
        {
            "type": "MeshGateway",
            "mesh": "default",
            "name": "edge",
            "selectors": [{"match": {"kuma.io/service": "edge"}}],
            "conf": {"listeners": [listener]},
        },
    )
    await eventually(
        lambda: _status(get(z, f"/meshes/default/meshgateways/{in_zone('edge')}"), 200), what="the gateway in zone-1"
    )
    return g, z


async def _status(response: Any, status: int) -> bool:
    return bool((await response).status_code == status)


@asynccontextmanager
async def xds(
    z: CPProcess, procs: ProcessGroup, *, tls: bool = True
) -> AsyncIterator[ads_pb2_grpc.AggregatedDiscoveryServiceStub]:
    target = f"127.0.0.1:{z.ports['xds']}"
    if tls:
        creds = grpc.ssl_channel_credentials(root_certificates=zone_ca(procs, z).read_bytes())
        channel = grpc.aio.secure_channel(target, creds)
    else:
        channel = grpc.aio.insecure_channel(target)
    try:
        yield ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
    finally:
        await channel.close(None)


def request(
    node_id: str, dataplane: Mapping[str, Any] | None, type_url: str = CLUSTER
) -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url)
    req.node.id = node_id
    if dataplane is not None:
        req.node.metadata.fields["dataplane.resource"].CopyFrom(struct_pb2.Value(string_value=json.dumps(dataplane)))
    return req


class Outcome:
    def __init__(self) -> None:
        self.responses: list[discovery_pb2.DeltaDiscoveryResponse] = []
        self.code: grpc.StatusCode | None = None
        self.details = ""


async def exchange(
    stub: ads_pb2_grpc.AggregatedDiscoveryServiceStub,
    node_id: str,
    dataplane: Mapping[str, Any] | None,
    token: str | None,
    *,
    responses: int = 1,
) -> Outcome:
    """Subscribes to CDS; reads until `responses` arrived or the call ended (its status recorded)."""
    metadata = (("authorization", token),) if token is not None else ()
    call = stub.DeltaAggregatedResources(metadata=metadata)
    out = Outcome()
    with anyio.fail_after(_CALL):
        try:
            # One request, then read: a second write racing the server's abort makes grpc-core end the call
            # with its own INTERNAL status instead of the server's.
            await call.write(request(node_id, dataplane))
            while len(out.responses) < responses:
                resp = await call.read()
                if resp is EOF:
                    break
                out.responses.append(resp)
                ack = discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce)
                await call.write(ack)
        except grpc.aio.AioRpcError:
            pass  # the call's status, read below, says why
        if len(out.responses) < responses or call.done():
            out.code, out.details = await call.code(), await call.details() or ""
    call.cancel()
    return out


async def test_anonymous_and_wrong_tokens_get_nothing_and_a_reason(procs: ProcessGroup) -> None:
    g, z = await setup(procs)
    async with http_backend("echo") as echo:
        await put(z, "/meshes/default/dataplanes/echo-1", echo_dataplane(echo.port))
        async with xds(z, procs) as stub:
            # The attack as it was: no token, the node id of a registered proxy.
            out = await exchange(stub, "default.echo-1", None, None)
            assert out.code == grpc.StatusCode.UNAUTHENTICATED, out.details
            assert "missing data plane token" in out.details
            assert out.responses == []
            # Garbage, and a Dataplane claiming to be echo-1 without a token.
            out = await exchange(stub, "default.echo-1", echo_dataplane(echo.port), "not-a-jwt")
            assert (out.code, out.responses) == (grpc.StatusCode.UNAUTHENTICATED, [])
            # A token for another name, with Kuma's message.
            other = await dataplane_token(z, {"mesh": "default", "name": "echo-2"})
            out = await exchange(stub, "default.echo-1", None, other)
            assert out.code == grpc.StatusCode.UNAUTHENTICATED
            assert "proxy name from requestor: echo-1 is different than in token: echo-2" in out.details
            # A token that requires a tag value the Dataplane does not carry.
            tagged = await dataplane_token(g, {"mesh": "default", "tags": {"kuma.io/service": ["web"]}})
            out = await exchange(stub, "default.echo-1", None, tagged)
            assert out.code == grpc.StatusCode.UNAUTHENTICATED, out.details
            assert "dataplane contains tag 'kuma.io/service' with value 'echo' which is not allowed" in out.details
            # A token of another mesh (signed by that mesh's key).
            foreign = await dataplane_token(g, {"mesh": "other", "name": "echo-1"})
            out = await exchange(stub, "default.echo-1", None, foreign)
            assert out.code == grpc.StatusCode.UNAUTHENTICATED
            assert "proxy mesh from requestor: default is different than in token: other" in out.details
            # A gateway token cannot register an ordinary Dataplane.
            gateway_only = await dataplane_token(z, {"mesh": "default", "name": "echo-1", "type": "gateway"})
            out = await exchange(stub, "default.echo-1", None, gateway_only)
            assert "proxy type from requestor: dataplane is different than in token: gateway" in out.details

        # Refusals are logged (bounded fields) and counted by reason.
        metrics = (await get(z, "/metrics", port="diagnostics")).text
        assert 'meshgate_xds_auth_failures{reason="missing_token"} 1' in metrics
        assert 'meshgate_xds_auth_failures{reason="wrong_identity"}' in metrics
        assert "xds.auth.refused" in z.logs()


async def test_a_revoked_token_is_refused_and_its_open_stream_closed(procs: ProcessGroup) -> None:
    g, z = await setup(procs)
    edge = edge_dataplane()
    token = await dataplane_token(g, {"mesh": "default", "name": "edge-1", "type": "gateway"})
    async with xds(z, procs) as stub:
        call = stub.DeltaAggregatedResources(metadata=(("authorization", token),))
        try:
            with anyio.fail_after(_CALL):
                await call.write(request("default.edge-1", edge))
                await call.write(request("default.edge-1", None, LISTENER))
                received: list[str] = []
                while not received:  # an empty CDS response may come first: ACK and read on
                    resp = await call.read()
                    assert resp is not EOF, "a valid token gets its config"
                    received = [r.name for r in resp.resources]
                    await call.write(
                        discovery_pb2.DeltaDiscoveryRequest(type_url=resp.type_url, response_nonce=resp.nonce)
                    )
            assert any(name.startswith("edge:HTTP:") for name in received), received
            # Registered from the node metadata (Kuma's lifecycle), as a zone-origin Dataplane.
            registered = (await get(z, "/meshes/default/dataplanes/edge-1")).json()
            assert registered["labels"]["kuma.io/origin"] == "zone"

            jti = unverified_payload(token)["jti"]
            async with httpx.AsyncClient(base_url=g.url()) as c:
                r = await c.post("/tokens/revocations", json={"type": "dataplane", "mesh": "default", "id": jti})
            assert r.status_code == 200, r.text

            # The revocation list reaches the zone over KDS; the open stream is re-checked and closed.
            code: grpc.StatusCode | None = None
            with anyio.fail_after(_CALL):
                try:
                    while (await call.read()) is not EOF:
                        pass
                    code, details = await call.code(), await call.details()
                except grpc.aio.AioRpcError as exc:
                    code, details = exc.code(), exc.details() or ""
            assert code == grpc.StatusCode.UNAUTHENTICATED
            assert "revoked" in details
        finally:
            call.cancel()
        # The stream is gone: so is the Dataplane it registered.
        await eventually(lambda: _status(get(z, "/meshes/default/dataplanes/edge-1"), 404), what="edge-1 deregistered")
        out = await exchange(stub, "default.edge-1", edge, token)
        assert out.code == grpc.StatusCode.UNAUTHENTICATED
        assert "revoked" in out.details


async def test_plaintext_against_the_tls_port_fails_clearly(procs: ProcessGroup) -> None:
    _, z = await setup(procs)
    token = await dataplane_token(z, {"mesh": "default", "name": "edge-1"})
    async with xds(z, procs, tls=False) as stub:
        out = await exchange(stub, "default.edge-1", edge_dataplane(), token)
    assert out.code == grpc.StatusCode.UNAVAILABLE
    assert out.responses == []
    assert (await get(z, "/meshes/default/dataplanes/edge-1")).status_code == 404  # never registered


async def test_a_config_dump_never_requests_a_port_a_dataplane_names(procs: ProcessGroup) -> None:
    """The loopback forgery: a Dataplane whose admin port is another local HTTP server. Neither the zone's
    nor the global's config dump endpoint makes the zone request it."""
    g, z = await setup(procs)
    async with http_backend("victim") as victim:
        forged = echo_dataplane(free_port())
        forged["networking"]["admin"] = {"port": victim.port}
        await put(z, "/meshes/default/dataplanes/echo-1", forged)
        r = await get(z, "/meshes/default/dataplanes/echo-1/xds")
        assert r.status_code == 409, r.text
        assert "no authenticated xDS stream" in r.json()["detail"]
        await eventually(lambda: _status(get(g, "/meshes/default/dataplanes"), 200), what="the global's API")

        async def via_global() -> bool:
            resp = await get(g, "/meshes/default/dataplanes/echo-1/xds")
            return resp.status_code == 502 and "no authenticated xDS stream" in resp.json()["detail"]

        await eventually(via_global, timeout=30, what="the global relaying the zone's refusal")
        assert victim.hits == 0


async def test_token_endpoint_and_meshgatectl(procs: ProcessGroup) -> None:
    g, z = await setup(procs)
    async with httpx.AsyncClient(base_url=z.url()) as c:
        r = await c.post("/tokens/dataplane", json={"mesh": "", "type": "sidecar", "validFor": "soon", "tags": []})
    assert r.status_code == 400
    fields = {p["field"] for p in r.json()["invalid_parameters"]}
    assert fields == {"mesh", "type", "validFor", "tags"}
    async with httpx.AsyncClient(base_url=g.url()) as c:
        r = await c.post("/tokens/dataplane", json={"mesh": "nope"})
    assert r.status_code == 400
    assert "Mesh is not found" in r.text

    for cp in (g, z):
        argv = [MESHGATECTL, "--api", cp.url(), "generate", "dataplane-token", "--mesh", "default", "--name", "edge-1"]
        argv += ["--tag", "kuma.io/service=edge,edge-2", "--type", "gateway", "--valid-for", "1h"]
        done = await anyio.run_process(argv, check=False)
        assert done.returncode == 0, done.stderr.decode()
        claims = unverified_payload(done.stdout.decode().strip())
        assert (claims["Mesh"], claims["Name"], claims["Type"]) == ("default", "edge-1", "gateway")
        assert claims["Tags"] == {"kuma.io/service": ["edge", "edge-2"]}
        assert claims["exp"] - claims["iat"] == 3600


async def test_the_insecure_mode_is_explicit_and_logged(procs: ProcessGroup) -> None:
    """`--dp-server-authn none --no-dp-server-tls`: plaintext, no token, and a WARNING saying what that means."""
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--dp-server-authn", "none", "--no-dp-server-tls")
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await eventually(lambda: _status(get(z, "/meshes/default"), 200), what="the mesh in zone-1")
    async with xds(z, procs, tls=False) as stub:
        out = await exchange(stub, "default.edge-1", edge_dataplane(), None)
    assert out.code is None, out.details
    assert len(out.responses) == 1
    logs = z.logs()
    assert "xds.authn.disabled" in logs
    assert "xds.tls.disabled" in logs
    assert not (procs.workdir / "zone-1" / "xds-ca.crt").exists()
