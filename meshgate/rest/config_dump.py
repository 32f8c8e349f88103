"""`GET /meshes/{mesh}/dataplanes/{name}/xds`: a proxy's Envoy config dump, on the zone and on the global.

Zone: read from the proxy's Envoy admin at the peer address of its live authenticated xDS stream, on the
admin port it declared there (never a port the Dataplane resource names), so the zone must reach that port.
Global: find the Dataplane (by its stored, hash-suffixed name or by `kuma.io/display-name`), then ask its
zone (`kuma.io/zone`) over `GlobalKDSService/StreamXDSConfigs`.

`?include_eds` (or `include_eds=true`, or Kuma's `include=eds`) adds endpoints to the dump.

Errors (Kuma error bodies): 404 no such Dataplane; 409 a display name that matches Dataplanes of several zones,
or (zone) a Dataplane whose proxy has no live authenticated xDS stream;
502 the zone answered with an error (proxy admin unreachable); 503 the zone is offline; 504 no answer in time.
"""

from __future__ import annotations

from aiohttp import web

from meshgate.resources import kinds
from meshgate.resources.model import LABEL_DISPLAY_NAME, LABEL_ZONE, Resource, ResourceKey
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import ApiError, not_found
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.transport.xds_configs import (
    ConfigDumper,
    ConfigDumpError,
    DataplaneNotFound,
    ProxyNotConnected,
    XDSConfigBroker,
    ZoneOffline,
)

__all__ = ["find_dataplane", "global_config_dump_route", "zone_config_dump_route"]

PATH = "/meshes/{mesh}/dataplanes/{name}/xds"
TITLE = "Could not get the config dump"


def include_eds(request: web.Request) -> bool:
    q = request.query
    if "include_eds" in q:
        return q["include_eds"].lower() in ("", "1", "true", "yes")
    return "eds" in q.getall("include", [])


def _dump_response(config: bytes) -> web.Response:
    return web.Response(body=config, content_type="application/json")


def zone_config_dump_route(dumper: ConfigDumper) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh, name = request.match_info["mesh"], request.match_info["name"]
        try:
            return _dump_response(await dumper.dump(mesh, name, include_eds(request)))
        except DataplaneNotFound:
            raise not_found("Could not find a resource") from None
        except ProxyNotConnected as exc:
            raise ApiError(409, TITLE, str(exc)) from None
        except ConfigDumpError as exc:
            raise ApiError(502, TITLE, str(exc)) from None

    return ExtraRoute("GET", PATH, handler, "A connected proxy's Envoy config dump, from its admin port")


async def find_dataplane(store: ResourceStore, mesh: str, name: str) -> Resource:
    """The Dataplane stored as `name`, else the one whose `kuma.io/display-name` is `name` (404, or 409 when
    several zones have one)."""
    try:
        return await store.get(ResourceKey(kinds.DATAPLANE, mesh, name))
    except NotFoundError:
        pass
    found = [d async for d in iter_all(store, kinds.DATAPLANE, mesh) if d.meta.labels.get(LABEL_DISPLAY_NAME) == name]
    if not found:
        raise not_found("Could not find a resource")
    if len(found) > 1:
        names = ", ".join(f"{d.meta.name} (zone {d.meta.labels.get(LABEL_ZONE, '?')})" for d in found)
        raise ApiError(409, TITLE, f'"{name}" names Dataplanes in several zones; use the stored name: {names}')
    return found[0]


def global_config_dump_route(store: ResourceStore, broker: XDSConfigBroker) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh, name = request.match_info["mesh"], request.match_info["name"]
        dataplane = await find_dataplane(store, mesh, name)
        zone = dataplane.meta.labels.get(LABEL_ZONE, "")
        if not zone:
            raise ApiError(502, TITLE, f'Dataplane "{name}" has no {LABEL_ZONE} label: no zone to ask')
        zone_name = dataplane.meta.labels.get(LABEL_DISPLAY_NAME) or dataplane.meta.name
        try:
            config = await broker.request(zone, mesh, zone_name, include_eds=include_eds(request))
        except ZoneOffline as exc:
            raise ApiError(503, TITLE, str(exc)) from None
        except TimeoutError as exc:
            raise ApiError(504, TITLE, str(exc)) from None
        except ConfigDumpError as exc:
            raise ApiError(502, TITLE, f'zone "{zone}": {exc}') from None
        return _dump_response(config)

    return ExtraRoute("GET", PATH, handler, "A proxy's Envoy config dump, asked of its zone over KDS")
