"""`GET /kds/trace`: where one resource stands in every zone, ending in one verdict per zone.

For a kind the global sends (Mesh, MeshGateway, MeshGatewayRoute) the evidence is the global's snapshot (the
version it offers) and, per zone, the open global-to-zone stream's `TypeState` (meshgate.delta): when and
with which nonce the resource last went out, whether that response is still in flight, which version the zone
confirmed holding (its initial versions, then every ACK), and which version it rejected and why. The verdict:

    offline    the zone has no open stream (or is disabled): nothing can be said about now
    rejected   the zone NACKed the version the global offers now; the reason is the zone's
    in sync    the zone confirmed the version the global offers (or, for a deleted resource, holds none)
    pending    anything else: sent and awaiting its ACK, or not sent yet

For a kind that comes from zones (Dataplane, zone-made MeshGateways) the evidence is the global's store:
whether it holds the zone's copy (labels kuma.io/zone and kuma.io/display-name), and the zone-to-global
stream's receiver, which knows the version it took and what it rejected. Verdicts: in sync, absent, rejected,
offline. A Dataplane is also relayed to every other zone: a zone that did not make it gets the verdict of that
relay (global-to-zone, as above), its reason starting "relayed from <zone> as <stored name>".
`verdict_down` and `verdict_up` are the pure rules; `trace_routes` gathers the evidence.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
from aiohttp import web

from global_cp.insights import HealthPolicy, Now, ZoneStatus, known_zones, list_all, timestamp, zone_enabled
from global_cp.insights import zone_records as read_zone_records
from global_cp.insights import zone_status as status_of
from meshgate.delta import TypeState
from meshgate.kds.naming import wire_name
from meshgate.resources import registry as kinds
from meshgate.resources.descriptor import KindDescriptor, SyncDirection
from meshgate.resources.errors import UnknownKindError
from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN, LABEL_ZONE, Origin, Resource, ResourceKey
from meshgate.rest.app import ExtraRoute
from meshgate.rest.authn import forwarded_authorization
from meshgate.rest.errors import ApiError, bad_request
from meshgate.store.protocol import ResourceStore
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import StreamRegistry

__all__ = ["Verdict", "ask_other_replicas", "trace_routes", "verdict_down", "verdict_up"]

Verdict = Literal["in sync", "pending", "rejected", "offline", "absent"]


@dataclass(frozen=True, slots=True)
class DownEvidence:
    """What one zone's open stream knows about one wire name (None: no open stream)."""

    confirmed: str | None  # the version the zone reports holding
    rejected: tuple[str, str] | None  # (version, reason) it NACKed
    sent: tuple[str, float] | None  # (nonce, monotonic time) of the last response that carried it
    in_flight: bool  # that response is still awaiting its ACK/NACK

    @classmethod
    def of(cls, ks: TypeState, name: str) -> DownEvidence:
        flight = ks.in_flight
        carried = flight is not None and (name in flight.upserts or name in flight.removals)
        return cls(ks.confirmed.get(name), ks.rejected.get(name), ks.sent.get(name), carried)


def verdict_down(global_version: str | None, evidence: DownEvidence | None) -> tuple[Verdict, str]:
    if evidence is None:
        return "offline", "no open stream from the global to this zone"
    if evidence.rejected is not None and evidence.rejected[0] == global_version:
        return "rejected", evidence.rejected[1]
    if evidence.confirmed == global_version:
        return "in sync", "absent on both sides" if global_version is None else f"zone holds version {global_version}"
    if evidence.in_flight and evidence.sent is not None:
        return "pending", f"sent with nonce {evidence.sent[0]}, awaiting the zone's ACK"
    return "pending", "not sent yet"


def verdict_up(online: bool, held: Resource | None, rejection: str | None) -> tuple[Verdict, str]:
    if not online:
        return "offline", "zone is not connected" + ("; the global keeps its last copy" if held else "")
    if rejection is not None:
        return "rejected", rejection
    if held is not None:
        return "in sync", f"the global holds it as {held.meta.name}"
    return "absent", "the zone has not sent it (or it does not exist there)"


def _down(
    key: ResourceKey,
    source: SnapshotSource,
    streams: StreamRegistry,
    statuses: Mapping[str, ZoneStatus],
    now: Now,
) -> tuple[dict[str, Any], bool]:
    # What zones get: hash-suffixed, as every Kuma 2.7 and meshgate zone takes it (meshgate.kds.ownership);
    # a zone without `hash-suffix` gets another name, so another version, shown on its row.
    _, entry = source.offered(key, None, hash_suffix=True)
    global_version = entry.version if entry is not None else None
    known = entry is not None
    rows = []
    for zone, status in statuses.items():
        session = next((s for s in streams.by_zone(zone) if s.sender is not None), None)
        ks = session.sender.kinds.get(key.kind) if session is not None and session.sender else None
        hash_suffix = session is None or session.hash_suffix
        wire, offered = source.offered(key, None, hash_suffix=hash_suffix)
        evidence = DownEvidence.of(ks, wire) if ks is not None else None
        verdict, reason = verdict_down(offered.version if offered is not None else None, evidence)
        row: dict[str, Any] = {"zone": zone, "status": status, "verdict": verdict, "reason": reason}
        if session is not None and evidence is not None:
            known = known or bool(evidence.confirmed or evidence.rejected or evidence.sent)
            row["stream"] = session.stream_id
            row["wireName"] = wire
            if not hash_suffix:
                row["globalVersion"] = offered.version if offered is not None else None
            row["sent"] = (
                {"nonce": evidence.sent[0], "at": timestamp(now.wall_of(evidence.sent[1]))} if evidence.sent else None
            )
            row["inFlight"] = evidence.in_flight
            row["zoneVersion"] = evidence.confirmed
            row["rejected"] = (
                {"version": evidence.rejected[0], "reason": evidence.rejected[1]} if evidence.rejected else None
            )
        rows.append(row)
    return {"direction": "global-to-zone", "globalVersion": global_version, "zones": rows}, known


def _relayed(
    descriptor: KindDescriptor,
    copies: Mapping[str, Resource],
    zone: str,
    source: SnapshotSource,
    streams: StreamRegistry,
) -> tuple[Verdict, str]:
    """For a zone that did not make the resource: whether the copies the global relays to it arrived."""
    session = next((s for s in streams.by_zone(zone) if s.sender is not None), None)
    ks = session.sender.kinds.get(descriptor.name) if session is not None and session.sender else None
    results = []
    for origin, copy in sorted(copies.items()):
        wire, entry = source.offered(copy.key, zone, hash_suffix=session is None or session.hash_suffix)
        verdict, reason = verdict_down(entry.version if entry else None, DownEvidence.of(ks, wire) if ks else None)
        results.append((verdict, f"relayed from {origin} as {copy.meta.name}: {reason}"))
    order: list[Verdict] = ["in sync", "pending", "rejected", "offline", "absent"]
    return min(results, key=lambda v: order.index(v[0]))


async def _up(
    descriptor: KindDescriptor,
    name: str,
    mesh: str,
    store: ResourceStore,
    streams: StreamRegistry,
    statuses: Mapping[str, ZoneStatus],
    source: SnapshotSource,
) -> tuple[dict[str, Any], bool]:
    wire = wire_name(name, mesh)
    held_by_zone: dict[str, Resource] = {}
    for r in await list_all(store, descriptor.name, mesh if descriptor.mesh_scoped else None):
        labels = r.meta.labels
        if labels.get(LABEL_ORIGIN) == Origin.ZONE.value and labels.get(LABEL_DISPLAY_NAME) == name:
            held_by_zone.setdefault(labels.get(LABEL_ZONE, ""), r)
    rows = []
    for zone, status in statuses.items():
        held = held_by_zone.get(zone)
        session = next((s for s in streams.by_zone(zone) if s.receiver is not None), None)
        rk = session.receiver.kinds.get(descriptor.name) if session is not None and session.receiver else None
        rejection = next((r.reason for r in rk.last_rejections if r.name == wire), None) if rk else None
        verdict, reason = verdict_up(status == "online", held, rejection)
        if held is None and rejection is None and held_by_zone and descriptor.relayed_between_zones:
            # Not this zone's: the global relays the other zones' copies down to it.
            verdict, reason = _relayed(descriptor, held_by_zone, zone, source, streams)
        row: dict[str, Any] = {"zone": zone, "status": status, "verdict": verdict, "reason": reason}
        row["relayed"] = reason.startswith("relayed from ")
        row["present"] = held is not None
        if held is not None:
            row["globalName"] = held.meta.name
        if rk is not None and session is not None:
            row["stream"] = session.stream_id
            row["zoneVersion"] = rk.held[wire][1] if wire in rk.held else None
        rows.append(row)
    return {"direction": "zone-to-global", "zones": rows}, bool(held_by_zone)


def _looks_offline(row: Mapping[str, Any]) -> bool:
    return bool(row["verdict"] == "offline")


async def ask_other_replicas(
    request: web.Request,
    detail: dict[str, Any],
    streams: StreamRegistry,
    *,
    path: str = "/kds/trace",
    unanswered: Callable[[Mapping[str, Any]], bool] = _looks_offline,
) -> None:
    """Zones whose stream another replica holds look offline from here: ask that replica (the same `path`, with
    `local=1`) for their rows. `unanswered(row)`: whether this replica could not answer for the row's zone."""
    for i, row in enumerate(detail["zones"]):
        remote = streams.remote.get(row["zone"])
        if not unanswered(row) or remote is None or not remote.streaming:
            continue
        for replica, url in sorted(remote.api_urls.items()):
            query = {**request.query, "local": "1"}
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session,
                    session.get(f"{url}{path}", params=query, headers=await forwarded_authorization(request)) as resp,
                ):
                    if resp.status != 200:
                        continue
                    theirs = await resp.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                row["reason"] = f"streamed by replica {replica}, which did not answer: {exc}"
                continue
            match = next((r for r in theirs.get("zones", []) if r["zone"] == row["zone"]), None)
            if match is not None and match["verdict"] != "offline":
                detail["zones"][i] = {**match, "replica": replica}
                break


def trace_routes(
    store: ResourceStore, streams: StreamRegistry, source: SnapshotSource, policy: HealthPolicy
) -> list[ExtraRoute]:
    async def trace(request: web.Request) -> web.Response:
        try:
            descriptor = kinds.lookup(request.query.get("kind", ""))
        except UnknownKindError:
            raise bad_request(f"kind: unknown kind {request.query.get('kind', '')!r}") from None
        name = request.query.get("name", "")
        if not name:
            raise bad_request("name: required")
        mesh = request.query.get("mesh", "default") if descriptor.mesh_scoped else ""
        wire = wire_name(name, mesh)
        now, records = Now.current(), await read_zone_records(store)
        if descriptor.sync is SyncDirection.NONE:
            raise bad_request(f"kind: {descriptor.name} is not synced between the global and zones")
        # Every zone the global knows of: its records, and zones with (past) streams but no record.
        zones = sorted(set(known_zones(records, streams)) | streams.zones())
        statuses = {z: status_of(streams, z, zone_enabled(records.get(z)), now, policy) for z in zones}
        body: dict[str, Any] = {"kind": descriptor.name, "name": name, "mesh": mesh, "wireName": wire}
        detail: dict[str, Any] = {}
        known = False
        if descriptor.sends_to_zone() and descriptor.name in source.snapshots:
            detail, known = _down(ResourceKey(descriptor.name, mesh, name), source, streams, statuses, now)
        if not known and descriptor.sends_to_global():
            detail, known = await _up(descriptor, name, mesh, store, streams, statuses, source)
        elif detail and request.query.get("local") != "1":
            await ask_other_replicas(request, detail, streams)
        if not known:
            where = f' in mesh "{mesh}"' if descriptor.mesh_scoped else ""
            raise ApiError(
                404,
                "Could not trace a resource",
                f'{descriptor.name} "{name}"{where} is unknown to the global and to every connected zone',
            )
        return web.json_response({**body, **detail})

    return [
        ExtraRoute(
            "GET",
            "/kds/trace",
            trace,
            "Where one resource stands in every zone (?kind=, ?name=, ?mesh=): version, nonce, ACK/NACK, verdict",
        )
    ]
