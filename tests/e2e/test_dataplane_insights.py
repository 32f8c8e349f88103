"""The global knows each proxy's own connection state: a zone writes a DataplaneInsight per proxy from its xDS
streams and syncs it up, and the global's `dataplanes/_overview` serves it as `dataplaneInsight` (as Kuma does).

Real processes: a global, a zone, and a real Envoy. With meshgate-dp (secure defaults: TLS and a data plane
token) the proxy registers its Dataplane, shows online on the global with its subscription, and its Dataplane
and insight leave the global together when it stops (it deregisters). A Dataplane put through the zone's API
outlives its proxy (a bare Envoy on a zone without xDS authentication): on the global it shows online, then
offline with a `disconnectTime`, once the Envoy stops.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from meshgate.testing import factory
from meshgate.testing.dp import zone_dp
from meshgate.testing.envoy import running_envoy
from meshgate.testing.processes import free_port
from tests.e2e.test_global_to_zone import get
from tests.support.processes import CPProcess, ProcessGroup
from tests.support.wait import eventually

pytestmark = pytest.mark.e2e


async def put(cp: CPProcess, path: str, doc: dict[str, Any]) -> None:
    async with httpx.AsyncClient(base_url=cp.url()) as c:
        r = await c.put(path, json=doc)
    assert r.status_code in (200, 201), r.text


async def overview(cp: CPProcess, display_name: str) -> dict[str, Any] | None:
    """The global's DataplaneOverview of the Dataplane a zone registered as `display_name`."""
    body = await get(cp, "/meshes/default/dataplanes/_overview")
    assert body is not None
    for item in body["items"]:
        if item["labels"].get("kuma.io/display-name") == display_name:
            return dict(item)
    return None


def subscriptions(item: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list(((item or {}).get("dataplaneInsight") or {}).get("subscriptions", []))


async def test_the_global_shows_a_proxy_online_then_gone_with_its_dataplane(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, "/meshes/default", factory.mesh())
    z = await procs.zone_cp("zone-1", g.ports["kds"])
    dp = await zone_dp(procs, z, json.dumps(factory.dataplane("app-1", "app", address="127.0.0.1", port=free_port())))
    try:

        async def online() -> bool:
            subs = subscriptions(await overview(g, "app-1"))
            return len(subs) == 1 and "disconnectTime" not in subs[0]

        await eventually(online, timeout=30, what=f"app-1 online on the global\n{dp.logs()[-2000:]}")
        item = await overview(g, "app-1")
        assert item is not None
        (sub,) = subscriptions(item)
        assert (item["zone"], item["zoneStatus"]) == ("zone-1", "online")
        assert sub["id"]
        assert sub["controlPlaneInstanceId"]
        assert sub["connectTime"]
        assert "generation" not in sub  # local to the zone, never sent up (Kuma zeroes it)

        # The kind itself, read-only, under the Dataplane's name on the global and its own name in the zone.
        listed = await get(g, "/meshes/default/dataplane-insights")
        assert listed is not None
        (insight,) = listed["items"]
        assert insight["name"] == item["name"]
        assert insight["labels"]["kuma.io/zone"] == "zone-1"
        own = await get(z, "/meshes/default/dataplane-insights/app-1")
        assert own is not None
        assert own["subscriptions"][0]["id"] == sub["id"]
        async with httpx.AsyncClient(base_url=g.url()) as c:
            assert (await c.delete(f"/meshes/default/dataplane-insights/{item['name']}")).status_code == 405
    finally:
        dp.stop()

    # meshgate-dp deregisters its Dataplane when it stops; the insight goes with it, on the zone and the global.
    async def gone() -> bool:
        insights = await get(g, "/meshes/default/dataplane-insights")
        return await overview(g, "app-1") is None and insights is not None and insights["total"] == 0

    await eventually(gone, timeout=30, what="app-1 and its insight gone from the global")
    assert (await get(z, "/meshes/default/dataplane-insights"))["total"] == 0  # type: ignore[index]


async def test_a_dataplane_that_outlives_its_proxy_shows_offline_on_the_global(procs: ProcessGroup) -> None:
    g = await procs.global_cp()
    await put(g, "/meshes/default", factory.mesh())
    z = await procs.zone_cp("zone-1", g.ports["kds"], "--dp-server-authn", "none", "--no-dp-server-tls")
    await eventually(lambda: get(z, "/meshes/default"), what="the Mesh on zone-1")
    await put(
        z,
        "/meshes/default/dataplanes/web-1",
        factory.dataplane("web-1", "web", address="127.0.0.1", port=free_port()),
    )
    async with running_envoy(procs.workdir, "default.web-1", z.ports["xds"], name="web-1") as envoy:

        async def online() -> bool:
            subs = subscriptions(await overview(g, "web-1"))
            return len(subs) == 1 and "disconnectTime" not in subs[0]

        await eventually(online, timeout=30, what=f"web-1 online on the global\n{envoy.logs()}")
        (connected,) = subscriptions(await overview(g, "web-1"))

    async def offline() -> bool:
        subs = subscriptions(await overview(g, "web-1"))
        return len(subs) == 1 and "disconnectTime" in subs[0]

    await eventually(offline, timeout=30, what="web-1 offline on the global")
    item = await overview(g, "web-1")
    (sub,) = subscriptions(item)
    assert sub["id"] == connected["id"]
    assert sub["connectTime"] == connected["connectTime"] <= sub["disconnectTime"]
    assert int(sub["status"]["total"]["responsesSent"]) > 0
    assert item is not None
    assert item["zoneStatus"] == "online"
