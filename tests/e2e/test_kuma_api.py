"""What kumactl 2.7 calls for a gateway user, answered in Kuma's shapes by a real global and a real zone.

The paths and shapes are Kuma v2.7.29's: `/` (pkg/api-server/index_endpoints.go, types/index.go), `/config`
(config_ws.go), `/zones+insights` and `/meshes/{mesh}/dataplanes+insights` (resource_endpoints.go, the legacy
names of `_overview` that kumactl's resource clients call), `/meshes/{mesh}/meshgateways/{name}/dataplanes`
(inspect_endpoints.go, types/inspect.go). The gateway's proxy is a real meshgate-dp with its Envoy, so the
DataplaneInsight the zone shows comes from a live xDS stream.
"""

from __future__ import annotations

import importlib.metadata
import json
from typing import Any

import httpx
import pytest

from tests.e2e.test_api_schemathesis import caller_headers
from tests.e2e.test_gateway import backend_dataplane, gateway
from tests.support.dp import zone_dp
from tests.support.names import in_zone
from tests.support.processes import CPProcess, ProcessGroup, free_port, issue_zone_token
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e

EDGE = {
    "type": "Dataplane",
    "mesh": "default",
    "name": "edge-1",
    "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}},
}
COUNTERS = {"responsesSent", "responsesAcknowledged", "responsesRejected"}
NEW_READS = [
    "/config",
    "/meshes/default/dataplanes+insights",
    "/meshes/default/dataplanes+insights/edge-1",
    "/meshes/default/dataplanes/_overview",
    "/dataplanes+insights",
    "/meshes/default/meshgateways/edge/dataplanes",
]
GLOBAL_READS = ["/zones+insights", "/zones+insights/zone-1"]


async def get(cp: CPProcess, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=30, headers=headers or {}) as c:
        return await c.get(path)


async def body(cp: CPProcess, path: str) -> Any:
    r = await get(cp, path)
    assert r.status_code == 200, (cp.name, path, r.status_code, r.text)
    return r.json()


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url(), timeout=30, headers=cp.admin_headers()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


def assert_counters(counts: dict[str, str]) -> None:
    """DiscoveryServiceStats / KDSServiceStats: uint64 counters, written as strings as protojson does."""
    assert set(counts) == COUNTERS
    assert all(isinstance(v, str) and v.isdigit() for v in counts.values()), counts


async def edge_connected(z: CPProcess) -> bool:
    r = await get(z, "/meshes/default/dataplanes+insights/edge-1")
    if r.status_code != 200:
        return False
    subs = r.json().get("dataplaneInsight", {}).get("subscriptions", [])
    return bool(subs) and "disconnectTime" not in subs[-1] and subs[-1]["status"]["lds"]["responsesAcknowledged"] != "0"


async def test_kumactl_paths_answer_in_kumas_shapes_on_global_and_zone(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    await put(g, "/meshes/default", {"type": "Mesh", "name": "default"})
    await put(g, "/meshes/default/meshgateways/edge", gateway(free_port()))
    other = gateway(free_port()) | {"name": "other", "selectors": [{"match": {"kuma.io/service": "other"}}]}
    await put(g, "/meshes/default/meshgateways/other", other)
    await eventually(
        lambda: _ok(get(z, f"/meshes/default/meshgateways/{in_zone('other')}")), what="the gateways in zone-1"
    )
    await put(z, "/meshes/default/dataplanes/echo-a", backend_dataplane("echo-a", free_port()))
    dp = await zone_dp(procs, z, json.dumps(EDGE))
    try:
        await eventually(lambda: edge_connected(z), timeout=60, what=f"edge-1's xDS stream\n{dp.logs()[-2000:]}")
        await _index(g, z)
        await _zone_dataplanes(z)
        await _gateway_dataplanes(z, "edge-1")
        await _global_dataplanes_and_zones(g)
    finally:
        dp.stop()


async def _ok(response: Any) -> bool:
    return bool((await response).status_code == 200)


async def _index(g: CPProcess, z: CPProcess) -> None:
    """types.IndexResponse: hostname, tagline, product, version, instanceId, clusterId (+ basedOnKuma); no
    `gui`, which Kuma omits when it serves none."""
    for cp in (g, z):
        index = await body(cp, "/")
        assert set(index) == {"hostname", "tagline", "product", "version", "instanceId", "clusterId", "basedOnKuma"}
        assert index["version"] == importlib.metadata.version("meshgate")
        assert index["basedOnKuma"] == "2.7"
        assert (index["tagline"], index["product"]) == ("Kuma", "meshgate")  # kumactl config validate.go
        assert index["instanceId"].startswith(index["hostname"])


async def _zone_dataplanes(z: CPProcess) -> None:
    listed = await body(z, "/meshes/default/dataplanes+insights")
    assert (listed["total"], listed["next"]) == (2, None)
    by_name = {item["name"]: item for item in listed["items"]}
    edge, echo = by_name["edge-1"], by_name["echo-a"]
    for item in (edge, echo):
        assert (item["type"], item["mesh"]) == ("DataplaneOverview", "default")
        assert item["creationTime"].endswith("Z")
        assert item["modificationTime"].endswith("Z")
        assert "networking" in item["dataplane"]
        assert "type" not in item["dataplane"]
    assert edge["dataplane"]["networking"]["gateway"] == {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}}
    # A Dataplane put through the API has no proxy behind it: no DataplaneInsight, as in Kuma.
    assert "dataplaneInsight" not in echo

    (subscription,) = edge["dataplaneInsight"]["subscriptions"]
    index = await body(z, "/")
    assert subscription["controlPlaneInstanceId"] == index["instanceId"]
    assert subscription["id"]
    assert subscription["connectTime"].endswith("Z")
    assert "disconnectTime" not in subscription  # online, as kumactl judges it
    status = subscription["status"]
    assert set(status) == {"lastUpdateTime", "total", "cds", "eds", "lds", "rds"}
    for name in ("total", "cds", "eds", "lds", "rds"):
        assert_counters(status[name])
    assert int(status["total"]["responsesSent"]) >= int(status["lds"]["responsesSent"]) >= 1
    assert status["total"]["responsesRejected"] == "0"

    # Both names, one answer; the item and the list agree; across meshes too.
    assert (await body(z, "/meshes/default/dataplanes/_overview"))["total"] == 2
    one = await body(z, "/meshes/default/dataplanes+insights/edge-1")
    assert one["dataplane"] == edge["dataplane"]
    assert one["type"] == "DataplaneOverview"
    assert (await body(z, "/meshes/default/dataplanes/edge-1/_overview"))["name"] == "edge-1"
    assert {i["name"] for i in (await body(z, "/dataplanes+insights"))["items"]} == {"edge-1", "echo-a"}

    # kumactl inspect dataplanes --gateway / --tag, and Kuma's other filters and paging.
    async def names(query: str) -> list[str]:
        return [i["name"] for i in (await body(z, f"/meshes/default/dataplanes+insights?{query}"))["items"]]

    assert await names("gateway=true") == ["edge-1"]
    assert await names("gateway=builtin") == ["edge-1"]
    assert await names("gateway=delegated") == []
    assert await names("gateway=false") == ["echo-a"]
    assert await names("tag=kuma.io/service:edg") == ["edge-1"]  # a substring, as Kuma's fuzzy match
    assert await names("tag=kuma.io/service:echo-a&tag=kuma.io/protocol:http") == []
    assert await names("name=echo") == ["echo-a"]
    assert await names("tag=kuma.io/service:echo") == ["echo-a"]
    assert sorted(await names("zone=zone-1")) == ["echo-a", "edge-1"]  # a zone's own Dataplanes are unlabelled
    assert await names("zone=zone-2") == []
    page = await body(z, "/meshes/default/dataplanes+insights?size=1")
    assert page["total"] == 2
    assert len(page["items"]) == 1
    assert "offset=1" in page["next"]

    bad = await get(z, "/meshes/default/dataplanes+insights?gateway=maybe")
    assert bad.status_code == 400
    assert bad.json()["invalid_parameters"] == [
        {"field": "gateway", "reason": "should use `true`, `false`, 'builtin' or 'delegated' instead of maybe"}
    ]
    assert (await get(z, "/meshes/nope/dataplanes+insights")).status_code == 404
    assert (await get(z, "/meshes/default/dataplanes+insights/nope")).status_code == 404


def _gw(cp: CPProcess, name: str) -> str:
    """The global's gateway `name` as `cp` stores it: hash-suffixed on a zone, as a Kuma zone holds it."""
    return in_zone(name) if cp.module == "zone_cp" else name


async def _gateway_dataplanes(cp: CPProcess, edge_name: str) -> None:
    """types.GatewayDataplanesInspectEntryList: exactly `total` and `items` of `{"dataplane": {mesh, name}}`."""
    assert await body(cp, f"/meshes/default/meshgateways/{_gw(cp, 'edge')}/dataplanes") == {
        "total": 1,
        "items": [{"dataplane": {"mesh": "default", "name": edge_name}}],
    }
    assert await body(cp, f"/meshes/default/meshgateways/{_gw(cp, 'other')}/dataplanes") == {"total": 0, "items": []}
    assert (await get(cp, "/meshes/default/meshgateways/nope/dataplanes")).status_code == 404
    assert (await get(cp, f"/meshes/nope/meshgateways/{_gw(cp, 'edge')}/dataplanes")).status_code == 404


async def _global_dataplanes_and_zones(g: CPProcess) -> None:
    async def synced() -> bool:
        r = await get(g, "/meshes/default/dataplanes+insights?gateway=builtin")
        # With its DataplaneInsight, which the zone writes once the proxy's stream opens and syncs up after.
        return r.status_code == 200 and r.json()["total"] == 1 and "dataplaneInsight" in r.json()["items"][0]

    await eventually(synced, timeout=30, what="edge-1 on the global")
    (edge,) = (await body(g, "/meshes/default/dataplanes+insights?gateway=builtin"))["items"]
    # The global stores a zone's Dataplane under a hash-suffixed name, as Kuma's global does.
    assert edge["name"].startswith("edge-1")
    assert edge["type"] == "DataplaneOverview"
    assert edge["labels"]["kuma.io/zone"] == "zone-1"
    assert (edge["zone"], edge["zoneStatus"]) == ("zone-1", "online")
    # The zone syncs the proxy's DataplaneInsight up: the global shows its own subscription.
    (subscription,) = edge["dataplaneInsight"]["subscriptions"]
    assert subscription["connectTime"]
    assert "disconnectTime" not in subscription
    await _gateway_dataplanes(g, edge["name"])

    # kumactl inspect zones: the same ZoneOverview list as /zones/_overview.
    zones = await body(g, "/zones+insights")
    assert (zones["total"], zones["next"]) == (1, None)
    (zone,) = zones["items"]
    assert (zone["type"], zone["name"], zone["zone"], zone["status"]) == (
        "ZoneOverview",
        "zone-1",
        {"enabled": True},
        "online",
    )
    assert zone["creationTime"].endswith("Z")
    subscriptions = zone["zoneInsight"]["subscriptions"]
    assert subscriptions
    for sub in subscriptions:
        assert {"id", "globalInstanceId", "connectTime", "status", "zoneInstanceId"} <= set(sub)
        assert_counters(sub["status"]["total"])
        for stat in sub["status"]["stat"].values():
            assert set(stat) >= COUNTERS
    assert [i["name"] for i in (await body(g, "/zones/_overview"))["items"]] == ["zone-1"]
    one = await body(g, "/zones+insights/zone-1")
    assert (one["type"], one["name"]) == ("ZoneOverview", "zone-1")
    assert (await get(g, "/zones+insights/nope")).status_code == 404


async def test_config_shows_settings_not_secrets_and_new_paths_need_a_token(procs: ProcessGroup) -> None:
    """With `--api-localhost-is-admin=false` a loopback caller without a token is anonymous, as a remote one:
    401 on every new path (the index stays public). A read-only user reads them all. `/config` of a zone given
    its token inline shows `*****` for it, and no token or key appears in either answer."""
    g = await procs.global_cp("global", "--api-localhost-is-admin=false")
    token = await issue_zone_token(g, "zone-1")
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--api-localhost-is-admin=false", "--cp-token", token)
    admin = g.admin_headers()
    await eventually(
        lambda: _online(g, admin), timeout=30, what="zone-1 online with its inline token\n" + z.logs()[-2000:]
    )
    async with httpx.AsyncClient(base_url=g.url(), headers=admin, timeout=30) as http:
        assert (await http.put("/meshes/default", json={"type": "Mesh", "name": "default"})).status_code == 201
        assert (await http.put("/meshes/default/meshgateways/edge", json=gateway(free_port()))).status_code == 201

    for cp, extra in ((g, GLOBAL_READS), (z, [])):
        assert (await get(cp, "/")).status_code == 200
        for path in NEW_READS + extra:
            r = await get(cp, path)
            assert r.status_code == 401, (cp.name, path, r.status_code, r.text)
            assert "Authorization: Bearer" in r.json()["detail"]
        reader = await caller_headers(cp, "read-only-user")
        assert (await get(cp, "/config", reader)).status_code == 200
        assert (await get(cp, "/meshes/default/dataplanes+insights", reader)).status_code == 200
        assert (await get(cp, f"/meshes/default/meshgateways/{_gw(cp, 'edge')}/dataplanes", reader)).status_code == 200
        for path in extra:
            assert (await get(cp, path, reader)).status_code == 200, path

    g_config = (await get(g, "/config", admin)).json()
    z_config = (await get(z, "/config", z.admin_headers())).json()
    assert (g_config["mode"], g_config["environment"]) == ("global", "universal")
    assert g_config["multizone"]["global"]["kds"]["tlsEnabled"] is True
    assert g_config["multizone"]["global"]["kds"]["auth"]["type"] == "cp-token"
    assert g_config["store"] == {"type": "sqlite", "sqlite": {"path": str(procs.workdir / "global" / "meshgate.db")}}
    assert g_config["apiServer"]["authn"]["localhostIsAdmin"] is False
    assert (z_config["mode"], z_config["environment"]) == ("zone", "universal")
    zone_kds = z_config["multizone"]["zone"]
    assert zone_kds["name"] == "zone-1"
    assert zone_kds["globalAddress"] == f"grpcs://127.0.0.1:{g.ports['kds']}"
    assert zone_kds["kds"]["auth"] == {"cpToken": "*****", "cpTokenPath": ""}
    assert zone_kds["kds"]["rootCaFile"].endswith("kds-ca.crt")
    assert z_config["dpServer"]["authn"] == {"dpProxy": {"type": "dpToken"}}
    assert z_config["dnsServer"]["domain"] == "mesh"

    secrets = [token, *(h["Authorization"].removeprefix("Bearer ") for h in (admin, z.admin_headers()))]
    for config in (g_config, z_config):
        text = json.dumps(config)
        for secret in secrets:
            assert secret not in text
        for part in (s for secret in secrets for s in secret.split(".")):
            assert part not in text  # not even a JWT's header, claims or signature on their own
        assert "-----BEGIN" not in text
        assert "eyJ" not in text


async def _online(g: CPProcess, headers: dict[str, str]) -> bool:
    r = await get(g, "/zones+insights/zone-1", headers)
    return r.status_code == 200 and r.json()["status"] == "online"
