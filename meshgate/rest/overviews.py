"""Kuma's DataplaneOverview (`dataplanes+insights`), served by the global and by a zone alike.

Kuma 2.7 serves one handler under two names each (pkg/api-server/resource_endpoints.go, v2.7.29):
`/meshes/{mesh}/dataplanes/_overview` and its legacy name `/meshes/{mesh}/dataplanes+insights` (what
`kumactl inspect dataplanes` calls), `.../dataplanes/{name}/_overview` and `.../dataplanes+insights/{name}`,
and across meshes `/dataplanes/_overview` and `/dataplanes+insights`. Lists page as every list does.

The filters are Kuma's (pkg/api-server/filters/filtering.go): `gateway` = true | false | builtin |
delegated, `tag=KEY:VALUE` (repeatable; every tag must be on one inbound, or on the gateway, with VALUE a
substring of its value or `*`), `name` (the name contains it); and ours, `zone` (the Dataplane's
`kuma.io/zone` label; a zone counts its unlabelled Dataplanes as its own).

An item is the Dataplane's metadata, `type: DataplaneOverview`, its spec under `dataplane`, and
`dataplaneInsight` when the process knows the proxy's xDS streams, as Kuma leaves it out when there is no
DataplaneInsight. What a process adds beside Kuma's fields comes from its `Annotator`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from meshgate.resources import codec, kinds
from meshgate.resources.errors import Violation
from meshgate.resources.model import LABEL_ZONE, Resource, ResourceKey
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import bad_request, not_found, validation_failed
from meshgate.rest.openapi import PAGE_PARAMS
from meshgate.rest.paging import listing, parse_page
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.xds.gateway import is_builtin_gateway

__all__ = [
    "DATAPLANE_OVERVIEW_SCHEMA",
    "Annotation",
    "Annotator",
    "DataplaneFilter",
    "dataplane_overview",
    "dataplane_overview_routes",
]

MATCH_ALL = "*"
_GATEWAY_MODES = ("true", "false", "builtin", "delegated")


@dataclass(frozen=True, slots=True)
class Annotation:
    """What a process knows of one Dataplane beyond the store: its DataplaneInsight (None: unknown, left out)
    and fields of its own, written after Kuma's."""

    insight: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


# Called once per request, so that shared state (the clock, the zone records) is read once per answer; the
# function it returns annotates each Dataplane.
Annotator = Callable[[], Awaitable[Callable[[Resource], Annotation]]]


def dataplane_overview(dataplane: Resource, annotation: Annotation = Annotation()) -> dict[str, Any]:
    """Kuma's DataplaneOverview in its REST form: metadata, then `dataplane` and `dataplaneInsight`."""
    doc = codec.encode(dataplane)
    meta = ("type", "mesh", "name", "creationTime", "modificationTime", "labels")
    out: dict[str, Any] = {k: doc[k] for k in meta if k in doc}
    out["type"] = "DataplaneOverview"
    out["dataplane"] = {k: v for k, v in doc.items() if k not in codec.META_KEYS}
    if annotation.insight is not None:
        out["dataplaneInsight"] = dict(annotation.insight)
    out.update({k: v for k, v in annotation.extra.items() if k not in out})
    return out


def _fuzzy(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Kuma's TagSelector.MatchesFuzzy."""
    return all(key in tags and (value in tags[key] or value == MATCH_ALL) for key, value in selector.items())


@dataclass(frozen=True, slots=True)
class DataplaneFilter:
    gateway: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    name: str = ""
    zone: str | None = None

    @classmethod
    def parse(cls, query: MultiMapping[str]) -> DataplaneFilter:
        """Raises ApiError 400 for a `gateway` outside Kuma's four modes or an empty `zone`."""
        gateway = query.get("gateway", "").lower()
        if gateway and gateway not in _GATEWAY_MODES:
            reason = f"should use `true`, `false`, 'builtin' or 'delegated' instead of {gateway}"
            raise validation_failed([Violation("gateway", reason)], title="Could not retrieve resources")
        tags: dict[str, str] = {}
        for value in query.getall("tag", []):
            key, sep, tag_value = value.partition(":")  # a value may hold ":"; only the first one splits
            if sep:  # Kuma ignores a tag without ":"
                tags[key] = tag_value
        zone = query.get("zone")
        if zone == "":
            raise bad_request("zone: must not be empty when given")
        return cls(gateway, tags, query.get("name", ""), zone)

    def matches(self, dataplane: Resource, local_zone: str = "") -> bool:
        networking: Any = dataplane.spec.networking  # type: ignore[attr-defined]
        has_gateway = networking.HasField("gateway")
        builtin = is_builtin_gateway(dataplane)
        gateway_ok = {
            "": True,
            "true": has_gateway,
            "false": not has_gateway,
            "builtin": builtin,
            "delegated": has_gateway and not builtin,
        }[self.gateway]
        if not gateway_ok or self.name not in dataplane.meta.name:
            return False
        # Kuma's Dataplane.MatchTagsFuzzy: all the tags on one inbound, or on the gateway.
        tag_sets = [*(inbound.tags for inbound in networking.inbound), networking.gateway.tags]
        if self.tags and not any(_fuzzy(self.tags, tags) for tags in tag_sets):
            return False
        return self.zone is None or dataplane.meta.labels.get(LABEL_ZONE, local_zone) == self.zone


def _string_query(name: str, description: str) -> JsonSchema:
    return {"name": name, "in": "query", "description": description, "schema": {"type": "string"}}


_COUNTS: JsonSchema = {
    "type": "object",
    "properties": {
        k: {"type": "string", "pattern": "^[0-9]+$"}
        for k in ("responsesSent", "responsesAcknowledged", "responsesRejected")
    },
}
_SUBSCRIPTION: JsonSchema = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "controlPlaneInstanceId": {"type": "string"},
        "connectTime": {"type": "string", "format": "date-time"},
        "disconnectTime": {"type": "string", "format": "date-time"},
        "status": {
            "type": "object",
            "properties": {
                "lastUpdateTime": {"type": "string", "format": "date-time"},
                **{k: _COUNTS for k in ("total", "cds", "eds", "lds", "rds")},
            },
            "required": ["total"],
        },
    },
    "required": ["id", "controlPlaneInstanceId", "connectTime", "status"],
}
DATAPLANE_OVERVIEW_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "Kuma's DataplaneOverview: the Dataplane's spec and, when known, its DataplaneInsight",
    "properties": {
        "type": {"type": "string", "const": "DataplaneOverview"},
        "mesh": {"type": "string"},
        "name": {"type": "string"},
        "creationTime": {"type": "string", "format": "date-time"},
        "modificationTime": {"type": "string", "format": "date-time"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "dataplane": {"type": "object", "properties": {"networking": {"type": "object"}}},
        "dataplaneInsight": {
            "type": "object",
            "properties": {"subscriptions": {"type": "array", "items": _SUBSCRIPTION}},
        },
    },
    "required": ["type", "mesh", "name", "dataplane"],
}
_LIST_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "total": {"type": "integer", "minimum": 0},
        "items": {"type": "array", "items": DATAPLANE_OVERVIEW_SCHEMA},
        "next": {"type": ["string", "null"]},
    },
    "required": ["total", "items", "next"],
}
_FILTER_PARAMS: tuple[JsonSchema, ...] = (
    _string_query("gateway", "true, false, builtin or delegated"),
    {
        "name": "tag",
        "in": "query",
        "description": "KEY:VALUE; repeatable",
        "schema": {"type": "array", "items": {"type": "string"}},
        "style": "form",
        "explode": True,
    },
    _string_query("name", "only Dataplanes whose name contains this"),
    _string_query("zone", "only Dataplanes of this zone"),
)


def dataplane_overview_routes(store: ResourceStore, annotate: Annotator, *, local_zone: str = "") -> list[ExtraRoute]:
    """The six routes (each under Kuma's two names); `local_zone` is the zone an unlabelled Dataplane is in."""

    async def list_overviews(request: web.Request) -> web.Response:
        page = parse_page(request.query)  # Kuma's order: the page, the filter, then the mesh
        wanted = DataplaneFilter.parse(request.query)
        mesh = request.match_info.get("mesh")
        if mesh is not None:
            await _require_mesh(store, mesh)
        annotation_of = await annotate()
        found = [dp async for dp in iter_all(store, kinds.DATAPLANE, mesh) if wanted.matches(dp, local_zone)]
        return listing(request, page, found, lambda dp: dataplane_overview(dp, annotation_of(dp)))

    async def one_overview(request: web.Request) -> web.Response:
        mesh = request.match_info["mesh"]
        await _require_mesh(store, mesh)
        try:
            dataplane = await store.get(ResourceKey(kinds.DATAPLANE, mesh, request.match_info["name"]))
        except NotFoundError:
            raise not_found("Could not retrieve a resource") from None
        annotation_of = await annotate()
        return web.json_response(dataplane_overview(dataplane, annotation_of(dataplane)))

    query = (*PAGE_PARAMS, *_FILTER_PARAMS)
    routes: list[ExtraRoute] = []
    for prefix, where in (("/meshes/{mesh}", "of a mesh"), ("", "of every mesh")):
        summary = f"Dataplanes {where} with their insights (Kuma's DataplaneOverview list)"
        for path in (f"{prefix}/dataplanes/_overview", f"{prefix}/dataplanes+insights"):
            routes.append(ExtraRoute("GET", path, list_overviews, summary, _LIST_SCHEMA, query))
    one = "One Dataplane with its insight (Kuma's DataplaneOverview)"
    for path in ("/meshes/{mesh}/dataplanes/{name}/_overview", "/meshes/{mesh}/dataplanes+insights/{name}"):
        routes.append(ExtraRoute("GET", path, one_overview, one, DATAPLANE_OVERVIEW_SCHEMA))
    return routes


async def _require_mesh(store: ResourceStore, mesh: str) -> None:
    try:
        await store.get(ResourceKey(kinds.MESH, "", mesh))
    except NotFoundError:
        raise not_found("Failed to retrieve Mesh") from None
