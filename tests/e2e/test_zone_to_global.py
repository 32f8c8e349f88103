"""Zone to global: Dataplanes (and zone-origin MeshGateways) created in zones, synced up to the global."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.kds.envelope import to_wire
from meshgate.kds.sender import rejected_names
from meshgate.resources import codec, registry
from meshgate.testing import factory
from tests.support.kds_peer import kds_channel, kds_metadata
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

MESH = {"type": "Mesh", "name": "default"}


def dataplane(name: str, address: str = "10.0.0.1", service: str = "web") -> dict[str, Any]:
    return factory.dataplane(name, service, address=address)


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        return await c.put(path, json=doc)


async def get(cp: CPProcess, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.get(path)
    r.raise_for_status()
    return dict(r.json())


async def global_dataplanes(g: CPProcess, zone: str | None = None) -> dict[str, dict[str, Any]]:
    query = f"?zone={zone}" if zone else ""
    listed = await get(g, f"/meshes/default/dataplanes{query}")
    return {i["labels"]["kuma.io/display-name"] + "@" + i["labels"]["kuma.io/zone"]: i for i in listed["items"]}


async def test_dataplanes_from_both_zones_appear_with_labels_and_leave(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    z2 = await procs.zone_cp("zone-2", g.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="mesh in zone-1")
    await eventually(lambda: get(z2, "/meshes/default"), what="mesh in zone-2")
    assert (await put(z1, "/meshes/default/dataplanes/web-1", dataplane("web-1"))).status_code == 201
    assert (await put(z2, "/meshes/default/dataplanes/web-1", dataplane("web-1", "10.0.0.2"))).status_code == 201
    assert (await put(z2, "/meshes/default/dataplanes/api-1", dataplane("api-1", service="api"))).status_code == 201

    async def three() -> bool:
        return set(await global_dataplanes(g)) == {"web-1@zone-1", "web-1@zone-2", "api-1@zone-2"}

    await eventually(three, what="three dataplanes on the global")
    dps = await global_dataplanes(g)
    web1 = dps["web-1@zone-1"]
    assert web1["labels"] == {"kuma.io/origin": "zone", "kuma.io/zone": "zone-1", "kuma.io/display-name": "web-1"}
    assert web1["name"].startswith("web-1-")
    assert web1["name"] != dps["web-1@zone-2"]["name"]  # hash-suffixed per zone: no collision
    assert web1["networking"]["address"] == "10.0.0.1"
    assert set(await global_dataplanes(g, "zone-2")) == {"web-1@zone-2", "api-1@zone-2"}

    # The global refuses Dataplane writes.
    r = await put(g, "/meshes/default/dataplanes/x", dataplane("x"))
    assert r.status_code == 405

    # Deleted in the zone: gone from the global.
    async with httpx.AsyncClient(base_url=z2.url()) as c:
        assert (await c.delete("/meshes/default/dataplanes/api-1")).status_code == 200

    async def two() -> bool:
        return set(await global_dataplanes(g)) == {"web-1@zone-1", "web-1@zone-2"}

    await eventually(two, what="api-1 removed from the global")

    # zone-2 comes back with an empty store (it lost its data): the global converges to exactly that.
    z2.stop()
    z2b = await procs.zone_cp("zone-2", g.ports["kds"], "--store", "memory")
    await eventually(lambda: get(z2b, "/meshes/default"), what="zone-2 resynced")

    async def only_zone_1() -> bool:
        return set(await global_dataplanes(g)) == {"web-1@zone-1"}

    await eventually(only_zone_1, what="zone-2's stale dataplane removed")


async def test_zone_restart_resumes_without_duplicates(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="mesh in zone-1")
    for i in range(3):
        await put(z1, f"/meshes/default/dataplanes/dp-{i}", dataplane(f"dp-{i}", f"10.0.0.{i + 1}"))

    async def three() -> bool:
        return len(await global_dataplanes(g)) == 3

    await eventually(three, what="three dataplanes")
    before = await global_dataplanes(g)
    z1.stop()
    z1b = await procs.zone_cp("zone-1", g.ports["kds"])  # same data dir: resumes from versions
    await put(z1b, "/meshes/default/dataplanes/dp-3", dataplane("dp-3", "10.0.0.9"))

    async def four() -> bool:
        return len(await global_dataplanes(g)) == 4

    await eventually(four, what="the new dataplane after the restart")
    after = await global_dataplanes(g)
    for key, item in before.items():  # untouched: not deleted and re-created, not even re-written
        assert after[key]["modificationTime"] == item["modificationTime"]


async def test_zone_origin_meshgateway_goes_up_but_not_out(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    z2 = await procs.zone_cp("zone-2", g.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="mesh in zone-1")
    gw = {
        "type": "MeshGateway",
        "mesh": "default",
        "name": "local-gw",
        "selectors": [{"match": {"kuma.io/service": "local-gw"}}],
        "conf": {"listeners": [{"port": 8080, "protocol": "HTTP"}]},
    }
    assert (await put(z1, "/meshes/default/meshgateways/local-gw", gw)).status_code == 201

    async def on_global() -> bool:
        items = (await get(g, "/meshes/default/meshgateways"))["items"]
        return any(i["labels"].get("kuma.io/display-name") == "local-gw" for i in items)

    await eventually(on_global, what="zone gateway on the global")
    (item,) = (await get(g, "/meshes/default/meshgateways"))["items"]
    assert item["labels"]["kuma.io/zone"] == "zone-1"
    # Not fanned out to other zones: zone-2 never sees it (it has synced the kind by now).
    await eventually(lambda: _synced(z2), what="zone-2 synced")
    assert (await get(z2, "/meshes/default/meshgateways"))["total"] == 0


async def _synced(z: CPProcess) -> bool:
    return bool((await get(z, "/status/kds"))["synced"])


async def test_forged_zone_attribution_is_refused_and_counted(procs: ProcessGroup) -> None:
    """A client claiming to be zone-1 sends a Dataplane labelled as zone-2's: NACKed by name, not stored."""
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    forged = codec.load(dataplane("evil")).with_meta(
        labels={"kuma.io/origin": "zone", "kuma.io/zone": "zone-2", "kuma.io/display-name": "evil"}
    )
    honest = codec.load(dataplane("fine")).with_meta(
        labels={"kuma.io/origin": "zone", "kuma.io/zone": "zone-1", "kuma.io/display-name": "fine"}
    )
    async with kds_channel(g) as channel:
        metadata = await kds_metadata(g, "zone-1")
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(metadata=metadata)
        subscribed: set[str] = set()
        while subscribed != {d.name for d in registry.kinds_sent_to_global()}:
            req = await call.read()
            assert isinstance(req, discovery_pb2.DeltaDiscoveryRequest)
            subscribed.add(req.type_url)
        await call.write(
            discovery_pb2.DeltaDiscoveryResponse(
                type_url="Dataplane", nonce="1", resources=[to_wire(forged), to_wire(honest)]
            )
        )
        nack = await call.read()
        assert isinstance(nack, discovery_pb2.DeltaDiscoveryRequest)
        call.cancel()
    assert nack.response_nonce == "1"
    reasons = rejected_names(nack)
    assert set(reasons) == {"evil.default"}
    assert "claims zone 'zone-2', but this stream belongs to zone 'zone-1'" in reasons["evil.default"]
    names = {i["labels"]["kuma.io/display-name"] for i in (await get(g, "/meshes/default/dataplanes"))["items"]}
    assert names == {"fine"}
    async with httpx.AsyncClient(base_url=g.url("diagnostics")) as c:
        metrics = (await c.get("/metrics")).text
    assert 'meshgate_kds_rejected_resources{zone="zone-1",type_url="Dataplane"} 1' in metrics


async def test_a_global_gateway_named_like_a_zone_local_one_lands_beside_it_hash_suffixed(
    procs: ProcessGroup,
) -> None:
    """Kuma 2.7's names (pkg/kds/context/context.go, HashSuffixMapper): the global's `edge` reaches a zone
    with `hash-suffix` as `edge-<hash>`, labelled with its display name, so a gateway the zone made itself
    under the same name is never clobbered, and nothing is NACKed."""
    g = await procs.global_cp()
    await put(g, "/meshes/default", MESH)
    z1 = await procs.zone_cp("zone-1", g.ports["kds"])
    await eventually(lambda: get(z1, "/meshes/default"), what="mesh in zone-1")
    local = {
        "type": "MeshGateway",
        "mesh": "default",
        "name": "edge",
        "selectors": [{"match": {"kuma.io/service": "local"}}],
        "conf": {"listeners": [{"port": 9000, "protocol": "HTTP"}]},
    }
    assert (await put(z1, "/meshes/default/meshgateways/edge", local)).status_code == 201
    global_gw = {**local, "selectors": [{"match": {"kuma.io/service": "edge"}}]}
    assert (await put(g, "/meshes/default/meshgateways/edge", global_gw)).status_code == 201

    synced = f"/meshes/default/meshgateways/{in_zone('edge')}"
    await eventually(lambda: get(z1, synced), what="the global's edge in zone-1")
    doc = await get(z1, synced)
    assert doc["labels"]["kuma.io/display-name"] == "edge"
    assert doc["labels"]["kuma.io/origin"] == "global"
    assert doc["selectors"] == global_gw["selectors"]
    kept = await get(z1, "/meshes/default/meshgateways/edge")
    assert kept["selectors"] == local["selectors"]  # the local one is untouched
    async with httpx.AsyncClient(base_url=g.url("diagnostics")) as c:
        text = (await c.get("/metrics")).text
    assert 'confirmation="NACK"' not in text
