"""`meshgatectl inspect` renderers over the JSON the global really builds (from a hand-built registry)."""

from __future__ import annotations

from datetime import timedelta

from global_cp.insights import zone_overview
from meshgate.cli.inspect import render_vips, render_zone, render_zones
from tests.support.zones import POLICY, registry_with_traffic, zone_record


def test_inspect_zones_table() -> None:
    streams, now = registry_with_traffic()
    streams.by_zone("zone-1")[0].warn("something is wrong")
    overviews = [
        zone_overview("zone-1", zone_record("zone-1"), streams, now, POLICY),
        zone_overview("zone-2", zone_record("zone-2", enabled=False), streams, now, POLICY),
    ]
    later = now.wall + timedelta(seconds=5)
    assert render_zones(overviews, later).splitlines() == [
        "NAME     STATUS     LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS   IN FLIGHT"
        "   WARNINGS",
        "zone-1   Online     15s                  15s                3               1              1 (11s)     1",
        "zone-2   Disabled   never                never              0               0              0           0",
    ]


def test_inspect_zone_detail_names_the_nack() -> None:
    streams, now = registry_with_traffic()
    text = render_zone(zone_overview("zone-1", zone_record("zone-1"), streams, now, POLICY), now.wall)
    assert "Zone:          zone-1\n" in text
    assert "Status:        Online\n" in text
    assert "Health check:  none received (every 1.0s)\n" in text
    assert "Subscriptions (2, newest last):" in text
    assert "  zone-1:global-to-zone:1  global-to-zone  connected 5m ago, disconnected 1m ago  (sent 0, ACKed 0," in text
    assert "  zone-1:global-to-zone:2  global-to-zone  connected 10s ago, active  (sent 3, ACKed 1, NACKed 1)" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "KIND" in line)
    assert lines[header].split() == [
        "KIND",
        "SENT",
        "ACKED",
        "NACKED",
        "IN",
        "FLIGHT",
        "SINCE",
        "LAST",
        "NONCE",
        "ANSWERED",
        "IN",
    ]
    assert lines[header + 1].split() == ["Thing", "3", "1", "1", "6s", "ago", "(nonce", "3)", "3", "500ms"]
    assert "    last NACK of Thing (nonce 2, 8s ago): Thing b.default: value: must not be bad" in lines
    assert "      b.default: value: must not be bad" in lines


def test_inspect_vips_table() -> None:
    items = [
        {"name": "echo.mesh", "vip": "240.0.0.1", "ports": [80], "source": ["Dataplane e-1", "Dataplane e-2"]},
        {
            "name": "internal.edge.default.mesh",
            "vip": "240.0.0.2",
            "ports": [8080, 8081],
            "source": ["MeshGateway edge"],
        },
    ]
    assert render_vips(items).splitlines() == [
        "NAME                         VIP         PORTS       SOURCE",
        "echo.mesh                    240.0.0.1   80          Dataplane e-1, Dataplane e-2",
        "internal.edge.default.mesh   240.0.0.2   8080,8081   MeshGateway edge",
    ]
