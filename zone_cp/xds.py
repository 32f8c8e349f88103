"""The zone's Envoy configuration: a snapshot per connected proxy, kept current with the zone store.

Level-triggered, like the KDS snapshots: any change to a kind that shapes gateway config (Mesh,
MeshGateway, MeshGatewayRoute, Dataplane, Secret, and every policy kind: `meshgate.xds.context.watched_kinds`,
derived from the kind descriptors), or a proxy connecting, marks everything dirty; one loop then reads the
store into one `MeshContext` per mesh with a connected proxy and re-generates every connected proxy's
snapshot from its mesh's context with the pure `meshgate.xds.generate`, and the delta ADS streams send only
what changed. A proxy whose Dataplane is not registered yet gets no snapshot, so its Envoy simply waits. A
ZoneIngress proxy (`node.id` `.<name>`) gets Kuma's ingress listener from its ZoneIngress and the zone's own
Dataplanes (`meshgate.xds.ingress.ingress_snapshot`), regenerated when either changes. A ZoneEgress proxy (the
same `node.id` form; the xDS door says which, `zone_proxy_kind`) gets Kuma's egress listener for the
ExternalServices of every Mesh with `routing.zoneEgress` (`meshgate.xds.egress.egress_snapshot`); the zone's
ZoneEgresses, read once per regeneration, are where those meshes' sidecars and gateways send such traffic.

Mesh mTLS and cross-mesh (gateway.md, "Cross-mesh"): each regeneration reads the CA of every Mesh with mTLS on,
a `builtin` backend's from its Secrets (`<mesh>.ca-builtin-cert|key-<backend>`, made by the global), a `provided`
backend's from the data sources its `conf` names (Kuma's format; checked with Kuma's messages), and the
builtin gateway Dataplanes of every mesh with a crossMesh MeshGateway, into one `CrossMesh` shared by all
proxies; sidecars and gateways take their mesh identity from it too (`meshgate.xds.sds`, sent over SDS). Leaf
certificates live in a `LeafCache` owned here, so a regeneration re-signs nothing that is not
due, and an unchanged config stays byte-equal.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anyio
import structlog

from meshgate.api.system.v1alpha1 import secret_pb2
from meshgate.concurrency import Wakeup
from meshgate.kds import ownership
from meshgate.mtls import (
    PROVIDED,
    CertificateAuthority,
    LeafCache,
    MtlsError,
    builtin_ca_secret_names,
    enabled_backend,
    enabled_builtin_backend,
    load_provided_ca,
    provided_ca_data,
)
from meshgate.mtls import load_ca as load_mesh_ca
from meshgate.resources import kinds
from meshgate.resources.kinds._conf import struct_json
from meshgate.resources.model import Resource, ResourceKey
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all
from meshgate.store.watch import WatchLog, reconcile_forever
from meshgate.transport.ads_server import SnapshotStore
from meshgate.xds import generate
from meshgate.xds.ads import ProxyId
from meshgate.xds.context import MeshContext, context_kinds, policy_kinds, watched_kinds
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.egress import EgressMesh, egress_snapshot, routes_through_egress
from meshgate.xds.ingress import ingress_snapshot
from meshgate.xds.vips import VipOutbound

__all__ = ["ZoneXds"]

log = structlog.get_logger(__name__)

# Derived from the descriptors: a policy kind added to the registry is watched and read with no edit here.
# A zone proxy's config follows its ZoneIngress / ZoneEgress; the mesh's clusters to ExternalServices, the egresses.
_SHAPING_KINDS = watched_kinds() | {kinds.ZONE_INGRESS, kinds.ZONE_EGRESS}
_POLICY_KINDS = policy_kinds()
_CONTEXT_KINDS = context_kinds()  # ExternalService
# Regenerate at least this often even when nothing changed: the mesh leaf certificates of crossMesh listeners and
# outbounds live 24 h and are re-issued at half-life (meshgate/mtls), which only a regeneration can deliver. An
# unchanged snapshot sends Envoy nothing.
REFRESH_INTERVAL = 15 * 60.0


def _secret_bytes(secret: Resource) -> bytes:
    spec = secret.spec
    assert isinstance(spec, secret_pb2.Secret)
    return bytes(spec.data.value)


class ZoneXds(SnapshotStore):
    def __init__(
        self,
        store: ResourceStore,
        zone: str,
        vips: Callable[[str], Sequence[VipOutbound]] | None = None,
        *,
        dns_domain: str = "mesh",
        refresh_interval: float = REFRESH_INTERVAL,
        leaves: LeafCache | None = None,
        access_log_socket: Callable[[ProxyId], str] | None = None,
        metrics_socket: Callable[[ProxyId], str] | None = None,
        zone_proxy_kind: Callable[[ProxyId], str] | None = None,
    ) -> None:
        """`vips(mesh)`: the VIP outbounds of the mesh's proxies (its service names on VIP:80, other meshes'
        cross-mesh gateway names on their ports), from the zone's DNS allocations. `dns_domain`: the `.mesh`
        domain, for the names a crossMesh listener's certificate carries. `refresh_interval`: seconds between
        regenerations when nothing changes (certificate rotation). `leaves`: the leaf certificate cache.
        `access_log_socket(proxy)`: the access log pipe the proxy declared in its node metadata, "" for none
        (`meshgate.xds.generate` then names it as Kuma does); `metrics_socket(proxy)` the same for its metrics
        socket (`metricsSocketPath`). `zone_proxy_kind(proxy)`: what a connected `.<name>` proxy registered,
        ZoneIngress or ZoneEgress (None: every such proxy is an ingress)."""
        super().__init__()
        self._store = store
        self._refresh_interval = refresh_interval
        self._zone = zone
        self._vips = vips
        self._dns_domain = dns_domain
        self._leaves = leaves if leaves is not None else LeafCache()
        self._access_log_socket = access_log_socket
        self._metrics_socket = metrics_socket
        self._zone_proxy_kind = zone_proxy_kind
        self._connected: Counter[ProxyId] = Counter()
        self._dirty = Wakeup()

    @contextmanager
    def listen(self, proxy: ProxyId) -> Iterator[Wakeup]:
        self._connected[proxy] += 1
        self._dirty.set()  # a new proxy needs its first snapshot
        try:
            with super().listen(proxy) as wake:
                yield wake
        finally:
            self._connected[proxy] -= 1
            if self._connected[proxy] <= 0:
                del self._connected[proxy]

    async def _all(self, kind: str, mesh: str) -> list[Resource]:
        return [r async for r in iter_all(self._store, kind, mesh)]

    async def _secret(self, mesh: str, name: str) -> bytes | None:
        try:
            return _secret_bytes(await self._store.get(ResourceKey(kinds.SECRET, mesh, name)))
        except NotFoundError:
            return None

    async def _provided_ca(self, mesh: Resource, backend: Any) -> CertificateAuthority | None:
        """The CA of `mesh`'s enabled `provided` backend (Kuma's format: cert and key data sources)."""
        name = mesh.meta.name
        secrets = {r.meta.name: _secret_bytes(r) for r in await self._all(kinds.SECRET, name)}
        try:
            return load_provided_ca(*provided_ca_data(struct_json(backend.conf), secrets))
        except MtlsError as exc:
            log.warning("xds.mesh_ca_unusable", mesh=name, backend=backend.name, error=str(exc))
            return None

    async def _cas(self, meshes: list[Resource]) -> dict[str, CertificateAuthority]:
        """mesh -> its CA, for every Mesh with mTLS on whose CA is readable: builtin (the Secrets the global
        made) or provided (the data sources its backend names)."""
        out: dict[str, CertificateAuthority] = {}
        for mesh in meshes:
            enabled = enabled_backend(mesh.spec)
            if enabled is not None and enabled.type == PROVIDED:
                if (provided := await self._provided_ca(mesh, enabled)) is not None:
                    out[mesh.meta.name] = provided
                continue
            backend = enabled_builtin_backend(mesh.spec)
            if backend is None:
                continue
            name = mesh.meta.name
            cert_name, key_name = builtin_ca_secret_names(name, backend)
            cert, key = await self._secret(name, cert_name), await self._secret(name, key_name)
            if cert is None or key is None:
                # The global has not made it yet, or KDS has not brought it: a later Secret change retries.
                log.info("xds.mesh_ca_missing", mesh=name, secrets=[cert_name, key_name])
                continue
            try:
                out[name] = load_mesh_ca(cert, key)
            except MtlsError as exc:
                log.warning("xds.mesh_ca_unusable", mesh=name, error=str(exc))
        return out

    async def _cross_mesh(
        self, mesh_resources: list[Resource], gateways: list[Resource], loaded: dict[str, list[Resource]]
    ) -> CrossMesh:
        """`mesh_resources`: every Mesh. `gateways`: every mesh's MeshGateways. `loaded`: mesh -> its Dataplanes, for
        meshes already read; others are read when they have a crossMesh gateway."""
        meshes = {
            g.meta.mesh
            for g in gateways
            if any(listener.crossMesh for listener in g.spec.conf.listeners)  # type: ignore[attr-defined]
        }
        dataplanes: list[Resource] = []
        for mesh in sorted(meshes):
            if mesh not in loaded:
                loaded[mesh] = await self._all(kinds.DATAPLANE, mesh)
            dataplanes.extend(loaded[mesh])
        return CrossMesh(
            await self._cas(mesh_resources),
            gateways=[g for g in gateways if g.meta.mesh in meshes],
            dataplanes=dataplanes,
            zone=self._zone,
            domain=self._dns_domain,
            leaves=self._leaves,
        )

    async def _context(
        self,
        mesh: str,
        *,
        mesh_resource: Resource | None,
        gateways: list[Resource],
        dataplanes: list[Resource],
        cross_mesh: CrossMesh,
        zone_ingresses: list[Resource],
        zone_egresses: list[Resource],
    ) -> MeshContext:
        """One mesh's context, from the store (its routes, secrets and policies) and what was read for all."""
        return MeshContext.build(
            mesh,
            zone=self._zone,
            mesh_resource=mesh_resource,
            dataplanes=dataplanes,
            gateways=[g for g in gateways if g.meta.mesh == mesh],
            routes=await self._all(kinds.MESH_GATEWAY_ROUTE, mesh),
            secrets={r.meta.name: _secret_bytes(r) for r in await self._all(kinds.SECRET, mesh)},
            vips=self._vips(mesh) if self._vips is not None else (),
            cross_mesh=cross_mesh,
            policies={kind: await self._all(kind, mesh) for kind in _POLICY_KINDS},
            resources={kind: await self._all(kind, mesh) for kind in _CONTEXT_KINDS},
            zone_ingresses=zone_ingresses,
            zone_egresses=zone_egresses,
        )

    async def _regenerate_egresses(self, proxies: list[ProxyId]) -> None:
        """Each connected ZoneEgress proxy's config: the ExternalServices of every Mesh with `routing.zoneEgress`
        (`meshgate.xds.egress`), terminating their mTLS with the mesh's CA. One not registered yet gets nothing."""
        meshes = [m async for m in iter_all(self._store, kinds.MESH) if routes_through_egress(m)]
        inputs = [
            EgressMesh(
                mesh,
                tuple(await self._all(kinds.EXTERNAL_SERVICE, mesh.meta.name)),
                {r.meta.name: _secret_bytes(r) for r in await self._all(kinds.SECRET, mesh.meta.name)},
                tuple(await self._all(kinds.TRAFFIC_PERMISSION, mesh.meta.name)),
            )
            for mesh in meshes
        ]
        cross = CrossMesh(await self._cas(meshes), zone=self._zone, leaves=self._leaves)
        for proxy in proxies:
            try:
                egress = await self._store.get(ResourceKey(kinds.ZONE_EGRESS, "", proxy.name))
            except NotFoundError:
                self.remove(proxy)
                continue
            snapshot = egress_snapshot(egress, inputs, cross)
            for problem in snapshot.problems:
                log.warning("xds.generate.problem", proxy=str(proxy), problem=problem)
            self.set(proxy, snapshot)

    def _kind(self, proxy: ProxyId) -> str:
        return self._zone_proxy_kind(proxy) if self._zone_proxy_kind is not None else kinds.ZONE_INGRESS

    async def _regenerate_ingresses(self, proxies: list[ProxyId]) -> None:
        """Each connected ZoneIngress proxy's config: SNI passthrough to the zone's own endpoints
        (`meshgate.xds.ingress`). One not registered yet gets nothing, as a Dataplane."""
        own = [
            dp
            async for dp in iter_all(self._store, kinds.DATAPLANE)
            if not ownership.synced_from_global(self._zone, dp)
        ]
        for proxy in proxies:
            try:
                ingress = await self._store.get(ResourceKey(kinds.ZONE_INGRESS, "", proxy.name))
            except NotFoundError:
                self.remove(proxy)
                continue
            self.set(proxy, ingress_snapshot(ingress, own, proxy_id=str(proxy), zone=self._zone))

    async def regenerate(self) -> None:
        zone_proxies = sorted(p for p in self._connected if p.is_zone_proxy)
        if ingresses := [p for p in zone_proxies if self._kind(p) == kinds.ZONE_INGRESS]:
            await self._regenerate_ingresses(ingresses)
        if egresses := [p for p in zone_proxies if self._kind(p) == kinds.ZONE_EGRESS]:
            await self._regenerate_egresses(egresses)
        proxies = sorted(p for p in self._connected if not p.is_zone_proxy)
        if not proxies:
            return
        loaded: dict[str, list[Resource]] = {}
        for mesh in sorted({p.mesh for p in proxies}):
            loaded[mesh] = await self._all(kinds.DATAPLANE, mesh)
        # Every Mesh and every mesh's gateways, read once: crossMesh needs them all, each mesh's proxies their own.
        meshes = [m async for m in iter_all(self._store, kinds.MESH)]
        all_gateways = [r async for r in iter_all(self._store, kinds.MESH_GATEWAY)]
        cross_mesh = await self._cross_mesh(meshes, all_gateways, loaded)
        by_mesh_name = {m.meta.name: m for m in meshes}
        zone_ingresses = [r async for r in iter_all(self._store, kinds.ZONE_INGRESS)]
        zone_egresses = [r async for r in iter_all(self._store, kinds.ZONE_EGRESS)]
        for mesh in sorted({p.mesh for p in proxies}):
            ctx = await self._context(
                mesh,
                mesh_resource=by_mesh_name.get(mesh),
                gateways=all_gateways,
                dataplanes=loaded[mesh],
                cross_mesh=cross_mesh,
                zone_ingresses=zone_ingresses,
                zone_egresses=zone_egresses,
            )
            by_name = {d.meta.name: d for d in ctx.dataplanes}
            for proxy in (p for p in proxies if p.mesh == mesh):
                dataplane = by_name.get(proxy.name)
                if dataplane is None:
                    self.remove(proxy)
                    continue
                socket = self._access_log_socket(proxy) if self._access_log_socket is not None else ""
                metrics = self._metrics_socket(proxy) if self._metrics_socket is not None else ""
                snapshot = generate(dataplane, ctx, access_log_socket=socket, metrics_socket=metrics)
                for problem in snapshot.problems:
                    log.warning("xds.generate.problem", proxy=str(proxy), problem=problem)
                self.set(proxy, snapshot)

    def mark_dirty(self) -> None:
        """Something outside the store changed what proxies get (the DNS allocations): regenerate."""
        self._dirty.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await reconcile_forever(
            self._store,
            _SHAPING_KINDS,
            lambda _: self.regenerate(),
            resync=self._refresh_interval,
            wake=self._dirty,
            log=WatchLog(log, "xds.regenerate_failed"),
            task_status=task_status,
        )
