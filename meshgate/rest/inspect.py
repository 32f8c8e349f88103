"""`GET /meshes/{mesh}/meshgateways/{name}/dataplanes`: the Dataplanes a MeshGateway serves, Kuma's way.

Kuma 2.7 (pkg/api-server/inspect_endpoints.go, `inspectGatewayDataplanes`, v2.7.29) answers a
`GatewayDataplanesInspectEntryList` (pkg/api-server/types/inspect.go): `{"total": N, "items":
[{"dataplane": {"mesh": M, "name": N}}]}`, listing every builtin gateway Dataplane of the mesh that the
gateway selects when it is the only candidate (`SelectDataplanePolicyWithMatcher(dp.Spec.Matches,
[gateway])`), which is `meshgate.resources.selectors.select_gateway_for` given that one gateway. `kumactl inspect
meshgateway NAME` prints the names. A missing mesh or gateway is a 404.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from meshgate.resources import kinds
from meshgate.resources.model import Resource, ResourceKey
from meshgate.resources.selectors import select_gateway_for
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import not_found
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.xds.gateway import is_builtin_gateway

__all__ = ["GATEWAY_DATAPLANES_SCHEMA", "gateway_dataplanes", "gateway_dataplanes_route"]

_KEY: JsonSchema = {
    "type": "object",
    "properties": {"mesh": {"type": "string"}, "name": {"type": "string"}},
    "required": ["mesh", "name"],
}
GATEWAY_DATAPLANES_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "Kuma's GatewayDataplanesInspectEntryList",
    "properties": {
        "total": {"type": "integer", "minimum": 0},
        "items": {
            "type": "array",
            "items": {"type": "object", "properties": {"dataplane": _KEY}, "required": ["dataplane"]},
        },
    },
    "required": ["total", "items"],
}


def gateway_dataplanes(gateway: Resource, dataplanes: Iterable[Resource]) -> dict[str, Any]:
    """The answer for `gateway`, given the Dataplanes of its mesh (in the order they are listed)."""
    items = [
        {"dataplane": {"mesh": dp.meta.mesh, "name": dp.meta.name}}
        for dp in dataplanes
        if is_builtin_gateway(dp) and select_gateway_for(dp, [gateway]) is not None
    ]
    return {"total": len(items), "items": items}


def gateway_dataplanes_route(store: ResourceStore) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh, name = request.match_info["mesh"], request.match_info["name"]
        try:
            await store.get(ResourceKey(kinds.MESH, "", mesh))
        except NotFoundError:
            raise not_found("Could not build mesh context") from None
        try:
            gateway = await store.get(ResourceKey(kinds.MESH_GATEWAY, mesh, name))
        except NotFoundError:
            raise not_found("Could not find MeshGateway") from None
        return web.json_response(
            gateway_dataplanes(gateway, [dp async for dp in iter_all(store, kinds.DATAPLANE, mesh)])
        )

    return ExtraRoute(
        "GET",
        "/meshes/{mesh}/meshgateways/{name}/dataplanes",
        handler,
        "The builtin gateway Dataplanes this MeshGateway selects (Kuma's GatewayDataplanesInspectEntryList)",
        GATEWAY_DATAPLANES_SCHEMA,
    )
