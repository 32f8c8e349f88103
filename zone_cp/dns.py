"""The zone's `.mesh` DNS: names and VIPs recomputed from the store, persisted in it, served over DNS.

Persistence. Each mesh's allocations are one resource of the zone-internal kind `VirtualIPs` (name `vips`, in
that mesh), whose spec is a `google.protobuf.Struct` of name -> VIP. The kind is deliberately not in
`meshgate.resources.registry`: the store keeps any kind (it stores a spec by its type name), and everything
that enumerates kinds derives from the registry, so `VirtualIPs` is never synced over KDS, never served or
written through the REST API, and needs no codec. It lives in its mesh, so deleting the Mesh deletes it too
(the store's cascade). Reading it back at startup, before the DNS server reports started, is what keeps every
VIP across a zone restart.

Names from several meshes share one DNS server: a name that two meshes both define resolves to the VIP of
the first mesh in name order, and the clash is reported as a problem on `GET /vips`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import anyio
import anyio.abc
import structlog
from aiohttp import web
from google.protobuf.struct_pb2 import Struct

from meshgate.dns.names import VipEntry, mesh_names
from meshgate.dns.responder import Table
from meshgate.dns.server import DnsServer
from meshgate.dns.upstream import Upstream
from meshgate.dns.vips import allocate
from meshgate.resources import kinds
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.rest.app import ExtraRoute
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore
from meshgate.store.watch import Started, WatchLog, reconcile_forever

__all__ = ["VIPS_KIND", "VIPS_NAME", "ZoneDns"]

log = structlog.get_logger(__name__)

VIPS_KIND = "VirtualIPs"
VIPS_NAME = "vips"
# What names are computed from: a change to anything else (our own VirtualIPs writes included) is ignored.
_SOURCE_KINDS = frozenset({kinds.MESH, kinds.DATAPLANE, kinds.MESH_GATEWAY})


@dataclass(frozen=True, slots=True)
class MeshVips:
    entries: tuple[tuple[VipEntry, IPv4Address], ...]
    problems: tuple[str, ...]


def _decode(resource: Resource | None) -> dict[str, IPv4Address]:
    if resource is None:
        return {}
    out: dict[str, IPv4Address] = {}
    for name, value in resource.spec.fields.items():  # type: ignore[attr-defined]
        try:
            out[name] = IPv4Address(value.string_value)
        except ValueError:
            continue  # an unreadable entry is simply allocated again
    return out


def _item(name: str, mesh: str, entry: VipEntry, vip: IPv4Address) -> dict[str, Any]:
    return {"name": name, "mesh": mesh, "vip": str(vip), "ports": list(entry.ports), "source": list(entry.sources)}


class ZoneDns:
    def __init__(
        self, store: ResourceStore, cidr: IPv4Network, domain: str, *, upstream: Upstream | None = None
    ) -> None:
        self._store = store
        self._cidr = cidr
        self._domain = domain.lower().strip(".")
        self.server = DnsServer(Table(self._domain, {}), upstream=upstream)
        self.meshes: dict[str, MeshVips] = {}
        # Called after every refresh: the zone's xDS regenerates VIP outbound listeners from `meshes`.
        self.on_change: Callable[[], None] | None = None

    @property
    def allocations(self) -> Mapping[str, Mapping[str, IPv4Address]]:
        """mesh -> every DNS name -> its VIP (aliases included), for VIP outbound listeners."""
        return {
            mesh: {name: vip for entry, vip in vips.entries for name in entry.names}
            for mesh, vips in self.meshes.items()
        }

    async def refresh(self) -> None:
        """Recomputes every mesh's names and VIPs, persists what changed, and swaps the server's table."""
        meshes = sorted(m.meta.name for m in (await self._store.list(kinds.MESH)).items)
        dataplanes = (await self._store.list(kinds.DATAPLANE)).items
        gateways = (await self._store.list(kinds.MESH_GATEWAY)).items
        stored = {r.meta.mesh: r for r in (await self._store.list(VIPS_KIND)).items}
        result: dict[str, MeshVips] = {}
        for mesh in meshes:
            names = mesh_names(mesh, dataplanes, gateways, domain=self._domain)
            current = _decode(stored.get(mesh))
            allocation = allocate(mesh, self._cidr, current, (e.key for e in names.entries))
            problems = list(names.problems)
            if allocation.error is not None:
                log.error("dns.vips_exhausted", mesh=mesh, error=str(allocation.error))
                problems.append(str(allocation.error))
            if allocation.vips != current:
                await self._persist(mesh, allocation.vips, stored.get(mesh))
            entries = tuple((e, allocation.vips[e.key]) for e in names.entries if e.key in allocation.vips)
            result[mesh] = MeshVips(entries, tuple(problems))
        for mesh, orphan in stored.items():
            if mesh not in result:
                # The Mesh went away after its VirtualIPs were written: its cascade missed this record.
                await self._delete(orphan.key)
        records: dict[str, IPv4Address] = {}
        owners: dict[str, str] = {}
        for mesh, vips in result.items():
            clashes = []
            for entry, vip in vips.entries:
                for name in entry.names:
                    if owners.setdefault(name, mesh) != mesh:
                        clashes.append(f'{name} of mesh "{mesh}" resolves to mesh "{owners[name]}"\'s VIP')
                    records.setdefault(name, vip)
            if clashes:
                result[mesh] = MeshVips(vips.entries, (*vips.problems, *clashes))
        self.meshes = result
        self.server.table = Table(self._domain, records)
        if self.on_change is not None:
            self.on_change()

    async def _persist(self, mesh: str, vips: Mapping[str, IPv4Address], stored: Resource | None) -> None:
        if not vips:
            if stored is not None:
                await self._delete(stored.key)
            return
        spec = Struct()
        spec.update({name: str(vip) for name, vip in vips.items()})
        if stored is None:
            await self._store.create(Resource(VIPS_KIND, Meta(name=VIPS_NAME, mesh=mesh), spec))
        else:
            await self._store.update(Resource(VIPS_KIND, stored.meta, spec))

    async def _delete(self, key: ResourceKey) -> None:
        with contextlib.suppress(NotFoundError):
            await self._store.delete(key)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Loads and persists every VIP, reports started, then follows the store until cancelled."""
        await reconcile_forever(
            self._store,
            _SOURCE_KINDS,
            lambda _: self._refresh_settled(),
            log=WatchLog(log, "dns.refresh_failed"),
            started=Started.RECONCILED,
            task_status=task_status,
        )

    async def _refresh_settled(self) -> None:
        """`refresh`, read again whenever another writer of the same record (a second zone replica on a shared
        store) got there first: a lost race, not an outage, so it is retried at once."""
        while True:
            try:
                await self.refresh()
                return
            except (ConflictError, AlreadyExistsError) as exc:
                log.info("dns.vips_conflict", error=str(exc))
                await anyio.sleep(0.05)

    def lookup(self, mesh: str, name: str) -> dict[str, Any] | None:
        """`name`'s entry as `GET /vips` lists it (in `mesh`, or in any mesh when ""), or None when unknown."""
        wanted = name.lower().rstrip(".")
        for entry_mesh, vips in sorted(self.meshes.items()):
            if mesh and entry_mesh != mesh:
                continue
            for entry, vip in vips.entries:
                if wanted in entry.names:
                    return _item(wanted, entry_mesh, entry, vip)
        return None

    def listing(self, wanted: str = "") -> dict[str, Any]:
        """`GET /vips`'s body: every name with its VIP (of mesh `wanted`, or of every mesh when "")."""
        items: list[dict[str, Any]] = []
        problems: list[str] = []
        for mesh, vips in sorted(self.meshes.items()):
            if wanted and mesh != wanted:
                continue
            problems.extend(vips.problems)
            for entry, vip in vips.entries:
                items.extend(_item(name, mesh, entry, vip) for name in entry.names)
        return {"items": items, "total": len(items), "problems": problems}

    def route(self) -> ExtraRoute:
        async def handler(request: web.Request) -> web.Response:
            return web.json_response(self.listing(request.query.get("mesh", "")))

        return ExtraRoute("GET", "/vips", handler, "The zone's .mesh names: VIP, ports and where each comes from")
