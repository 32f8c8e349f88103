"""`kds trace` verdicts from real sender state, and how meshgatectl prints a trace and watch events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from global_cp.trace import DownEvidence, verdict_down, verdict_up
from meshgate.cli.kds import format_event, render_trace
from meshgate.delta import KindSnapshot
from meshgate.kds.envelope import to_wire
from meshgate.kds.sender import Sender
from meshgate.resources.model import Meta, Resource
from tests.support.kds_link import Link
from tests.support.thing import entries, thing

A = "a.default"


def linked() -> tuple[Sender, Link]:
    sender = Sender(["Thing"])
    link = Link.of(sender)
    link.subscribe()
    return sender, link


def evidence(sender: Sender) -> DownEvidence:
    return DownEvidence.of(sender.kinds["Thing"], A)


def test_pending_until_acked_then_in_sync() -> None:
    sender, link = linked()
    version = to_wire(thing("a")).version
    assert verdict_down(version, evidence(sender)) == ("pending", "not sent yet")
    resp = link.send(KindSnapshot.of("Thing", entries(thing("a"))), now=1.0)
    ev = evidence(sender)
    assert ev.in_flight
    assert ev.sent == (resp.nonce, 1.0)
    assert verdict_down(version, ev) == ("pending", f"sent with nonce {resp.nonce}, awaiting the zone's ACK")
    link.answer(resp, now=1.1)
    ev = evidence(sender)
    assert not ev.in_flight
    assert ev.confirmed == version
    assert verdict_down(version, ev) == ("in sync", f"zone holds version {version}")


def test_rejected_names_the_reason_until_a_new_version_is_offered() -> None:
    sender, link = linked()
    bad = to_wire(thing("a", "bad")).version
    resp = link.send(KindSnapshot.of("Thing", entries(thing("a", "bad"))), now=1.0)
    assert not link.answer(resp, now=1.1)
    assert verdict_down(bad, evidence(sender)) == ("rejected", "value: must not be bad")
    fixed = to_wire(thing("a", "fixed")).version
    assert verdict_down(fixed, evidence(sender))[0] == "pending"  # the fix is not sent yet


def test_deleted_resource_is_in_sync_when_absent_on_both_sides() -> None:
    sender, link = linked()
    link.answer(link.send(KindSnapshot.of("Thing", entries(thing("a"))), now=1.0), now=1.1)
    removal = link.send(KindSnapshot.of("Thing", [], revision=2), now=2.0)
    assert evidence(sender).in_flight
    assert verdict_down(None, evidence(sender))[0] == "pending"  # the zone has not confirmed the removal yet
    link.answer(removal, now=2.1)
    assert verdict_down(None, evidence(sender)) == ("in sync", "absent on both sides")


def test_no_stream_is_offline() -> None:
    assert verdict_down("v1", None)[0] == "offline"


def test_zone_to_global_verdicts() -> None:
    held = Resource("Dataplane", Meta(name="dp-1-abc", mesh="default"), thing("x").spec)
    assert verdict_up(True, held, None) == ("in sync", "the global holds it as dp-1-abc")
    assert verdict_up(True, None, None)[0] == "absent"
    assert verdict_up(True, None, "networking.address: required") == ("rejected", "networking.address: required")
    assert verdict_up(False, held, None)[0] == "offline"


NOW = datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)
REASON = "conf.listeners[0].port: port must be in the range [1, 65535]"


def trace_doc() -> dict[str, Any]:
    return {
        "kind": "MeshGateway",
        "name": "bad",
        "mesh": "default",
        "wireName": "bad.default",
        "direction": "global-to-zone",
        "globalVersion": "0123456789abcdef0123",
        "zones": [
            {
                "zone": "zone-1",
                "status": "online",
                "verdict": "rejected",
                "reason": REASON,
                "sent": {"nonce": "4", "at": "2026-01-01T12:00:18Z"},
                "inFlight": False,
                "zoneVersion": None,
                "rejected": {"version": "0123456789abcdef0123", "reason": REASON},
            },
            {
                "zone": "zone-2",
                "status": "online",
                "verdict": "in sync",
                "reason": "zone holds version 0123456789abcdef0123",
                "sent": {"nonce": "4", "at": "2026-01-01T12:00:18Z"},
                "inFlight": False,
                "zoneVersion": "0123456789abcdef0123",
                "rejected": None,
            },
            {"zone": "zone-3", "status": "offline", "verdict": "offline", "reason": "no open stream"},
        ],
    }


def test_render_trace() -> None:
    assert render_trace(trace_doc(), NOW) == (
        'MeshGateway "bad" in mesh "default" (KDS name bad.default), global-to-zone\n'
        "Global version: 0123456789abcdef0123\n"
        "\n"
        "ZONE     STATUS    SENT      NONCE   ZONE VERSION   RESULT\n"
        "zone-1   Online    12s ago   4       -              rejected\n"
        "zone-2   Online    12s ago   4       0123456789ab   in sync\n"
        "zone-3   Offline   -         -       ?              offline\n"
        "\n"
        f"zone-1: rejected — {REASON}\n"
        "zone-2: in sync\n"
        "zone-3: offline — no open stream\n"
    )


def test_format_watch_events() -> None:
    response = {
        "seq": 7,
        "at": "2026-01-01T12:00:01.234567Z",
        "zone": "zone-1",
        "stream": "zone-1:global-to-zone:1",
        "direction": "global-to-zone",
        "event": "response",
        "kind": "MeshGateway",
        "nonce": "4",
        "upserts": [{"name": f"gw{i}.default", "version": "0123456789abcdef"} for i in range(7)],
        "removals": ["old.default"],
    }
    assert format_event(response) == (
        "12:00:01.234Z  zone-1  global-to-zone  response    MeshGateway  nonce=4  "
        "+gw0.default@01234567 +gw1.default@01234567 +gw2.default@01234567 +gw3.default@01234567 "
        "+gw4.default@01234567 (+3 more)"
    )
    nack = {
        **response,
        "event": "nack",
        "upserts": [],
        "removals": [],
        "latencyMs": 3.5,
        "error": "MeshGateway bad.default: ...",
        "rejected": [{"name": "bad.default", "reason": REASON}],
    }
    assert format_event(nack) == (
        "12:00:01.234Z  zone-1  global-to-zone  nack        MeshGateway  nonce=4  3.5ms  "
        f"rejected: bad.default ({REASON})"
    )
    assert format_event({"event": "heartbeat"}) is None
    assert format_event({"event": "dropped", "count": 3}) == "(3 events dropped: this watch fell behind)"
