"""`GET /vips` on the global: every zone's `.mesh` names with the VIP that zone gives each, asked of the zones.

VIPs are allocated by each zone (`zone_cp/dns.py`), so the global holds none; it asks every zone with a config
stream to this replica (a `VirtualIPs` request with no name, see `meshgate.transport.xds_configs`), all zones at
once, each for at most `VIP_WAIT` seconds. The body is the zone's own `GET /vips` shape with a `zone` on each
item (so `meshgatectl inspect vips` reads either), plus `zones`: each zone's status and, when it did not answer
(offline, streaming to another replica, a Kuma zone, a timeout), why not.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from aiohttp import web

from global_cp.insights import HealthPolicy, Now, known_zones, zone_enabled, zone_records
from global_cp.insights import zone_status as status_of
from meshgate.rest.app import ExtraRoute
from meshgate.store.protocol import ResourceStore
from meshgate.sync.streams import StreamRegistry
from meshgate.transport.xds_configs import VIRTUAL_IPS, ConfigDumpError, XDSConfigBroker

__all__ = ["VIP_WAIT", "vips_route"]

# How long the global waits for one zone's names: a page refresh should not hang on one silent zone.
VIP_WAIT = 2.0


def vips_route(
    store: ResourceStore, streams: StreamRegistry, policy: HealthPolicy, broker: XDSConfigBroker
) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh = request.query.get("mesh", "")
        now, records = Now.current(), await zone_records(store)
        zones = sorted(set(known_zones(records, streams)) | streams.zones())
        answers: dict[str, dict[str, Any]] = {}

        async def ask(zone: str) -> None:
            if not broker.connected(zone):
                answers[zone] = {"error": "no config stream from this zone to this global replica"}
                return
            try:
                raw = await broker.request(zone, mesh, "", resource_type=VIRTUAL_IPS, wait=VIP_WAIT)
                answers[zone] = json.loads(raw)
            except (ConfigDumpError, TimeoutError, ValueError) as exc:
                answers[zone] = {"error": str(exc)}

        async with anyio.create_task_group() as tg:
            for zone in zones:
                tg.start_soon(ask, zone)
        items: list[dict[str, Any]] = []
        problems: list[str] = []
        rows: list[dict[str, Any]] = []
        for zone in zones:
            answer = answers[zone]
            row: dict[str, Any] = {
                "zone": zone,
                "status": status_of(streams, zone, zone_enabled(records.get(zone)), now, policy),
            }
            if "error" in answer:
                row["error"] = answer["error"]
            else:
                zone_items = [{**item, "zone": zone} for item in answer.get("items") or []]
                row["total"] = len(zone_items)
                items.extend(zone_items)
                problems.extend(f"{zone}: {p}" for p in answer.get("problems") or [])
            rows.append(row)
        return web.json_response({"items": items, "total": len(items), "problems": problems, "zones": rows})

    return ExtraRoute(
        "GET",
        "/vips",
        handler,
        "Every zone's .mesh names with the VIP it gives each (?mesh=), asked of the zones over KDS",
    )
