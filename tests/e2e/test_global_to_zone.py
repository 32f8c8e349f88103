"""A global and two zones as real processes on the embedded sqlite store, over real gRPC and HTTP."""

from __future__ import annotations

import signal
from typing import Any

import httpx
import pytest

from meshgate.apply_batch import APPLY_PATH
from meshgate.resources import codec, registry
from meshgate.resources.model import Meta, Resource
from meshgate.store.sqlite import SqliteStore
from meshgate.testing import factory
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}


def gateway(name: str, port: int = 8080, hostname: str = "*") -> dict[str, Any]:
    return {
        "type": "MeshGateway",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": name}}],
        "conf": {"listeners": [{"port": port, "protocol": "HTTP", "hostname": hostname}]},
    }


def route(name: str, prefix: str = "/") -> dict[str, Any]:
    return {
        "type": "MeshGatewayRoute",
        "mesh": "default",
        "name": name,
        "selectors": [{"match": {"kuma.io/service": "edge"}}],
        "conf": {
            "http": {
                "rules": [
                    {
                        "matches": [{"path": {"match": "PREFIX", "value": prefix}}],
                        "backends": [{"destination": {"kuma.io/service": "backend"}}],
                    }
                ]
            }
        },
    }


def path_of(doc: dict[str, Any]) -> str:
    plural = {"Mesh": "meshes", "MeshGateway": "meshgateways", "MeshGatewayRoute": "meshgatewayroutes"}
    if doc["type"] == "Mesh":
        return f"/meshes/{doc['name']}"
    return f"/meshes/{doc['mesh']}/{plural[doc['type']]}/{doc['name']}"


async def put(cp: CPProcess, doc: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return await c.put(path_of(doc), json=doc)


async def get(cp: CPProcess, path: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get(path)
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return dict(r.json())


async def store_an_invalid_gateway(procs: ProcessGroup, kds_port: int, *also: dict[str, Any]) -> None:
    """Puts a MeshGateway named `bad` that a validating zone refuses (port 0) straight into the store of a global
    on `kds_port`, as a global with looser rules would hold it, with the Mesh and `also` documents. The global is
    started (to create its store) and stopped again: the caller starts it anew."""
    g = await procs.global_cp(kds_port=kds_port)
    await put(g, MESH)
    g.stop()
    store = SqliteStore(procs.workdir / "global" / "meshgate.db")
    try:
        bad = codec.decode(gateway("bad", port=0))
        await store.create(Resource(bad.kind, Meta(name="bad", mesh="default"), bad.spec))
        for doc in also:
            await store.create(codec.load(doc))
    finally:
        await store.close()


async def start_all(procs: ProcessGroup, kds_port: int = 0) -> tuple[CPProcess, list[CPProcess]]:
    g = await procs.global_cp(kds_port=kds_port)
    zones = [await procs.zone_cp(z, g.ports["kds"]) for z in ("zone-1", "zone-2")]
    return g, zones


async def test_create_update_delete_propagate(procs: ProcessGroup) -> None:
    g, zones = await start_all(procs)
    assert (await put(g, MESH)).status_code == 201
    assert (await put(g, gateway("edge"))).status_code == 201
    for z in zones:
        await eventually(
            lambda z=z: get(z, f"/meshes/default/meshgateways/{in_zone('edge')}"), what=f"create in {z.name}"
        )
        gw = await get(z, f"/meshes/default/meshgateways/{in_zone('edge')}")
        assert gw is not None
        assert gw["labels"]["kuma.io/origin"] == "global"
        assert gw["conf"]["listeners"][0]["port"] == 8080

    assert (await put(g, gateway("edge", port=9090))).status_code == 200

    async def updated(z: CPProcess) -> bool:
        gw = await get(z, f"/meshes/default/meshgateways/{in_zone('edge')}")
        return gw is not None and gw["conf"]["listeners"][0]["port"] == 9090

    for z in zones:
        await eventually(lambda z=z: updated(z), what=f"update in {z.name}")

    async with httpx.AsyncClient(base_url=g.url()) as c:
        assert (await c.delete("/meshes/default/meshgateways/edge")).status_code == 200

    async def gone(z: CPProcess) -> bool:
        return await get(z, f"/meshes/default/meshgateways/{in_zone('edge')}") is None

    for z in zones:
        await eventually(lambda z=z: gone(z), what=f"delete in {z.name}")
    zone_list = await get(g, "/zones")
    assert zone_list is not None
    assert sorted(i["name"] for i in zone_list["items"]) == ["zone-1", "zone-2"]


async def test_zone_writes_of_global_kinds_are_refused(procs: ProcessGroup) -> None:
    _g, zones = await start_all(procs)
    r = await put(zones[0], MESH)
    assert r.status_code == 405
    assert r.json()["status"] == 405


async def test_zone_restart_converges(procs: ProcessGroup) -> None:
    g, zones = await start_all(procs)
    await put(g, MESH)
    await put(g, route("r1"))
    z1 = zones[0]
    await eventually(lambda: get(z1, f"/meshes/default/meshgatewayroutes/{in_zone('r1')}"), what="r1 in zone-1")
    z1.stop()
    await put(g, route("r2"))
    async with httpx.AsyncClient(base_url=g.url()) as c:
        assert (await c.delete("/meshes/default/meshgatewayroutes/r1")).status_code == 200
    z1b = await procs.zone_cp("zone-1", g.ports["kds"])

    async def converged() -> bool:
        listed = await get(z1b, "/meshes/default/meshgatewayroutes")
        return listed is not None and [i["name"] for i in listed["items"]] == [in_zone("r2")]

    await eventually(converged, what="zone-1 converged after restart")


async def test_global_restart_loses_nothing_and_zones_see_no_spurious_delete(procs: ProcessGroup) -> None:
    kds_port = free_port()
    g, zones = await start_all(procs, kds_port=kds_port)
    await put(g, MESH)
    for i in range(5):
        await put(g, route(f"r{i}", f"/p{i}"))

    async def five(z: CPProcess) -> bool:
        listed = await get(z, "/meshes/default/meshgatewayroutes")
        return listed is not None and listed["total"] == 5

    for z in zones:
        await eventually(lambda z=z: five(z), what=f"5 routes in {z.name}")
    before = {z.name: await get(z, "/meshes/default/meshgatewayroutes") for z in zones}

    assert g.stop() == 0  # SIGTERM drains and exits cleanly
    for z in zones:  # zones keep serving their last state while the global is away
        assert await get(z, "/meshes/default/meshgatewayroutes") == before[z.name]

    g2 = await procs.global_cp("global", kds_port=kds_port)
    listed = await get(g2, "/meshes/default/meshgatewayroutes")
    assert listed is not None
    assert listed["total"] == 5

    async def reconnected(z: CPProcess) -> bool:
        st = await get(z, "/status/kds")
        return st is not None and st["synced"] and st["connects"] >= 2

    for z in zones:
        await eventually(lambda z=z: reconnected(z), what=f"{z.name} resynced")
        # Nothing was deleted and re-created, nor even re-written: identical times and versions.
        assert await get(z, "/meshes/default/meshgatewayroutes") == before[z.name]


@pytest.mark.parametrize("tls", [True, False], ids=["authenticated-global", "plaintext-global"])
async def test_a_zone_validates_only_what_a_global_it_cannot_authenticate_sends(procs: ProcessGroup, tls: bool) -> None:
    """A global with looser rules (simulated by writing its store directly) sends an invalid gateway.

    Issue 16 (full sync near decode speed): a zone does not validate again what a global it authenticated
    (TLS, its certificate verified against --kds-ca-cert-file) accepted, so that gateway is stored and ACKed.
    A zone facing a global over plaintext cannot know who validated it, so it validates, NACKs the gateway by
    name and applies the rest, as every zone did before."""
    kds_port = free_port()
    plaintext = () if tls else ("--no-kds-tls-enabled",)
    g = await procs.global_cp("global", *plaintext, kds_port=kds_port)
    await put(g, MESH)
    g.stop()
    store = SqliteStore(procs.workdir / "global" / "meshgate.db")
    try:
        bad = codec.decode(gateway("bad", port=0))  # port 0 fails validation
        good = codec.load(gateway("good"))
        await store.create(Resource(bad.kind, Meta(name="bad", mesh="default"), bad.spec))
        await store.create(good)
    finally:
        await store.close()
    g2 = await procs.global_cp("global", *plaintext, kds_port=kds_port)
    z = await procs.zone_cp("zone-1", g2.ports["kds"])
    assert any(a.startswith("grpcs://" if tls else "grpc://") for a in z.args)
    await eventually(lambda: get(z, f"/meshes/default/meshgateways/{in_zone('good')}"), what="good gateway applied")
    if tls:
        await eventually(lambda: get(z, f"/meshes/default/meshgateways/{in_zone('bad')}"), what="bad gateway applied")
        async with httpx.AsyncClient(base_url=g2.url("diagnostics")) as c:
            metrics = (await c.get("/metrics")).text
        assert 'kds_delta_requests_received{type_url="MeshGateway",confirmation="NACK"} 1' not in metrics
        assert "kds.client.nack" not in z.logs()
        return
    assert await get(z, f"/meshes/default/meshgateways/{in_zone('bad')}") is None
    async with httpx.AsyncClient(base_url=g2.url("diagnostics")) as c:
        metrics = (await c.get("/metrics")).text
    assert 'kds_delta_requests_received{type_url="MeshGateway",confirmation="NACK"} 1' in metrics
    assert f"{in_zone('bad')}.default" in z.logs()
    assert "conf.listeners[0].port" in g2.logs()


async def test_invalid_input_lists_every_violation_and_stores_nothing(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, MESH)
    doc = gateway("edge")
    doc["conf"]["listeners"] = [
        {"port": 0, "protocol": "HTTP", "hostname": "Bad_Host"},
        {"port": 8080, "protocol": "HTTPS"},
    ]
    doc["selectors"] = [{"match": {}}]
    r = await put(g, doc)
    assert r.status_code == 400
    body = r.json()
    fields = {p["field"] for p in body["invalid_parameters"]}
    assert {"conf.listeners[0].port", "conf.listeners[0].hostname", "conf.listeners[1].tls"} <= fields
    assert any(f.startswith("selectors[0]") for f in fields)
    assert body["title"] == "Could not process a resource"
    assert await get(g, "/meshes/default/meshgateways/edge") is None
    listed = await get(g, "/meshes/default/meshgateways")
    assert listed is not None
    assert listed["total"] == 0


async def test_sigterm_exits_zero(procs: ProcessGroup) -> None:
    g, zones = await start_all(procs)
    for z in zones:
        assert z.stop(signal.SIGTERM) == 0
    assert g.stop(signal.SIGINT) == 0


async def test_each_policy_kind_goes_from_the_global_to_a_zone(procs: ProcessGroup) -> None:
    """One resource of each of Kuma 2.7's policy kinds (and ExternalService), PUT on the global, is read back from
    the zone's API under its hash-suffixed name with the same spec; the zone refuses to write them (405)."""
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    assert (await put(g, MESH)).status_code == 201
    docs = [build() for build in factory.POLICY_BUILDERS.values()]
    async with httpx.AsyncClient(base_url=g.url()) as c:
        for doc in docs:
            plural = registry.get(doc["type"]).plural
            response = await c.put(f"/meshes/default/{plural}/{doc['name']}", json=doc)
            assert response.status_code == 201, response.text

    for doc in docs:
        path = f"/meshes/default/{registry.get(doc['type']).plural}/{in_zone(doc['name'])}"
        await eventually(lambda path=path: get(z, path), timeout=30, what=f"{doc['type']} in the zone")
        synced = await get(z, path)
        assert synced is not None
        assert synced["labels"]["kuma.io/display-name"] == doc["name"]
        assert synced["labels"]["kuma.io/origin"] == "global"
        spec = {k: v for k, v in doc.items() if k not in ("type", "mesh", "name")}
        assert {k: synced[k] for k in spec} == spec, doc["type"]

    async with httpx.AsyncClient(base_url=z.url()) as c:
        refused = await c.put("/meshes/default/timeouts/local", json={**factory.timeout(), "name": "local"})
    assert refused.status_code == 405


async def test_a_bulk_apply_reaches_the_zone(procs: ProcessGroup) -> None:
    """One `POST /_apply` of a Mesh, a gateway and 300 routes: one transaction on the global, and every route
    in the zone's store over KDS."""
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    docs = [MESH, gateway("edge"), *(route(f"r{i:03d}", prefix=f"/r{i}") for i in range(300))]
    async with httpx.AsyncClient(base_url=g.url(), timeout=60) as c:
        applied = await c.post(APPLY_PATH, json={"items": docs})
    assert applied.status_code == 200, applied.text
    assert [i["status"] for i in applied.json()["items"]] == ["created"] * len(docs)

    async def all_routes() -> bool:
        listed = await get(z, "/meshes/default/meshgatewayroutes?size=1")
        return listed is not None and listed["total"] == 300

    await eventually(all_routes, what="300 bulk-applied routes in zone-1")
    synced = await get(z, f"/meshes/default/meshgatewayroutes/{in_zone('r123')}")
    assert synced is not None
    assert synced["labels"]["kuma.io/origin"] == "global"
    assert synced["conf"]["http"]["rules"][0]["matches"][0]["path"]["value"] == "/r123"
