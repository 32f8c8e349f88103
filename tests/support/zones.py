"""Zone records and a StreamRegistry with real traffic, at fixed times, for insight and CLI tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from global_cp.insights import HealthPolicy, Now
from meshgate.api.system.v1alpha1 import zone_pb2
from meshgate.delta import KindSnapshot
from meshgate.kds.sender import Sender
from meshgate.observability.metrics import KDSMetrics
from meshgate.resources.model import Meta, Resource
from meshgate.sync.streams import StreamRegistry
from tests.support.kds_link import Link
from tests.support.thing import entries, thing

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
POLICY = HealthPolicy(interval=1.0, missed=3.0)


def zone_record(name: str, enabled: bool | None = True) -> Resource:
    spec = zone_pb2.Zone()
    if enabled is not None:
        spec.enabled.value = enabled
    return Resource("Zone", Meta(name=name, creation_time=T0, modification_time=T0), spec)


def registry_with_traffic() -> tuple[StreamRegistry, Now]:
    """zone-1: one closed stream, one open stream with an ACK, a NACK naming b.default, and one in flight."""
    streams = StreamRegistry(KDSMetrics(), instance_id="global-1")
    old = streams.open("zone-1", "global-to-zone", "ipv4:10.0.0.1:1", sender=Sender(["Thing"]))
    streams.close(old)
    session = streams.open(
        "zone-1", "global-to-zone", "ipv4:10.0.0.1:2", sender=Sender(["Thing"]), zone_instance_id="zone-1-cp"
    )
    old.connected_at, old.disconnected_at = T0 - timedelta(minutes=5), T0 - timedelta(minutes=1)
    session.connected_at = session.last_update = T0
    assert session.sender is not None
    link = Link.of(session.sender)
    link.subscribe(now=100.0)
    assert link.answer(link.send(KindSnapshot.of("Thing", entries(thing("a"))), now=100.0), now=100.002)
    snap = KindSnapshot.of("Thing", entries(thing("a"), thing("b", "bad")), revision=2)
    assert not link.answer(link.send(snap, now=101.0), now=101.5)
    link.send(KindSnapshot.of("Thing", entries(thing("a", "v2"), thing("b", "bad")), revision=3), now=104.0)
    return streams, Now(T0 + timedelta(seconds=10), 110.0)
