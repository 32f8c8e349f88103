"""Which proxies are connected to this zone's ADS server, and what each holds, ACKed and rejected.

Plain state, no I/O: the adapter opens and closes streams here, and the read API (`describe`) serves a
later `/xds/proxies` endpoint and the tests. A proxy's last stream stays visible after it disconnects, so a
NACK is never lost just because Envoy went away.

`dataplane_insight` renders a proxy's streams as Kuma's DataplaneInsight (api/mesh/v1alpha1/
dataplane_insight.proto, v2.7.29), the `dataplaneInsight` of `/meshes/{mesh}/dataplanes+insights`. Times here
are the ADS server's clock, wall-clock seconds since the epoch. A subscription's `id` is a UUID per stream, as
Kuma's (core.NewUUID), so a zone writing DataplaneInsights never reuses one after a restart.

`on_change`, when set, is told of every stream opened or closed: the zone's DataplaneInsight writer flushes a
proxy's insight on connect and disconnect (zone_cp/dataplane_insights.py).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from meshgate.resources.codec import rfc3339
from meshgate.xds.ads import CLUSTER, ENDPOINT, LISTENER, ROUTE, AdsStream, ProxyId

__all__ = ["ProxyRecord", "ProxyRegistry", "StreamRecord", "dataplane_insight", "subscription"]

# DiscoverySubscriptionStatus has a counter set for these four types only; `total` counts every type (SDS too).
_STATUS_FIELDS = {CLUSTER: "cds", ENDPOINT: "eds", LISTENER: "lds", ROUTE: "rds"}


@dataclass(slots=True)
class StreamRecord:
    id: int
    stream: AdsStream
    peer: str
    opened_at: float
    closed_at: float | None = None
    error: str = ""
    uid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer": self.peer,
            "openedAt": self.opened_at,
            "closedAt": self.closed_at,
            "error": self.error or None,
            "types": self.stream.describe(),
        }


@dataclass(slots=True)
class ProxyRecord:
    proxy: ProxyId
    active: dict[int, StreamRecord] = field(default_factory=dict)
    last: StreamRecord | None = None  # the most recently opened stream, open or closed
    connects: int = 0

    @property
    def connected(self) -> bool:
        return bool(self.active)

    def describe(self) -> dict[str, Any]:
        return {
            "proxy": str(self.proxy),
            "mesh": self.proxy.mesh,
            "dataplane": self.proxy.name,
            "connected": self.connected,
            "connects": self.connects,
            "streams": [s.describe() for s in self.active.values()],
            "last": None if self.last is None else self.last.describe(),
        }


class ProxyRegistry:
    def __init__(self) -> None:
        self.proxies: dict[ProxyId, ProxyRecord] = {}
        self._ids = itertools.count(1)
        self.on_change: Callable[[ProxyId], None] | None = None

    def open(self, stream: AdsStream, peer: str, now: float) -> StreamRecord:
        record = self.proxies.get(stream.proxy)
        if record is None:
            record = self.proxies[stream.proxy] = ProxyRecord(stream.proxy)
        rec = StreamRecord(next(self._ids), stream, peer, now)
        record.active[rec.id] = rec
        record.last = rec
        record.connects += 1
        if self.on_change is not None:
            self.on_change(stream.proxy)
        return rec

    def close(self, rec: StreamRecord, now: float, error: str = "") -> None:
        rec.closed_at = now
        rec.error = error
        record = self.proxies.get(rec.stream.proxy)
        if record is not None:
            record.active.pop(rec.id, None)
        if self.on_change is not None:
            self.on_change(rec.stream.proxy)

    def get(self, proxy: ProxyId) -> ProxyRecord | None:
        return self.proxies.get(proxy)

    def describe(self) -> dict[str, Any]:
        """`{"proxies": [...]}` sorted by mesh and name; each proxy as `ProxyRecord.describe`."""
        return {"proxies": [self.proxies[p].describe() for p in sorted(self.proxies)]}


def _time(seconds: float) -> str:
    return rfc3339(datetime.fromtimestamp(seconds, UTC))


def _counts(sent: int, acked: int, rejected: int) -> dict[str, str]:
    # DiscoveryServiceStats; uint64 is a string in protojson.
    return {"responsesSent": str(sent), "responsesAcknowledged": str(acked), "responsesRejected": str(rejected)}


def subscription(rec: StreamRecord, control_plane_instance_id: str) -> dict[str, Any]:
    """One DiscoverySubscription (its JSON form): one ADS stream, open or closed."""
    stats = {type_url: ts.stats for type_url, ts in rec.stream.types.items()}
    status: dict[str, Any] = {}
    if rec.stream.last_update is not None:
        status["lastUpdateTime"] = _time(rec.stream.last_update)
    status["total"] = _counts(
        sum(s.responses_sent for s in stats.values()),
        sum(s.acks for s in stats.values()),
        sum(s.nacks for s in stats.values()),
    )
    for type_url, field_name in _STATUS_FIELDS.items():
        st = stats.get(type_url)
        status[field_name] = _counts(0, 0, 0) if st is None else _counts(st.responses_sent, st.acks, st.nacks)
    out: dict[str, Any] = {
        "id": rec.uid,
        "controlPlaneInstanceId": control_plane_instance_id,
        "connectTime": _time(rec.opened_at),
    }
    if rec.closed_at is not None:
        out["disconnectTime"] = _time(rec.closed_at)
    out["status"] = status
    return out


def dataplane_insight(record: ProxyRecord, control_plane_instance_id: str) -> dict[str, Any]:
    """Kuma's DataplaneInsight for one proxy: a subscription per stream this registry remembers (every open
    one and the last one), oldest first, so the last is the current one as kumactl reads it. A proxy is
    online when one of them has no disconnectTime."""
    streams = dict(record.active)
    if record.last is not None:
        streams[record.last.id] = record.last
    return {"subscriptions": [subscription(streams[i], control_plane_instance_id) for i in sorted(streams)]}
