"""`MeshContext`: everything generation reads about one mesh, built once per regeneration. Pure: no I/O.

The zone (`zone_cp/xds.py`) reads the store once per regeneration and builds one context per mesh with
`MeshContext.build`; `generate(proxy, ctx)` then runs for every connected proxy of that mesh against the same
context, so the per-mesh work (indexing 10k Dataplanes by service, routes by the service their selectors
name) is done once, not once per proxy. Kuma does the same with its `xds_context.MeshContext`.

**Policies.** `policies` maps a policy kind ("Timeout") to the mesh's resources of that kind, by name. Which
kinds feed it is derived from the kind descriptors (`policy_kinds`): every mesh-scoped kind marked
`KindDescriptor.policy` that the global sends to zones, so registering a new policy kind is enough for the
zone to watch and read it. `watched_kinds` is that plus the kinds generation reads today.

**Other resources.** `resources` maps every other kind the zone receives from the global and does not read by
name (`context_kinds`: mesh-scoped, sent to zones, not a policy, not in `BASE_KINDS`; today ExternalService, which
a gateway route may name as a backend) to the mesh's resources of that kind, so such a kind also needs no wiring.

Errors: none. A context may hold another mesh's resources (a test passing a whole world); generation keeps to
the proxy's mesh where it matters (gateway selection, endpoints, route binding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from meshgate.resources import kinds, registry
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import Resource
from meshgate.xds.clusters import Endpoint, EndpointIndex
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.egress import egress_endpoints, routes_through_egress
from meshgate.xds.gateway import RouteIndex
from meshgate.xds.policies import REGISTRY, PolicyRegistry
from meshgate.xds.sds import mtls_enabled
from meshgate.xds.vips import VipOutbound

__all__ = ["BASE_KINDS", "MeshContext", "context_kinds", "policy_kinds", "watched_kinds"]

# What generation read before there were policies: a change to any of them can change a proxy's config.
BASE_KINDS = (kinds.MESH, kinds.SECRET, kinds.MESH_GATEWAY, kinds.MESH_GATEWAY_ROUTE, kinds.DATAPLANE)


def policy_kinds(descriptors: Iterable[KindDescriptor] = registry.KINDS) -> tuple[str, ...]:
    """The policy kinds a zone feeds into generation: mesh-scoped, marked `policy`, sent from the global to
    zones (Kuma's connection policies all are). In registry order."""
    return tuple(d.name for d in descriptors if d.policy and d.mesh_scoped and d.sends_to_zone())


def context_kinds(descriptors: Iterable[KindDescriptor] = registry.KINDS) -> tuple[str, ...]:
    """The other kinds a zone feeds into generation (`MeshContext.resources`): mesh-scoped, sent from the global
    to zones, neither a policy nor a base kind. In registry order."""
    return tuple(
        d.name for d in descriptors if not d.policy and d.mesh_scoped and d.sends_to_zone() and d.name not in BASE_KINDS
    )


def watched_kinds(descriptors: Iterable[KindDescriptor] = registry.KINDS) -> frozenset[str]:
    """Every kind whose change may change a proxy's config: the base kinds, the policy kinds and the others."""
    return frozenset((*BASE_KINDS, *policy_kinds(descriptors), *context_kinds(descriptors)))


@dataclass(frozen=True, slots=True)
class MeshContext:
    """One mesh, as generation sees it. Build it with `MeshContext.build`; never mutated."""

    mesh: str
    zone: str  # this control plane's zone: Dataplanes without a `kuma.io/zone` label are in it
    mesh_resource: Resource | None  # the Mesh itself; None until KDS has brought it
    dataplanes: tuple[Resource, ...]
    gateways: tuple[Resource, ...]
    routes: tuple[Resource, ...]
    secrets: Mapping[str, bytes]  # mesh Secret name -> decoded bytes, for TLS certificates given as `secret`
    index: EndpointIndex  # the same Dataplanes by service
    # The same routes by the service their selectors name; None scans every route (what the index must equal).
    route_index: RouteIndex | None
    # The zone's `.mesh` VIP outbounds (delegated gateways and ordinary Dataplanes; a builtin gateway has none).
    vips: tuple[VipOutbound, ...]
    # Every mesh's CA and crossMesh gateway Dataplanes; None: crossMesh listeners and outbounds are skipped.
    cross_mesh: CrossMesh | None
    policies: Mapping[str, tuple[Resource, ...]]  # kind -> the mesh's policies of that kind, by name
    # The policy modules generation applies (`meshgate.xds.policies`); tests pass their own.
    modules: PolicyRegistry = REGISTRY
    # kind -> the mesh's resources of each `context_kinds` kind (ExternalService), by name.
    resources: Mapping[str, tuple[Resource, ...]] = field(default_factory=lambda: MappingProxyType({}))
    # The zone's ZoneEgresses as endpoints, when the mesh routes ExternalServices through them
    # (`routing.zoneEgress` with mTLS, `egress.py`); None: ExternalServices are reached directly.
    egress: tuple[Endpoint, ...] | None = None

    @property
    def external_services(self) -> tuple[Resource, ...]:
        return self.resources.get(kinds.EXTERNAL_SERVICE, ())

    @classmethod
    def build(
        cls,
        mesh: str,
        *,
        zone: str,
        mesh_resource: Resource | None = None,
        dataplanes: Iterable[Resource] = (),
        gateways: Iterable[Resource] = (),
        routes: Iterable[Resource] = (),
        secrets: Mapping[str, bytes] | None = None,
        vips: Sequence[VipOutbound] = (),
        cross_mesh: CrossMesh | None = None,
        policies: Mapping[str, Iterable[Resource]] | None = None,
        modules: PolicyRegistry = REGISTRY,
        resources: Mapping[str, Iterable[Resource]] | None = None,
        zone_ingresses: Iterable[Resource] = (),
        zone_egresses: Iterable[Resource] = (),
        index_routes: bool = True,
    ) -> MeshContext:
        """The context of `mesh`, indexes included. `index_routes=False` leaves routes unindexed: binding then
        scans them all, the reference the index is tested against. `zone_ingresses` are every ZoneIngress the
        zone knows: with mTLS on, other zones are reached through theirs (`EndpointIndex`). `zone_egresses` are the
        zone's ZoneEgresses: with `routing.zoneEgress` on, ExternalServices are reached through them."""
        dataplanes = tuple(dataplanes)
        routes = tuple(routes)
        by_kind = {kind: tuple(sorted(found, key=lambda r: r.meta.name)) for kind, found in (policies or {}).items()}
        others = {kind: tuple(sorted(found, key=lambda r: r.meta.name)) for kind, found in (resources or {}).items()}
        return cls(
            mesh=mesh,
            zone=zone,
            mesh_resource=mesh_resource,
            dataplanes=dataplanes,
            gateways=tuple(gateways),
            routes=routes,
            secrets=MappingProxyType(dict(secrets or {})),
            index=EndpointIndex(
                dataplanes,
                mesh=mesh,
                zone=zone,
                ingresses=tuple(zone_ingresses) if mtls_enabled(mesh_resource) else None,
            ),
            route_index=RouteIndex(routes) if index_routes else None,
            vips=tuple(vips),
            cross_mesh=cross_mesh,
            policies=MappingProxyType({kind: found for kind, found in by_kind.items() if found}),
            modules=modules,
            resources=MappingProxyType({kind: found for kind, found in others.items() if found}),
            egress=tuple(egress_endpoints(zone_egresses, zone)) if routes_through_egress(mesh_resource) else None,
        )
