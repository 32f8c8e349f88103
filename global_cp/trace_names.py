"""`GET /kds/trace/name`: why a `.mesh` name exists, and whether each zone has what makes it.

A zone derives its `.mesh` names from resources it holds (gateway.md, "DNS and VIPs"): the `kuma.io/service`
tags of Dataplane inbounds (its own, and other zones' relayed through the global) and crossMesh MeshGateway
listeners. The global sees all of them, so it can answer "why does `echo.default.svc.80.mesh` resolve in
zone-1 but not in zone-3?" without asking the zones:

- **sources**: every resource that produces the name, in any mesh (or the one asked for);
- **per zone**, for each source: `origin` when the zone made it, else the KDS verdict of its delivery to
  that zone (in sync, pending, rejected, offline; see `global_cp.trace`). The zone's verdict for the name is
  the best of its sources': a zone holding any source serves the name.
- **the zone's VIP**: asked of each connected zone over its `StreamXDSConfigs` stream (a `VirtualIPs` request,
  see `meshgate.transport.xds_configs`), at most `VIP_WAIT` seconds, all zones at once. A zone that does not
  answer (another replica streams it, a Kuma zone, a timeout) shows the VIP as unknown, with the reason.

`name_sources` and `zone_verdict` are pure; `trace_name_route` gathers the evidence.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from aiohttp import web

from global_cp.insights import HealthPolicy, Now, ZoneStatus, known_zones, list_all, zone_enabled
from global_cp.insights import zone_records as read_zone_records
from global_cp.insights import zone_status as status_of
from global_cp.trace import DownEvidence, Verdict, ask_other_replicas, verdict_down
from meshgate.dns.names import cross_mesh_name, service_names
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ORIGIN, LABEL_ZONE, Origin, Resource, ResourceKey
from meshgate.resources.tags import TAG_SERVICE
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import ApiError, bad_request
from meshgate.store.protocol import ResourceStore
from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import StreamRegistry
from meshgate.transport.xds_configs import VIRTUAL_IPS, ConfigDumpError, XDSConfigBroker

__all__ = ["NameSource", "name_sources", "trace_name_route", "zone_verdict"]

# How long the trace waits for a zone to say which VIP it gives the name.
VIP_WAIT = 2.0
# A zone that made a source holds it by definition; better than any delivery verdict.
ORIGIN = "origin"
_RANK = {ORIGIN: 0, "in sync": 1, "pending": 2, "rejected": 3, "offline": 4, "absent": 5}


@dataclass(frozen=True, slots=True)
class NameSource:
    kind: str  # kinds.DATAPLANE or kinds.MESH_GATEWAY
    mesh: str
    name: str  # as the user named it (display name)
    global_name: str  # as the global stores it (hash-suffixed for zone-made resources)
    zone: str  # the zone that made it; "" for the global's own
    port: int  # the VIP port the name listens on
    detail: str  # "inbound kuma.io/service: echo_default_svc_80", "crossMesh listener :8080"


def _zone_of(r: Resource) -> str:
    labels = r.meta.labels
    return labels.get(LABEL_ZONE, "") if labels.get(LABEL_ORIGIN) == Origin.ZONE.value else ""


def name_sources(
    name: str, dataplanes: Iterable[Resource], gateways: Iterable[Resource], *, domain: str = "mesh"
) -> list[NameSource]:
    """Every resource that makes `name` exist, by the same rules the zones apply (`meshgate.dns.names`)."""
    wanted = name.lower().rstrip(".")
    domain = domain.lower().strip(".")
    out: list[NameSource] = []
    for dp in dataplanes:
        display = dp.meta.labels.get(LABEL_DISPLAY_NAME) or dp.meta.name
        for inbound in dp.spec.networking.inbound:  # type: ignore[attr-defined]
            service = inbound.tags.get(TAG_SERVICE, "")
            if service and wanted in service_names(service, domain):
                detail = f"inbound {TAG_SERVICE}: {service}"
                out.append(NameSource(kinds.DATAPLANE, dp.meta.mesh, display, dp.meta.name, _zone_of(dp), 80, detail))
                break
    for gw in gateways:
        display = gw.meta.labels.get(LABEL_DISPLAY_NAME) or gw.meta.name
        for listener in gw.spec.conf.listeners:  # type: ignore[attr-defined]
            if listener.crossMesh and cross_mesh_name(listener.hostname, display, gw.meta.mesh, domain) == wanted:
                detail = f"crossMesh listener :{listener.port}"
                port = int(listener.port)
                out.append(
                    NameSource(kinds.MESH_GATEWAY, gw.meta.mesh, display, gw.meta.name, _zone_of(gw), port, detail)
                )
    return sorted(out, key=lambda s: (s.mesh, s.kind, s.zone, s.name))


def zone_verdict(verdicts: Iterable[tuple[str, str]]) -> tuple[str, str]:
    """The best (verdict, reason) among a zone's sources; ("absent", ...) when there are none."""
    best = min(verdicts, key=lambda v: _RANK.get(v[0], len(_RANK)), default=None)
    return best if best is not None else ("absent", "no source of this name reaches this zone")


def _source_in_zone(
    source: NameSource, zone: str, status: ZoneStatus, kds: SnapshotSource, streams: StreamRegistry
) -> tuple[Verdict | str, str]:
    if source.zone == zone:
        return ORIGIN, f"{source.kind} {source.name} was created in this zone"
    if source.zone and source.kind == kinds.MESH_GATEWAY:
        return "absent", f"MeshGateway {source.name} was created in zone {source.zone}; zone-made gateways stay there"
    session = next((s for s in streams.by_zone(zone) if s.sender is not None), None)
    key = ResourceKey(source.kind, source.mesh, source.global_name)
    wire, entry = kds.offered(key, zone, hash_suffix=session is None or session.hash_suffix)
    ks = session.sender.kinds.get(source.kind) if session is not None and session.sender else None
    verdict, reason = verdict_down(entry.version if entry else None, DownEvidence.of(ks, wire) if ks else None)
    if verdict == "in sync":
        reason = f"holds {source.kind} {wire} (version {entry.version if entry else '-'})"
    if status != "online" and verdict == "offline":
        reason = f"zone is {status}"
    return verdict, reason


async def _zone_vips(broker: XDSConfigBroker, zones: Iterable[str], mesh: str, name: str) -> dict[str, dict[str, Any]]:
    """Per zone: {"vip": ..., "ports": ...} as the zone answers, or {"vipError": why not}."""
    out: dict[str, dict[str, Any]] = {}

    async def ask(zone: str) -> None:
        if not broker.connected(zone):
            out[zone] = {"vipError": "no config stream from this zone to this global replica"}
            return
        try:
            raw = await broker.request(zone, mesh, name, resource_type=VIRTUAL_IPS, wait=VIP_WAIT)
            entry = json.loads(raw)
            out[zone] = {"vip": entry["vip"], "ports": entry["ports"], "vipMesh": entry["mesh"]}
        except (ConfigDumpError, TimeoutError, ValueError, KeyError) as exc:
            out[zone] = {"vipError": str(exc)}

    async with anyio.create_task_group() as tg:
        for zone in zones:
            tg.start_soon(ask, zone)
    return out


def trace_name_route(
    store: ResourceStore,
    streams: StreamRegistry,
    kds: SnapshotSource,
    policy: HealthPolicy,
    broker: XDSConfigBroker | None = None,
) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        name = request.query.get("name", "").strip()
        if not name:
            raise bad_request("name: required")
        mesh = request.query.get("mesh") or None
        domain = request.query.get("domain", "mesh")
        dataplanes = await list_all(store, kinds.DATAPLANE, mesh)
        gateways = await list_all(store, kinds.MESH_GATEWAY, mesh)
        sources = name_sources(name, dataplanes, gateways, domain=domain)
        if not sources:
            where = f' in mesh "{mesh}"' if mesh else " in any mesh"
            raise ApiError(404, "Could not trace a name", _why_not(name, domain) + where)
        now, records = Now.current(), await read_zone_records(store)
        zones = sorted(set(known_zones(records, streams)) | streams.zones())
        statuses = {z: status_of(streams, z, zone_enabled(records.get(z)), now, policy) for z in zones}
        meshes = sorted({s.mesh for s in sources})
        vips = await _zone_vips(broker, zones, mesh or "", name) if broker is not None else {}
        rows = []
        for zone, status in statuses.items():
            per_source = [_source_in_zone(s, zone, status, kds, streams) for s in sources]
            verdict, reason = zone_verdict(per_source)
            rows.append(
                {
                    "zone": zone,
                    "status": status,
                    "verdict": verdict,
                    "reason": reason,
                    "sources": [{"verdict": v, "reason": r} for v, r in per_source],
                    **vips.get(zone, {}),
                }
            )
        body = {
            "name": name.lower().rstrip("."),
            "meshes": meshes,
            "sources": [_source_doc(s) for s in sources],
            "zones": rows,
        }
        if request.query.get("local") != "1":
            # HA: a zone streaming to another replica has no stream here; that replica answers for it.
            local = {zone for zone in zones if any(s.sender is not None for s in streams.by_zone(zone))}
            await ask_other_replicas(
                request, body, streams, path="/kds/trace/name", unanswered=lambda row: row["zone"] not in local
            )
        return web.json_response(body)

    return ExtraRoute(
        "GET",
        "/kds/trace/name",
        handler,
        "Why a .mesh name exists (?name=, ?mesh=, ?domain=): its sources and, per zone, whether they arrived",
    )


def _source_doc(s: NameSource) -> Mapping[str, Any]:
    return {
        "kind": s.kind,
        "mesh": s.mesh,
        "name": s.name,
        "globalName": s.global_name,
        "zone": s.zone or None,
        "port": s.port,
        "detail": s.detail,
    }


def _why_not(name: str, domain: str) -> str:
    """A 404 that says what would make the name exist."""
    wanted = name.lower().rstrip(".")
    suffix = "." + domain.lower().strip(".")
    if not wanted.endswith(suffix):
        return f"{wanted} is not under the .{domain.strip('.')} domain"
    label = wanted.removesuffix(suffix)
    services = sorted({label, label.replace(".", "_")})
    wanted_tags = " or ".join(f"{TAG_SERVICE}: {s}" for s in services)
    return f"no Dataplane inbound with {wanted_tags} and no crossMesh MeshGateway listener makes {wanted}"
