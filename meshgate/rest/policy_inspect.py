"""`GET /meshes/{mesh}/dataplanes/{name}/policies`: which policy shaped what on a gateway, and why others lost.

Kuma 2.7 answers this path (pkg/api-server/inspect_endpoints.go:53, `inspectDataplane`) by building the mesh's
`MeshContext`, matching the proxy's policies and returning a `DataplaneInspectResponse`
(pkg/api-server/types/inspect.go:146): `{"kind": "SidecarDataplane", "total", "items"}` for a sidecar, and for a
builtin gateway `{"kind": "MeshGatewayDataplane", "gateway": {"mesh", "name"}, "listeners": [...]}`
(types/gateway.go:28), the winning policy of each kind per route destination. `kumactl inspect dataplane NAME
--type=policies` prints it.

meshgate keeps Kuma's path and envelope (`kind`, `gateway`, and for a non-gateway Dataplane the empty sidecar
list, since meshgate applies no policy to sidecars) and answers, for a gateway, what its generation actually
recorded (`Snapshot.policies`, a `PolicyReport`) rather than Kuma's destination tree, because that tree cannot
say why a policy lost:

    {"kind": "MeshGatewayDataplane",
     "dataplane": {"mesh", "name"}, "gateway": {"mesh", "name"},
     "applied": [{"type": "Timeout", "target": "listener" | "route" | "cluster" | ..., "name": <Envoy name>,
                  "policy": {"mesh", "name"}, "losers": [{"name", "reason"}]}],
     "ignored": [{"type": "TrafficRoute", "policies": [names], "reason"}],
     "denied": [{"type": "TrafficPermission", "backend": {tags}, "reason"}],  (answered 403)
     "problems": [what generation skipped]}

**Where it is computed.** On the zone from the zone's store, as its xDS loop does (`read_mesh_context` reads the
same kinds). On the global the same way, from the global's store, rather than forwarded to the zone: generation
is a pure function of resources (`generate(proxy, MeshContext)`), and the global holds every one of them (the
policies, MeshGateways, routes and Secrets it created, and every zone's Dataplanes synced up over KDS). So no
new KDS message is needed, an offline zone can still be inspected, and the answer is the one the zone computes
once KDS has delivered the same resources. The context's zone is the Dataplane's `kuma.io/zone`, so endpoint
locality is the zone's view. The global finds the Dataplane by its stored name or its `kuma.io/display-name`
(`config_dump.find_dataplane`).

Errors (Kuma bodies): 404 no such mesh or Dataplane; 409 a display name naming Dataplanes of several zones.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from meshgate.api.system.v1alpha1 import secret_pb2
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_ZONE, Resource, ResourceKey
from meshgate.resources.selectors import select_gateway_for
from meshgate.rest.app import ExtraRoute
from meshgate.rest.config_dump import find_dataplane
from meshgate.rest.errors import not_found
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.xds import generate
from meshgate.xds.context import MeshContext, context_kinds, policy_kinds
from meshgate.xds.gateway import is_builtin_gateway
from meshgate.xds.policies import Target
from meshgate.xds.snapshot import Snapshot

__all__ = [
    "DATAPLANE_POLICIES_SCHEMA",
    "PATH",
    "dataplane_policies",
    "global_policies_route",
    "read_mesh_context",
    "zone_policies_route",
]

PATH = "/meshes/{mesh}/dataplanes/{name}/policies"
GATEWAY_KIND = "MeshGatewayDataplane"  # Kuma's types.GatewayDataplane
SIDECAR_KIND = "SidecarDataplane"

_KEY: JsonSchema = {
    "type": "object",
    "properties": {"mesh": {"type": "string"}, "name": {"type": "string"}},
    "required": ["mesh", "name"],
}
_STRINGS: JsonSchema = {"type": "array", "items": {"type": "string"}}
DATAPLANE_POLICIES_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "Kuma's DataplaneInspectResponse envelope; for a gateway, what each policy shaped, why others lost",
    "properties": {
        "kind": {"type": "string", "enum": [GATEWAY_KIND, SIDECAR_KIND]},
        "dataplane": _KEY,
        "gateway": _KEY,
        "applied": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "target": {"type": "string", "enum": [t.value for t in Target]},
                    "name": {"type": "string"},
                    "policy": _KEY,
                    "losers": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"name": {"type": "string"}, "reason": {"type": "string"}},
                        },
                    },
                },
            },
        },
        "ignored": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"type": {"type": "string"}, "policies": _STRINGS, "reason": {"type": "string"}},
            },
        },
        "problems": _STRINGS,
        "total": {"type": "integer", "minimum": 0},
        "items": {"type": "array"},
    },
    "required": ["kind"],
}


def _secret_bytes(secret: Resource) -> bytes:
    spec = secret.spec
    assert isinstance(spec, secret_pb2.Secret)
    return bytes(spec.data.value)


async def read_mesh_context(store: ResourceStore, mesh: str, *, zone: str) -> MeshContext | None:
    """`mesh`'s context as the zone's xDS loop reads it (without VIPs and cross-mesh, which no policy matches
    on), or None when there is no such Mesh."""
    try:
        mesh_resource = await store.get(ResourceKey(kinds.MESH, "", mesh))
    except NotFoundError:
        return None

    async def all_of(kind: str) -> list[Resource]:
        return [r async for r in iter_all(store, kind, mesh)]

    return MeshContext.build(
        mesh,
        zone=zone,
        mesh_resource=mesh_resource,
        dataplanes=await all_of(kinds.DATAPLANE),
        gateways=await all_of(kinds.MESH_GATEWAY),
        routes=await all_of(kinds.MESH_GATEWAY_ROUTE),
        secrets={r.meta.name: _secret_bytes(r) for r in await all_of(kinds.SECRET)},
        policies={kind: await all_of(kind) for kind in policy_kinds()},
        resources={kind: await all_of(kind) for kind in context_kinds()},
    )


def _key(resource: Resource) -> dict[str, str]:
    return {"mesh": resource.meta.mesh, "name": resource.meta.name}


def dataplane_policies(dataplane: Resource, ctx: MeshContext, *, name: str | None = None) -> dict[str, Any]:
    """The answer for `dataplane` (shown as `name`, by default its own) in its mesh's context."""
    shown = {"mesh": dataplane.meta.mesh, "name": name or dataplane.meta.name}
    if not is_builtin_gateway(dataplane):
        # meshgate shapes no sidecar (issue 14): Kuma's sidecar answer, with no attachment.
        return {"kind": SIDECAR_KIND, "total": 0, "items": []}
    gateway = select_gateway_for(dataplane, ctx.gateways)
    snapshot: Snapshot = generate(dataplane, ctx)
    report = snapshot.policies
    return {
        "kind": GATEWAY_KIND,
        "dataplane": shown,
        "gateway": _key(gateway) if gateway is not None else {"mesh": dataplane.meta.mesh, "name": ""},
        "applied": [
            {
                "type": a.kind,
                "target": str(a.target),
                "name": a.name,
                "policy": _key(a.match.winner),
                "losers": [{"name": lo.policy.meta.name, "reason": lo.reason} for lo in a.match.losers],
            }
            for a in report.applied
        ],
        "ignored": [{"type": i.kind, "policies": list(i.policies), "reason": i.reason} for i in report.ignored],
        "denied": [{"type": d.kind, "backend": dict(d.backend), "reason": d.reason} for d in report.denied],
        "problems": list(snapshot.problems),
    }


Finder = Callable[[ResourceStore, str, str], Awaitable[Resource]]


async def _by_stored_name(store: ResourceStore, mesh: str, name: str) -> Resource:
    try:
        return await store.get(ResourceKey(kinds.DATAPLANE, mesh, name))
    except NotFoundError:
        raise not_found("Could not find a resource") from None


def _route(store: ResourceStore, find: Finder, local_zone: str, summary: str) -> ExtraRoute:
    async def handler(request: web.Request) -> web.Response:
        mesh, name = request.match_info["mesh"], request.match_info["name"]
        dataplane = await find(store, mesh, name)
        zone = dataplane.meta.labels.get(LABEL_ZONE) or local_zone
        ctx = await read_mesh_context(store, mesh, zone=zone)
        if ctx is None:
            raise not_found("Could not build MeshContext")
        return web.json_response(dataplane_policies(dataplane, ctx, name=name))

    return ExtraRoute("GET", PATH, handler, summary, DATAPLANE_POLICIES_SCHEMA)


def zone_policies_route(store: ResourceStore, zone: str) -> ExtraRoute:
    return _route(store, _by_stored_name, zone, "Which policy shaped each gateway listener, route and cluster")


def global_policies_route(store: ResourceStore) -> ExtraRoute:
    return _route(
        store,
        find_dataplane,
        "",
        "Which policy shaped each gateway listener, route and cluster, computed from the global's store",
    )
