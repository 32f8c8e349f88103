"""The zone's DataplaneInsight sink as pure code: when a proxy's insight is due to be written, and what the stored
insight becomes. The zone's writer (zone_cp/dataplane_insights.py) does the store I/O.

Kuma 2.7.29 is the model:

- when (pkg/xds/server/callbacks/dataplane_status_sink.go): a proxy's insight is flushed as soon as its stream
  opens, then on a ticker every `dataplaneStatusFlushInterval` (10 s, `KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_
  INTERVAL`), and once more when the stream closes; a flush whose subscription equals the one last stored writes
  nothing. `FlushSchedule` is that rule per proxy: a connect or disconnect is written at once, anything else at
  most once per interval, nothing unchanged ever. Kuma's `generation`, bumped every `idleTimeout / 2` to force
  a write, is not kept (always 0, which is also what a Kuma zone sends the global: context.go's
  MapInsightResourcesZeroGeneration);
- what (api/mesh/v1alpha1/dataplane_insight_helpers.go `UpdateSubscription`): a subscription replaces the stored
  one with its id; a new one first closes every stored subscription left without a `disconnectTime` (a control
  plane that died without closing them, `finalizeSubscriptions`), then is appended;
- how many (pkg/core/managers/apis/dataplaneinsight/dataplane_insight_manager.go `limitSubscription`): only the
  last `subscriptionLimit` subscriptions are kept (2, `KUMA_METRICS_DATAPLANE_SUBSCRIPTION_LIMIT`); a limit of
  0 keeps none, as that code does (the defaults file's comment says "unlimited", the code clears them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from google.protobuf import json_format

from meshgate.api.mesh.v1alpha1.dataplane_insight_pb2 import DataplaneInsight, DiscoverySubscription
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRecord, subscription

__all__ = [
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_SUBSCRIPTION_LIMIT",
    "FlushSchedule",
    "content_of",
    "finalize",
    "is_online",
    "merge",
    "subscriptions_of",
]

# Kuma's `xdsServer.dataplaneStatusFlushInterval` and `metrics.dataplane.subscriptionLimit` defaults.
DEFAULT_FLUSH_INTERVAL = 10.0
DEFAULT_SUBSCRIPTION_LIMIT = 2


@dataclass(frozen=True, slots=True)
class _Written:
    at: float
    content: bytes


class FlushSchedule:
    """Per proxy: what was last written and when, and whether a new state is due (module docstring)."""

    def __init__(self, interval: float = DEFAULT_FLUSH_INTERVAL) -> None:
        if interval <= 0:
            raise ValueError(f"flush interval: must be positive, got {interval}")
        self.interval = interval
        self._written: dict[ProxyId, _Written] = {}

    def due(self, proxy: ProxyId, content: bytes, now: float, *, urgent: bool) -> bool:
        """Whether to write `content` now: never when it is what was last written; at once when `urgent` (a
        stream opened or closed) or never written; otherwise once `interval` has passed since the last write."""
        last = self._written.get(proxy)
        if last is None:
            return True
        if last.content == content:
            return False
        return urgent or now - last.at >= self.interval

    def written(self, proxy: ProxyId, content: bytes, now: float) -> None:
        self._written[proxy] = _Written(now, content)

    def forget(self, proxy: ProxyId) -> None:
        self._written.pop(proxy, None)


def subscriptions_of(record: ProxyRecord, control_plane_instance_id: str) -> list[DiscoverySubscription]:
    """The DiscoverySubscriptions of the streams the registry remembers for a proxy (its open ones and its last
    one), oldest first."""
    streams = dict(record.active)
    if record.last is not None:
        streams[record.last.id] = record.last
    return [
        json_format.ParseDict(subscription(streams[i], control_plane_instance_id), DiscoverySubscription())
        for i in sorted(streams)
    ]


def content_of(subscriptions: Sequence[DiscoverySubscription]) -> bytes:
    """What `FlushSchedule` compares: the subscriptions' deterministic bytes."""
    return b"".join(s.SerializeToString(deterministic=True) for s in subscriptions)


def finalize(insight: DataplaneInsight, now: datetime) -> bool:
    """Gives every subscription still open a `disconnectTime` of `now` (Kuma's finalizeSubscriptions); True when
    one was open."""
    changed = False
    for sub in insight.subscriptions:
        if not sub.HasField("disconnect_time"):
            sub.disconnect_time.FromDatetime(now)
            changed = True
    return changed


def merge(
    stored: DataplaneInsight | None,
    current: Sequence[DiscoverySubscription],
    *,
    limit: int = DEFAULT_SUBSCRIPTION_LIMIT,
    now: datetime,
) -> DataplaneInsight:
    """The insight to store: `stored` (not modified) with each of `current` put in by id, then cut to the last
    `limit` subscriptions (module docstring)."""
    out = DataplaneInsight()
    if stored is not None:
        out.CopyFrom(stored)
    for sub in current:
        for i, existing in enumerate(out.subscriptions):
            if existing.id == sub.id:
                out.subscriptions[i].CopyFrom(sub)
                break
        else:
            finalize(out, now)
            out.subscriptions.add().CopyFrom(sub)
    if len(out.subscriptions) > limit:
        kept = [_copy(s) for s in out.subscriptions[len(out.subscriptions) - limit :]] if limit > 0 else []
        del out.subscriptions[:]
        out.subscriptions.extend(kept)
    return out


def _copy(sub: DiscoverySubscription) -> DiscoverySubscription:
    out = DiscoverySubscription()
    out.CopyFrom(sub)
    return out


def is_online(insight: DataplaneInsight) -> bool:
    """Kuma's DataplaneInsight.IsOnline: some subscription has connected and not disconnected."""
    return any(s.HasField("connect_time") and not s.HasField("disconnect_time") for s in insight.subscriptions)
