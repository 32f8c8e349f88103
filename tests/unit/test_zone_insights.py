"""Zone insights as JSON, from a hand-built StreamRegistry and a fixed `Now`: Kuma's shapes plus ours."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from global_cp.insights import (
    dataplane_overview,
    global_insight,
    zone_overview,
    zone_status,
)
from meshgate.resources import codec
from meshgate.resources.model import LABEL_ZONE
from tests.rest_support import dataplane
from tests.support.zones import POLICY, registry_with_traffic, zone_record


def test_zone_overview_has_kumas_fields_and_ours() -> None:
    streams, now = registry_with_traffic()
    doc = zone_overview("zone-1", zone_record("zone-1"), streams, now, POLICY)
    assert doc["type"] == "ZoneOverview"
    assert doc["name"] == "zone-1"
    assert doc["creationTime"] == "2026-01-01T12:00:00Z"
    assert doc["zone"] == {"enabled": True}
    assert doc["status"] == "online"  # an open stream and no ping seen yet
    assert doc["warnings"] == []
    assert doc["healthCheck"] == {"lastSeen": None, "interval": 1.0}
    subs = doc["zoneInsight"]["subscriptions"]
    assert [s["id"] for s in subs] == ["zone-1:global-to-zone:1", "zone-1:global-to-zone:2"]  # newest last
    assert "disconnectTime" in subs[0]
    assert "disconnectTime" not in subs[1]
    current = subs[1]
    assert current["globalInstanceId"] == "global-1"
    assert current["zoneInstanceId"] == "zone-1-cp"
    assert current["direction"] == "global-to-zone"
    status = current["status"]
    assert status["lastUpdateTime"] == "2026-01-01T12:00:00Z"
    # Kuma's KDSServiceStats are uint64: protojson writes them as strings.
    assert status["total"] == {"responsesSent": "3", "responsesAcknowledged": "1", "responsesRejected": "1"}
    stat = status["stat"]["Thing"]
    assert stat["responsesSent"] == "3"
    assert stat["lastNonce"] == "3"
    assert stat["inFlightNonce"] == "3"
    assert stat["inFlightSince"] == "2026-01-01T12:00:04Z"  # sent at mono 104, now is mono 110 = T0+10s
    assert stat["lastAckLatencyMs"] == 500.0
    nack = stat["lastNack"]
    assert nack["nonce"] == "2"
    assert nack["resources"] == {"b.default": "value: must not be bad"}
    assert "b.default" in nack["error"]
    assert nack["at"] == "2026-01-01T12:00:01.500000Z"


def test_status_online_offline_disabled() -> None:
    streams, now = registry_with_traffic()
    assert zone_status(streams, "zone-1", True, now, POLICY) == "online"
    streams.last_health_check["zone-1"] = now.wall - timedelta(seconds=2.9)
    assert zone_status(streams, "zone-1", True, now, POLICY) == "online"
    streams.last_health_check["zone-1"] = now.wall - timedelta(seconds=3)
    assert zone_status(streams, "zone-1", True, now, POLICY) == "offline"  # three pings missed
    assert zone_status(streams, "zone-1", False, now, POLICY) == "disabled"
    assert zone_status(streams, "zone-2", True, now, POLICY) == "offline"  # never connected
    for s in streams.by_zone("zone-1"):
        streams.close(s)
    streams.last_health_check["zone-1"] = now.wall
    assert zone_status(streams, "zone-1", True, now, POLICY) == "offline"  # pings alone are not a stream


def test_disabled_record_and_warnings_show() -> None:
    streams, now = registry_with_traffic()
    streams.by_zone("zone-1")[0].warn("Thing response nonce 3 un-ACKed for 12.0s (stall threshold 10s)")
    streams.last_health_check["zone-1"] = now.wall - timedelta(seconds=1)
    doc = zone_overview("zone-1", zone_record("zone-1", enabled=False), streams, now, POLICY)
    assert doc["status"] == "disabled"
    assert doc["zone"] == {"enabled": False}
    assert doc["warnings"] == ["Thing response nonce 3 un-ACKed for 12.0s (stall threshold 10s)"]
    assert doc["healthCheck"]["lastSeen"] == "2026-01-01T12:00:09Z"
    assert doc["zoneInsight"]["healthCheck"] == {"time": "2026-01-01T12:00:09Z"}
    assert zone_overview("zone-1", zone_record("zone-1", enabled=None), streams, now, POLICY)["zone"] == {
        "enabled": True
    }


def test_global_insight_counts_zones_online() -> None:
    streams, now = registry_with_traffic()
    records = {"zone-1": zone_record("zone-1"), "zone-2": zone_record("zone-2")}
    doc = global_insight({"Mesh": 2, "MeshGateway": 5}, records, streams, now, POLICY)
    assert doc["type"] == "GlobalInsight"
    assert doc["createdAt"] == "2026-01-01T12:00:10Z"
    assert doc["meshes"] == {"total": 2}
    assert doc["resources"] == {"Mesh": {"total": 2}, "MeshGateway": {"total": 5}}
    assert doc["zones"] == {"controlPlanes": {"online": 1, "total": 2}}
    assert doc["instanceId"] == "global-1"
    assert doc["leader"] is True  # a single global always runs the singleton work
    streams.leader = lambda: False
    assert global_insight({}, records, streams, now, POLICY)["leader"] is False


def test_dataplane_of_an_offline_zone_is_never_healthy() -> None:
    streams, now = registry_with_traffic()
    records = {"zone-1": zone_record("zone-1"), "zone-2": zone_record("zone-2")}

    def overview(zone: str | None) -> dict[str, Any]:
        labels = {LABEL_ZONE: zone, "kuma.io/origin": "zone"} if zone else {}
        return dataplane_overview(codec.load(dataplane("dp-1", **labels)), records, streams, now, POLICY)

    online = overview("zone-1")
    assert online["type"] == "DataplaneOverview"
    assert online["zone"] == "zone-1"
    assert online["zoneStatus"] == "online"
    assert "networking" in online["dataplane"]
    assert overview("zone-2")["zoneStatus"] == "offline"
    assert overview(None)["zoneStatus"] == "local"
    streams.last_health_check["zone-1"] = now.wall - timedelta(seconds=30)
    assert overview("zone-1")["zoneStatus"] == "offline"
