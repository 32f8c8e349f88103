"""The zone's DataplaneInsight sink as pure code: the rate bound (Kuma's flush ticker plus connect and
disconnect), UpdateSubscription's merge, and the subscription limit."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from google.protobuf import json_format

from meshgate.api.mesh.v1alpha1.dataplane_insight_pb2 import DataplaneInsight, DiscoverySubscription
from meshgate.xds.ads import AdsStream, ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from meshgate.xds.insight_sink import FlushSchedule, content_of, finalize, is_online, merge, subscriptions_of

WEB = ProxyId("default", "web-1")
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def sub(sub_id: str, *, closed: bool = False, sent: int = 0) -> DiscoverySubscription:
    doc = {
        "id": sub_id,
        "controlPlaneInstanceId": "cp-1",
        "connectTime": "2026-01-01T11:00:00Z",
        "status": {"total": {"responsesSent": str(sent)}},
    }
    if closed:
        doc["disconnectTime"] = "2026-01-01T11:30:00Z"
    return json_format.ParseDict(doc, DiscoverySubscription())


def test_a_new_state_is_written_at_most_once_per_interval() -> None:
    schedule = FlushSchedule(10.0)
    assert schedule.due(WEB, b"a", 0.0, urgent=False)  # never written: at once
    schedule.written(WEB, b"a", 0.0)
    assert not schedule.due(WEB, b"a", 100.0, urgent=False)  # unchanged: never
    for t in (1.0, 5.0, 9.99):
        assert not schedule.due(WEB, b"b", t, urgent=False)  # changed, but within the interval
    assert schedule.due(WEB, b"b", 10.0, urgent=False)
    schedule.written(WEB, b"b", 10.0)
    assert not schedule.due(WEB, b"c", 12.0, urgent=False)


def test_a_connect_or_disconnect_is_written_at_once_but_never_an_unchanged_state() -> None:
    schedule = FlushSchedule(10.0)
    schedule.written(WEB, b"open", 0.0)
    assert schedule.due(WEB, b"closed", 0.5, urgent=True)
    schedule.written(WEB, b"closed", 0.5)
    assert not schedule.due(WEB, b"closed", 0.6, urgent=True)
    schedule.forget(WEB)
    assert schedule.due(WEB, b"closed", 0.7, urgent=False)
    with pytest.raises(ValueError, match="flush interval"):
        FlushSchedule(0)


def test_proxies_are_bounded_apart() -> None:
    schedule = FlushSchedule(10.0)
    other = ProxyId("default", "web-2")
    schedule.written(WEB, b"a", 0.0)
    assert schedule.due(other, b"a", 1.0, urgent=False)


def test_merge_replaces_by_id_and_finalizes_before_appending() -> None:
    """UpdateSubscription: the same id is replaced; a new one closes every open one first (a control plane that
    died without closing them), then is appended."""
    stored = merge(None, [sub("a", sent=1)], now=NOW)
    assert [s.id for s in stored.subscriptions] == ["a"]
    assert is_online(stored)
    updated = merge(stored, [sub("a", sent=5)], now=NOW)
    assert [s.status.total.responses_sent for s in updated.subscriptions] == [5]
    assert stored.subscriptions[0].status.total.responses_sent == 1  # the input is not modified
    reconnected = merge(updated, [sub("b")], now=NOW)
    first, second = reconnected.subscriptions
    assert first.disconnect_time.ToDatetime(UTC) == NOW
    assert not second.HasField("disconnect_time")
    assert is_online(reconnected)
    closed = merge(reconnected, [sub("b", closed=True)], now=NOW)
    assert not is_online(closed)


def test_only_the_last_subscriptions_are_kept() -> None:
    """dataplane_insight_manager.go limitSubscription: the last `limit`; 0 keeps none, as Kuma's code does."""
    insight = DataplaneInsight()
    for sub_id in "abc":
        insight = merge(insight, [sub(sub_id)], limit=2, now=NOW)
    assert [s.id for s in insight.subscriptions] == ["b", "c"]
    assert list(merge(insight, [sub("d")], limit=0, now=NOW).subscriptions) == []
    assert [s.id for s in merge(insight, [sub("d")], limit=5, now=NOW).subscriptions] == ["b", "c", "d"]


def test_finalize_closes_only_open_subscriptions() -> None:
    insight = merge(None, [sub("a", closed=True), sub("b")], limit=5, now=NOW)
    insight.subscriptions[1].ClearField("disconnect_time")
    assert finalize(insight, NOW)
    assert insight.subscriptions[0].disconnect_time.ToDatetime(UTC) == datetime(2026, 1, 1, 11, 30, tzinfo=UTC)
    assert insight.subscriptions[1].disconnect_time.ToDatetime(UTC) == NOW
    assert not finalize(insight, NOW)


def test_a_proxys_streams_become_subscriptions_with_unique_ids() -> None:
    registry = ProxyRegistry()
    seen: list[ProxyId] = []
    registry.on_change = seen.append
    first = registry.open(AdsStream(WEB), "ipv4:127.0.0.1:1", 1000.0)
    registry.close(first, 1005.0)
    second = registry.open(AdsStream(WEB), "ipv4:127.0.0.1:2", 1010.0)
    assert seen == [WEB, WEB, WEB]  # the writer hears of every open and close
    record = registry.get(WEB)
    assert record is not None
    (current,) = subscriptions_of(record, "cp-1")  # the registry remembers the open one and the last one
    assert current.id == second.uid != first.uid
    assert current.control_plane_instance_id == "cp-1"
    assert current.connect_time.seconds == 1010
    assert not current.HasField("disconnect_time")
    assert content_of([current]) == content_of(subscriptions_of(record, "cp-1"))
    registry.close(second, 1020.0)
    (closed,) = subscriptions_of(record, "cp-1")
    assert closed.disconnect_time.seconds == 1020
    assert content_of([closed]) != content_of([current])
