"""`GET /meshes/{mesh}/meshgateways/{name}/dataplanes`: the Dataplanes a MeshGateway serves, Kuma's way.

Kuma 2.7 (pkg/api-server/inspect_endpoints.go, `inspectGatewayDataplanes`, v2.7.29) answers a
`GatewayDataplanesInspectEntryList` (pkg/api-server/types/inspect.go): `{"total": N, "items":
[{"dataplane": {"mesh": M, "name": N}}]}`, listing every builtin gateway Dataplane of the mesh that the
gateway selects when it is the only candidate (`SelectDataplanePolicyWithMatcher(dp.Spec.Matches,
[gateway])`), which is `meshgate.resources.selectors.select_gateway_for` given that one gateway. `kumactl inspect
meshgateway NAME` prints the names. A missing mesh or gateway is a 404.

`GET /meshes/{mesh}/meshgateways/{name}/listeners` (ours, for the GUI's gateway page): what each of those
Dataplanes serves, as the zone's xDS generation binds it (`meshgate.xds.gateway.bind`): per Envoy listener its
port, protocol and hostnames, each with the MeshGatewayRoutes bound to it, and the Dataplane's zone. Routes bind
to a listener's tags merged with the Dataplane's, so the answer is per Dataplane; a gateway that no Dataplane
serves yet is bound against the tags of its first selector (what a Dataplane must carry to be selected).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aiohttp import web

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_ZONE, Meta, Resource, ResourceKey
from meshgate.resources.selectors import select_gateway_for
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import not_found
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.xds.gateway import GatewayBinding, bind, is_builtin_gateway

__all__ = [
    "GATEWAY_DATAPLANES_SCHEMA",
    "gateway_dataplanes",
    "gateway_dataplanes_route",
    "gateway_listeners",
    "gateway_listeners_route",
]

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


async def _gateway(store: ResourceStore, mesh: str, name: str) -> Resource:
    try:
        await store.get(ResourceKey(kinds.MESH, "", mesh))
    except NotFoundError:
        raise not_found("Could not build mesh context") from None
    try:
        return await store.get(ResourceKey(kinds.MESH_GATEWAY, mesh, name))
    except NotFoundError:
        raise not_found("Could not find MeshGateway") from None


def gateway_dataplanes_route(store: ResourceStore) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh = request.match_info["mesh"]
        gateway = await _gateway(store, mesh, request.match_info["name"])
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


def _binding_doc(binding: GatewayBinding) -> dict[str, Any]:
    return {
        "listeners": [
            {
                "name": listener.name,
                "port": listener.port,
                "protocol": MeshGateway.Listener.Protocol.Name(listener.protocol),
                "crossMesh": listener.cross_mesh,
                "hostnames": [
                    {
                        "hostname": vh.hostname,
                        "routes": [{"name": r.meta.name, "displayName": r.meta.display_name} for r in vh.routes],
                    }
                    for group in listener.groups
                    for vh in group.virtual_hosts
                ],
            }
            for listener in binding.listeners
        ],
        "problems": list(binding.problems),
    }


def _stand_in(gateway: Resource) -> Resource:
    """A Dataplane carrying the tags of the gateway's first selector: what binding looks like once one serves it."""
    spec: Any = gateway.spec
    dataplane = Dataplane()
    dataplane.networking.gateway.type = Dataplane.Networking.Gateway.BUILTIN
    if spec.selectors:
        dataplane.networking.gateway.tags.update(spec.selectors[0].match)
    return Resource(kinds.DATAPLANE, Meta(name="", mesh=gateway.meta.mesh), dataplane)


def gateway_listeners(
    gateway: Resource, dataplanes: Iterable[Resource], routes: Iterable[Resource], local_zone: str = ""
) -> dict[str, Any]:
    """Per Dataplane serving `gateway`: its zone and the listeners with the routes bound to each hostname."""
    routes = list(routes)
    serving = [dp for dp in dataplanes if is_builtin_gateway(dp) and select_gateway_for(dp, [gateway]) is not None]
    items = [
        {
            "dataplane": {"mesh": dp.meta.mesh, "name": dp.meta.name, "displayName": dp.meta.display_name},
            "zone": dp.meta.labels.get(LABEL_ZONE, local_zone),
            **_binding_doc(bind(dp, gateway, routes)),
        }
        for dp in serving
    ]
    out: dict[str, Any] = {"total": len(items), "items": items}
    if not items:
        out["unserved"] = _binding_doc(bind(_stand_in(gateway), gateway, routes))
    return out


def gateway_listeners_route(store: ResourceStore, *, local_zone: str = "") -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh = request.match_info["mesh"]
        gateway = await _gateway(store, mesh, request.match_info["name"])
        dataplanes = [dp async for dp in iter_all(store, kinds.DATAPLANE, mesh)]
        routes = [r async for r in iter_all(store, kinds.MESH_GATEWAY_ROUTE, mesh)]
        return web.json_response(gateway_listeners(gateway, dataplanes, routes, local_zone))

    return ExtraRoute(
        "GET",
        "/meshes/{mesh}/meshgateways/{name}/listeners",
        handler,
        "Per Dataplane serving this MeshGateway: its zone, listeners and hostnames, and the routes bound to each",
    )
