"""TrafficPermission on a builtin gateway, through a real Envoy (issue 13, row TrafficPermission; gateway-side
enforcement, meshgate.xds.policies.trafficpermission).

`open` and `secret` are ExternalServices (issue 14): with mesh mTLS a Dataplane backend is reached over mTLS
through its sidecar, which enforces TrafficPermission itself (tests/adapter/test_sidecar_mtls.py), so the gateway
gate now applies to what has no sidecar, ExternalServices, as in Kuma's gateway generator. These backends were
Dataplanes with no sidecar running, which a mesh with mTLS no longer reaches.

Gateway `edge`, one HTTP listener: `/open` to service `open`, `/secret` to `secret`, `/split` half to each. The
permissions: `edge-to-open` (sources `edge`, destinations `open`) and `others-to-secret` (sources `someone-else`,
destinations `secret`: it is the one selected for `secret`, and it does not name the gateway). With mTLS on the
Mesh, `/secret` answers 403 and its backend is never called, `/open` passes, `/split` answers 403 for the
`secret` share only. The same config on a Mesh without mTLS lets everything through.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from meshgate.mtls import generate_ca
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import MeshContext, generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.crossmesh import CrossMesh
from tests.support.envoy import free_port, running_envoy
from tests.support.gateway_harness import (
    AdsServer,
    ads_server,
    builtin_gateway_dataplane,
    gateway,
    http_route,
    load,
    ready_probe,
    recording_backend,
    rule,
    to,
)
from tests.support.wait import eventually

pytestmark = pytest.mark.asyncio

EDGE = ProxyId("default", "edge-1")
CA = generate_ca("default")


def prefix(value: str) -> dict[str, object]:
    return {"path": {"match": "PREFIX", "value": value}}


def push(ads: AdsServer, mesh: Resource, listen: int, ports: dict[str, int]) -> None:
    proxy = load(builtin_gateway_dataplane("edge-1", "edge"))
    rules = [
        rule(prefix("/open"), backends=to("open")),
        rule(prefix("/secret"), backends=to("secret")),
        rule(prefix("/split"), backends=to(("open", 1), ("secret", 1))),
    ]
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=mesh,
        gateways=[load(gateway("edge", "edge", [{"port": listen, "protocol": "HTTP"}]))],
        routes=[load(http_route("r", rules, selector={"kuma.io/service": "edge"}))],
        resources={
            "ExternalService": [
                factory.resource(factory.external_service(s, address=f"127.0.0.1:{port}")) for s, port in ports.items()
            ]
        },
        cross_mesh=CrossMesh({"default": CA}, zone="zone-1"),
        policies={
            "TrafficPermission": [
                factory.resource(factory.traffic_permission("edge-to-open", source="edge", destination="open")),
                factory.resource(
                    factory.traffic_permission("others-to-secret", source="someone-else", destination="secret")
                ),
            ]
        },
    )
    snapshot = generate(proxy, ctx)
    assert not snapshot.problems, snapshot.problems
    ads.store.set(EDGE, snapshot)


async def test_a_route_to_a_service_the_gateway_may_not_reach_answers_403(tmp_path: Path) -> None:
    listen = free_port()
    async with (
        ads_server() as ads,
        recording_backend("open") as open_backend,
        recording_backend("secret") as secret_backend,
    ):
        ports = {"open": open_backend.port, "secret": secret_backend.port}
        push(ads, factory.resource(factory.mtls_mesh()), listen, ports)
        async with (
            running_envoy(tmp_path, str(EDGE), ads.port, name="edge") as envoy,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{listen}", timeout=10.0) as http,
        ):

            async def open_answers() -> bool:
                return (await http.get("/open")).status_code == 200

            await ready_probe(open_answers, envoy, what="the permitted service through the gateway")

            forbidden = await http.get("/secret")
            assert forbidden.status_code == 403, forbidden.text
            split = [(await http.get("/split")).status_code for _ in range(40)]
            # Half the traffic (weights 1:1) to each: 40 requests all landing on one side has odds of 2^-39.
            assert set(split) == {200, 403}
            assert secret_backend.requests == []
            assert len(open_backend.requests) == 1 + split.count(200)

            # The same permissions on a Mesh without mTLS: not enforced.
            push(ads, factory.resource(factory.mesh()), listen, ports)

            async def secret_answers() -> bool:
                return (await http.get("/secret")).status_code == 200

            await eventually(secret_answers, what="the secret service once mTLS is off")
            assert secret_backend.requests
