"""Zone insights on the global, in Kuma's shapes: ZoneOverview, GlobalInsight and Dataplanes with their zone.

Everything here is computed on request from the StreamRegistry (what the streams did) and the store (Zone
records, resources), so the answers never lag behind the streams and there is no insight state to keep in
sync. The builders are plain functions of that state and a `Now`; the routes at the bottom only fetch and
serialize.

Kuma's field names are kept (api/system/v1alpha1/zone_insight.proto, v2.7.29), with its protojson habit of
writing uint64 counters as strings, so kumactl and the GUI read these bodies as they read Kuma's. What Kuma
does not have is added beside its fields: `status`, `warnings`, `healthCheck`, `direction`, and per kind
`inFlightSince`, `lastNonce`, `lastAckLatencyMs` and `lastNack`.

Each overview is served under Kuma's two names (pkg/api-server/resource_endpoints.go): `/zones/_overview` and
`/zones+insights` (what `kumactl inspect zones` calls), with `/{name}` forms; Dataplanes are served by the
shared `meshgate.rest.overviews` routes, annotated here with their zone and its status, and with the
`dataplaneInsight` their zone synced up (a DataplaneInsight of the same name: a zone names both alike), so the
proxy's own state shows beside its zone's. When the zone is offline that insight is as the zone last sent it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web

from meshgate.api.system.v1alpha1 import zone_pb2
from meshgate.kds.receiver import Receiver
from meshgate.kds.sender import Sender
from meshgate.resources import codec, kinds, registry
from meshgate.resources.model import LABEL_ZONE, Resource, ResourceKey
from meshgate.rest import overviews
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import not_found
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.sync.streams import StreamRegistry, StreamSession

__all__ = [
    "HealthPolicy",
    "Now",
    "ZoneStatus",
    "dataplane_insights",
    "dataplane_overview",
    "global_insight",
    "insight_routes",
    "known_zones",
    "list_all",
    "timestamp",
    "zone_enabled",
    "zone_overview",
    "zone_records",
    "zone_status",
]

ZoneStatus = Literal["online", "offline", "disabled"]


@dataclass(frozen=True, slots=True)
class Now:
    """One reading of both clocks. Senders stamp with the monotonic clock (immune to clock steps); people
    read wall time. Taking both at once converts one to the other without drift inside one answer."""

    wall: datetime
    mono: float

    @classmethod
    def current(cls) -> Now:
        return cls(datetime.now(UTC), time.monotonic())

    def wall_of(self, mono: float) -> datetime:
        return self.wall - timedelta(seconds=self.mono - mono)


@dataclass(frozen=True, slots=True)
class HealthPolicy:
    """How the global judges a zone's pings: it asks for one every `interval` seconds (in its HealthCheck
    answer), and a zone that misses `missed` of them in a row is offline even if its stream looks alive."""

    interval: float = 10.0
    missed: float = 3.0

    @property
    def window(self) -> float:
        return self.interval * self.missed

    def lapsed(self, last: datetime | None, now: Now) -> bool:
        return last is not None and (now.wall - last).total_seconds() >= self.window


def timestamp(dt: datetime | None) -> str | None:
    """RFC 3339 in UTC with a Z, as Kuma writes protobuf Timestamps."""
    if dt is None:
        return None
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def zone_enabled(record: Resource | None) -> bool:
    """A Zone's `enabled` is a BoolValue: unset (or no record at all) means enabled, as in Kuma."""
    if record is None:
        return True
    spec = record.spec
    assert isinstance(spec, zone_pb2.Zone)
    return not spec.HasField("enabled") or spec.enabled.value


def zone_status(streams: StreamRegistry, zone: str, enabled: bool, now: Now, policy: HealthPolicy) -> ZoneStatus:
    """Online iff the global is streaming to the zone and its pings, once seen, have not stopped."""
    if not enabled:
        return "disabled"
    if streams.streaming(zone) and not policy.lapsed(streams.health_last_seen(zone), now):
        return "online"
    return "offline"


# -- subscriptions ---------------------------------------------------------------------------------------


def _counts(sent: int, acked: int, rejected: int) -> dict[str, str]:
    # uint64 in protojson is a string; Kuma's KDSServiceStats fields.
    return {"responsesSent": str(sent), "responsesAcknowledged": str(acked), "responsesRejected": str(rejected)}


def _sender_stats(sender: Sender, now: Now) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for kind, ks in sender.kinds.items():
        st = ks.stats
        stat: dict[str, Any] = _counts(st.responses_sent, st.acks, st.nacks)
        # Ours: how many resources and removals those responses carried. A resumed stream that finds the
        # zone up to date shows 0 here: proof that a reconnect did not re-send everything.
        stat["resourcesSent"] = st.resources_sent
        stat["removalsSent"] = st.removals_sent
        if ks.in_flight is not None:
            stat["inFlightSince"] = timestamp(now.wall_of(ks.in_flight.sent_at))
            stat["inFlightNonce"] = ks.in_flight.nonce
        if st.last_nonce:
            stat["lastNonce"] = st.last_nonce
        if st.last_ack_latency is not None:
            stat["lastAckLatencyMs"] = round(st.last_ack_latency * 1000, 3)
        if st.last_nack is not None:
            stat["lastNack"] = {
                "nonce": st.last_nack.nonce,
                "error": st.last_nack.error,
                "resources": dict(st.last_nack.names),
                "at": timestamp(now.wall_of(st.last_nack.at)),
            }
        out[kind] = stat
    return out


def _receiver_stats(receiver: Receiver) -> dict[str, dict[str, Any]]:
    """Zone-to-global: the zone sends, the global answers. "Sent" counts what the zone sent us."""
    out: dict[str, dict[str, Any]] = {}
    for kind, rk in receiver.kinds.items():
        stat: dict[str, Any] = _counts(rk.responses, rk.acks_sent, rk.nacks_sent)
        if rk.last_nonce:
            stat["lastNonce"] = rk.last_nonce
        if rk.last_rejections:
            # The receiver keeps only its latest answer's rejections: a NACK of the latest response.
            stat["lastNack"] = {
                "nonce": rk.last_nonce,
                "error": "; ".join(f"{kind} {r.name}: {r.reason}" for r in rk.last_rejections),
                "resources": {r.name: r.reason for r in rk.last_rejections},
            }
        out[kind] = stat
    return out


def subscription(session: StreamSession, now: Now) -> dict[str, Any]:
    """One KDSSubscription (Kuma's fields, then ours) for one stream, open or closed."""
    if session.sender is not None:
        stat = _sender_stats(session.sender, now)
    elif session.receiver is not None:
        stat = _receiver_stats(session.receiver)
    else:
        stat = {}
    fields = ("responsesSent", "responsesAcknowledged", "responsesRejected")
    total = [sum(int(s[f]) for s in stat.values()) for f in fields]
    out: dict[str, Any] = {
        "id": session.stream_id,
        "globalInstanceId": session.global_instance_id,
        "connectTime": timestamp(session.connected_at),
    }
    if session.disconnected_at is not None:
        out["disconnectTime"] = timestamp(session.disconnected_at)
    out["status"] = {
        "lastUpdateTime": timestamp(session.last_update),
        "total": _counts(*total),
        "stat": stat,
    }
    out["zoneInstanceId"] = session.zone_instance_id
    out["direction"] = session.direction
    out["peer"] = session.peer
    if session.warnings:
        out["warnings"] = list(session.warnings)
    return out


def _subscriptions(streams: StreamRegistry, zone: str) -> list[StreamSession]:
    """Closed ones first (oldest first), then the open ones: newest last, as Kuma lists them."""
    hist = streams.history.get(zone)
    closed = list(hist.closed) if hist is not None else []
    return closed + sorted(streams.by_zone(zone), key=lambda s: s.connected_at)


# -- overviews -------------------------------------------------------------------------------------------


def zone_overview(
    zone: str, record: Resource | None, streams: StreamRegistry, now: Now, policy: HealthPolicy
) -> dict[str, Any]:
    enabled = zone_enabled(record)
    sessions = _subscriptions(streams, zone)
    last_seen = streams.health_last_seen(zone)
    # Streams held by other replicas come as they reported them; each names its replica (globalInstanceId).
    remote = streams.remote.get(zone)
    subscriptions = [subscription(s, now) for s in sessions] + (remote.subscriptions if remote else [])
    insight: dict[str, Any] = {"subscriptions": subscriptions}
    if last_seen is not None:
        insight["healthCheck"] = {"time": timestamp(last_seen)}
    warnings: list[str] = []
    for s in streams.by_zone(zone):
        warnings.extend(w for w in s.warnings if w not in warnings)
    out: dict[str, Any] = {"type": "ZoneOverview", "name": zone}
    if record is not None:
        out["creationTime"] = timestamp(record.meta.creation_time)
        out["modificationTime"] = timestamp(record.meta.modification_time)
    out["zone"] = {"enabled": enabled}
    out["zoneInsight"] = insight
    out["status"] = zone_status(streams, zone, enabled, now, policy)
    out["warnings"] = warnings
    out["healthCheck"] = {"lastSeen": timestamp(last_seen), "interval": policy.interval}
    return out


def known_zones(records: Mapping[str, Resource], streams: StreamRegistry) -> list[str]:
    """Zone records, plus zones streaming without one (a record deleted under a live stream)."""
    return sorted(set(records) | {s.zone for s in streams.active.values()} | set(streams.remote))


def global_insight(
    counts: Mapping[str, int],
    records: Mapping[str, Resource],
    streams: StreamRegistry,
    now: Now,
    policy: HealthPolicy,
) -> dict[str, Any]:
    zones = known_zones(records, streams)
    online = sum(1 for z in zones if zone_status(streams, z, zone_enabled(records.get(z)), now, policy) == "online")
    return {
        "type": "GlobalInsight",
        "createdAt": timestamp(now.wall),
        "meshes": {"total": counts.get(kinds.MESH, 0)},
        "resources": {kind: {"total": n} for kind, n in sorted(counts.items())},
        "zones": {"controlPlanes": {"online": online, "total": len(zones)}},
        "instanceId": streams.instance_id,
        # Whether this replica holds the lease for singleton work (always true for a single global).
        "leader": streams.leader(),
    }


InsightDocs = Mapping[tuple[str, str], Mapping[str, Any]]


def dataplane_overview(
    dataplane: Resource,
    records: Mapping[str, Resource],
    streams: StreamRegistry,
    now: Now,
    policy: HealthPolicy,
    insights: InsightDocs | None = None,
) -> dict[str, Any]:
    """Kuma's DataplaneOverview (meshgate.rest.overviews), plus the zone it lives in and whether that zone is
    reachable: a Dataplane of an offline (or disabled) zone is shown as such, never as healthy. `dataplaneInsight`
    is the DataplaneInsight its zone synced up (`insights`, by mesh and name), left out when there is none."""
    return overviews.dataplane_overview(
        dataplane, _zone_annotation(dataplane, records, streams, now, policy, insights or {})
    )


def _zone_annotation(
    dataplane: Resource,
    records: Mapping[str, Resource],
    streams: StreamRegistry,
    now: Now,
    policy: HealthPolicy,
    insights: InsightDocs,
) -> overviews.Annotation:
    zone = dataplane.meta.labels.get(LABEL_ZONE, "")
    if zone:
        status = zone_status(streams, zone, zone_enabled(records.get(zone)), now, policy)
        zone_state = "online" if status == "online" else "offline"
    else:
        zone_state = "local"
    insight = insights.get((dataplane.meta.mesh, dataplane.meta.name))
    return overviews.Annotation(insight=insight, extra={"zone": zone, "zoneStatus": zone_state})


async def dataplane_insights(store: ResourceStore) -> dict[tuple[str, str], dict[str, Any]]:
    """Every DataplaneInsight the zones synced up, in its REST form without metadata, by mesh and name."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    async for insight in iter_all(store, kinds.DATAPLANE_INSIGHT):
        doc = codec.encode(insight)
        out[(insight.meta.mesh, insight.meta.name)] = {k: v for k, v in doc.items() if k not in codec.META_KEYS}
    return out


# -- routes ----------------------------------------------------------------------------------------------


async def list_all(store: ResourceStore, kind: str, mesh: str | None = None) -> list[Resource]:
    return [r async for r in iter_all(store, kind, mesh)]


async def zone_records(store: ResourceStore) -> dict[str, Resource]:
    return {r.meta.name: r for r in await list_all(store, kinds.ZONE)}


_COUNTS_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        k: {"type": "string", "pattern": "^[0-9]+$"}
        for k in ("responsesSent", "responsesAcknowledged", "responsesRejected")
    },
}
ZONE_OVERVIEW_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "Kuma's ZoneOverview (zone, zoneInsight), then ours: status, warnings, healthCheck",
    "properties": {
        "type": {"type": "string", "const": "ZoneOverview"},
        "name": {"type": "string"},
        "creationTime": {"type": "string", "format": "date-time"},
        "modificationTime": {"type": "string", "format": "date-time"},
        "zone": {"type": "object", "properties": {"enabled": {"type": "boolean"}}, "required": ["enabled"]},
        "zoneInsight": {
            "type": "object",
            "properties": {
                "subscriptions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "id": {"type": "string"},
                            "globalInstanceId": {"type": "string"},
                            "connectTime": {"type": "string", "format": "date-time"},
                            "disconnectTime": {"type": "string", "format": "date-time"},
                            "status": {
                                "type": "object",
                                "properties": {
                                    "total": _COUNTS_SCHEMA,
                                    "stat": {"type": "object", "additionalProperties": _COUNTS_SCHEMA},
                                },
                            },
                        },
                    },
                }
            },
            "required": ["subscriptions"],
        },
        "status": {"type": "string", "enum": ["online", "offline", "disabled"]},
        "warnings": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["type", "name", "zone", "zoneInsight", "status"],
}
ZONE_OVERVIEW_LIST_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "total": {"type": "integer", "minimum": 0},
        "items": {"type": "array", "items": ZONE_OVERVIEW_SCHEMA},
        "next": {"type": ["string", "null"]},
    },
    "required": ["total", "items", "next"],
}


def _listing(items: Iterable[dict[str, Any]]) -> web.Response:
    body = list(items)
    return web.json_response({"total": len(body), "items": body, "next": None})


def insight_routes(store: ResourceStore, streams: StreamRegistry, policy: HealthPolicy) -> list[ExtraRoute]:
    """The read-only insight endpoints, served through the API app (and so listed in /openapi.json)."""

    async def zones_overview(request: web.Request) -> web.Response:
        now, records = Now.current(), await zone_records(store)
        return _listing(zone_overview(z, records.get(z), streams, now, policy) for z in known_zones(records, streams))

    async def one_zone_overview(request: web.Request) -> web.Response:
        zone = request.match_info["name"]
        try:
            record: Resource | None = await store.get(ResourceKey(kinds.ZONE, "", zone))
        except NotFoundError:
            record = None
        if record is None and not streams.connected(zone):
            raise not_found("Could not retrieve a resource")
        return web.json_response(zone_overview(zone, record, streams, Now.current(), policy))

    async def get_global_insight(request: web.Request) -> web.Response:
        counts = {d.name: (await store.list(d.name, size=1)).total for d in registry.KINDS}
        return web.json_response(global_insight(counts, await zone_records(store), streams, Now.current(), policy))

    async def annotate() -> Callable[[Resource], overviews.Annotation]:
        now, records, insights = Now.current(), await zone_records(store), await dataplane_insights(store)
        return lambda dp: _zone_annotation(dp, records, streams, now, policy, insights)

    zones = "Every zone with its status and KDS subscriptions (Kuma's ZoneOverview list)"
    one_zone = "One zone's status and KDS subscriptions (Kuma's ZoneOverview)"
    return [
        # Kuma serves each under two names: `_overview`, and the legacy `+insights` that kumactl calls.
        ExtraRoute("GET", "/zones/_overview", zones_overview, zones, ZONE_OVERVIEW_LIST_SCHEMA),
        ExtraRoute("GET", "/zones+insights", zones_overview, zones, ZONE_OVERVIEW_LIST_SCHEMA),
        ExtraRoute("GET", "/zones/{name}/_overview", one_zone_overview, one_zone, ZONE_OVERVIEW_SCHEMA),
        ExtraRoute("GET", "/zones+insights/{name}", one_zone_overview, one_zone, ZONE_OVERVIEW_SCHEMA),
        ExtraRoute("GET", "/global-insight", get_global_insight, "Totals: resources per kind, zones online"),
        *overviews.dataplane_overview_routes(store, annotate),
    ]
