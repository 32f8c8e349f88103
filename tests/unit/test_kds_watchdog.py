"""The watchdog's scan over registry state, with a fake clock: no sleeps, no sockets."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from global_cp.insights import HealthPolicy, Now
from global_cp.watchdog import Watchdog, find_stalls
from meshgate.delta import KindSnapshot
from meshgate.kds.sender import Sender
from meshgate.observability.metrics import KDSMetrics
from meshgate.sync.streams import KDSEvent, StreamRegistry, StreamSession
from tests.support.kds_link import Link
from tests.support.thing import entries, thing


@dataclass
class FakeClock:
    mono: float = 1000.0
    wall: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> Now:
        return Now(self.wall, self.mono)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


def setup(stall_after: float = 10.0) -> tuple[StreamRegistry, StreamSession, Link, FakeClock, Watchdog]:
    clock = FakeClock()
    streams = StreamRegistry(KDSMetrics())
    session = streams.open("zone-1", "global-to-zone", "peer", sender=Sender(["Thing"]))
    assert session.sender is not None
    link = Link.of(session.sender)
    link.subscribe(clock.mono)
    dog = Watchdog(streams, stall_after=stall_after, health=HealthPolicy(interval=1.0, missed=3.0), clock=clock)
    return streams, session, link, clock, dog


def events(streams: StreamRegistry, kind: str) -> list[KDSEvent]:
    return [e for e in streams.events.history if e.event == kind]


def test_stall_is_reported_once_per_nonce_and_cleared_by_the_ack() -> None:
    streams, session, link, clock, dog = setup()
    resp = link.send(KindSnapshot.of("Thing", entries(thing("a"))), clock.mono)
    clock.advance(9.9)
    assert dog.scan() == ([], [])
    clock.advance(0.2)
    with capture_logs() as logs:
        stalls, _ = dog.scan()
        assert [(s.kind, s.nonce) for s in stalls] == [("Thing", resp.nonce)]
        clock.advance(5)
        assert dog.scan() == ([], [])  # still stalled: not reported again
    assert streams.metrics.stalls[("zone-1", "Thing")] == 1
    assert 'meshgate_kds_stalls{zone="zone-1",type_url="Thing"} 1' in streams.metrics.render()
    [warning] = session.warnings
    assert "Thing" in warning
    assert f"nonce {resp.nonce}" in warning
    assert "10.1s" in warning
    [log] = [entry for entry in logs if entry["event"] == "kds.stall"]
    assert log["log_level"] == "warning"
    assert (log["zone"], log["stream"], log["type"], log["nonce"]) == ("zone-1", session.stream_id, "Thing", "1")
    assert log["age"] == 10.1
    [event] = events(streams, "stall")
    assert (event.zone, event.kind, event.nonce, event.error) == ("zone-1", "Thing", "1", warning)

    link.answer(resp, clock.mono)
    dog.scan()
    assert session.warnings == []

    resp2 = link.send(KindSnapshot.of("Thing", entries(thing("a", "v2")), revision=2), clock.mono)
    clock.advance(11)
    stalls, _ = dog.scan()
    assert [s.nonce for s in stalls] == [resp2.nonce]  # a new nonce is a new stall
    assert streams.metrics.stalls[("zone-1", "Thing")] == 2


def test_a_closed_stream_takes_its_stall_with_it() -> None:
    streams, session, link, clock, dog = setup(stall_after=1.0)
    link.send(KindSnapshot.of("Thing", entries(thing("a"))), clock.mono)
    clock.advance(2)
    dog.scan()
    assert session.warnings
    streams.close(session)
    dog.scan()
    assert session.warnings == []
    assert find_stalls(streams.active.values(), clock(), 1.0) == []


def test_other_warnings_are_left_alone() -> None:
    _streams, session, link, clock, dog = setup(stall_after=1.0)
    session.warn("Thing x.default is 5000000 bytes, over the 4194304-byte message limit")
    resp = link.send(KindSnapshot.of("Thing", entries(thing("a"))), clock.mono)
    clock.advance(2)
    dog.scan()
    assert len(session.warnings) == 2
    link.answer(resp, clock.mono)
    dog.scan()
    assert session.warnings == ["Thing x.default is 5000000 bytes, over the 4194304-byte message limit"]


def test_health_lapse_is_reported_once_per_lapse() -> None:
    streams, session, _link, clock, dog = setup()
    assert dog.scan() == ([], [])  # no ping seen yet: nothing to judge
    streams.last_health_check["zone-1"] = clock.wall
    clock.advance(2.9)
    assert dog.scan() == ([], [])
    clock.advance(0.2)
    with capture_logs() as logs:
        _, lapses = dog.scan()
    assert [lapse.zone for lapse in lapses] == ["zone-1"]
    assert [e["event"] for e in logs] == ["kds.health.lapsed"]
    [warning] = session.warnings
    assert "no health check from zone zone-1 for 3.1s" in warning
    [event] = events(streams, "health")
    assert event.error == warning
    # A second stream opened during the lapse gets the warning, but no second event.
    other = streams.open("zone-1", "zone-to-global", "peer")
    clock.advance(1)
    assert dog.scan() == ([], [])
    assert other.warnings == [warning]
    assert len(events(streams, "health")) == 1

    streams.last_health_check["zone-1"] = clock.wall  # pings resume
    dog.scan()
    assert session.warnings == []
    assert other.warnings == []
    clock.advance(3.5)
    _, lapses = dog.scan()
    assert len(lapses) == 1  # a new lapse is reported again
    assert len(events(streams, "health")) == 2


def test_zone_without_open_streams_is_not_watched() -> None:
    streams, session, _link, clock, dog = setup()
    streams.last_health_check["zone-1"] = clock.wall
    streams.close(session)
    clock.advance(100)
    assert dog.scan() == ([], [])
