"""The KDS event bus (`kds watch`, insights) keeps a bounded history: bounded in events and in names per event."""

from __future__ import annotations

import meshgate.resources  # noqa: F401  (import order: resources before store)
from meshgate.cli.kds import format_event
from meshgate.sync.streams import EventBus


def test_an_event_keeps_at_most_event_names_per_list_and_counts_the_rest() -> None:
    """A zone that offers 30,000 names the global does not hold gets one response removing them all; the
    event for it must not keep 30,000 names in the history (500 such events were hundreds of MB)."""
    bus = EventBus()
    names = tuple(f"gw-{i}.default" for i in range(30_000))
    ev = bus.publish(
        "zone-1", "s1", "global-to-zone", "response", kind="MeshGateway", upserts=(("a.default", "v1"),), removals=names
    )
    assert ev.removals == names[: EventBus.EVENT_NAMES]
    assert ev.upserts == (("a.default", "v1"),)
    assert ev.more == 30_000 - EventBus.EVENT_NAMES
    doc = ev.to_json()
    assert len(doc["removals"]) == EventBus.EVENT_NAMES
    assert doc["more"] == ev.more
    line = format_event(doc)
    assert line is not None
    assert f"(+{30_000 + 1 - 5} more)" in line  # 5 shown of the 30,001 names the response carried


def test_the_history_is_bounded_in_events() -> None:
    bus = EventBus()
    for i in range(EventBus.HISTORY + 50):
        bus.publish("zone-1", "s1", "global-to-zone", "ack", kind="Mesh", nonce=str(i))
    assert len(bus.history) == EventBus.HISTORY
    assert bus.history[0].nonce == "50"
