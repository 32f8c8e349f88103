"""CRUD handlers for one resource kind, shared by the global and the zone API.

Kuma's order of checks is kept (pkg/api-server/resource_endpoints.go, v2.7.29): the control plane's
ownership of the kind first (405), then the mesh named in the path, then the body, then the store.
Writes use the store's optimistic concurrency: read the current version, write with it, and on losing a
race to another writer read again, at most `MAX_WRITE_ATTEMPTS` times before answering 409.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from meshgate.kds.ownership import refusal_to_write
from meshgate.resources import codec, kinds
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.errors import ValidationError, Violation
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, Origin, Resource, ResourceKey
from meshgate.rest.body import read_document
from meshgate.rest.errors import (
    GLOBAL_READ_ONLY_MESSAGE,
    ZONE_READ_ONLY_MESSAGE,
    conflict,
    mesh_not_found,
    method_not_allowed,
    not_found,
    validation_failed,
)
from meshgate.rest.paging import PageRequest, listing, next_link, parse_page
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore

__all__ = ["MAX_WRITE_ATTEMPTS", "ResourceEndpoints", "Role"]

Role = Literal["global", "zone"]

# Two concurrent writers of one key each win within a couple of rounds; more than three lost rounds means
# a hot key, and the client is better told (409) than kept waiting.
MAX_WRITE_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class ResourceEndpoints:
    store: ResourceStore
    descriptor: KindDescriptor
    role: Role
    # On a zone: its name. Resources labelled with another zone's name were relayed from there by the global.
    zone: str = ""

    # -- rules -------------------------------------------------------------------------------------------

    @property
    def writable(self) -> bool:
        d = self.descriptor
        return d.writable_on_global if self.role == "global" else d.writable_on_zone

    def _check_writable(self) -> None:
        if not self.writable:
            raise method_not_allowed(GLOBAL_READ_ONLY_MESSAGE if self.role == "global" else ZONE_READ_ONLY_MESSAGE)

    def _check_owned(self, current: Resource) -> None:
        """A resource synced from the other control plane would be overwritten by the next sync: refuse."""
        refusal = refusal_to_write(self.role, self.zone, current)
        if refusal is not None:
            raise method_not_allowed(refusal)

    def _key(self, request: web.Request) -> ResourceKey:
        mesh = request.match_info.get("mesh", "") if self.descriptor.mesh_scoped else ""
        return ResourceKey(self.descriptor.name, mesh, request.match_info["name"])

    async def _require_mesh(self, request: web.Request) -> None:
        mesh = request.match_info.get("mesh")
        if not self.descriptor.mesh_scoped or mesh is None:
            return
        try:
            await self.store.get(ResourceKey(kinds.MESH, "", mesh))
        except NotFoundError:
            raise not_found("Failed to retrieve Mesh") from None

    # -- read --------------------------------------------------------------------------------------------

    async def list_resources(self, request: web.Request) -> web.Response:
        """GET /meshes, /meshes/{mesh}/P, and /P (a mesh-scoped kind across every mesh)."""
        page = parse_page(request.query)
        await self._require_mesh(request)
        mesh = request.match_info.get("mesh") if self.descriptor.mesh_scoped else None
        zone = request.query.get("zone")
        if zone is not None:
            return await self._list_in_zone(request, mesh, zone, page)
        result = await self.store.list(self.descriptor.name, mesh, offset=page.offset, size=page.size)
        return web.json_response(
            {
                "total": result.total,
                "items": [codec.encode(r) for r in result.items],
                "next": next_link(request, result.next_offset, page.size),
            }
        )

    async def _list_in_zone(self, request: web.Request, mesh: str | None, zone: str, page: PageRequest) -> web.Response:
        """`?zone=Z`: resources labelled `kuma.io/zone: Z` (on a zone, its own unlabelled ones count as its
        zone's, next to those relayed from other zones). The store cannot filter by label, so this reads
        the kind in store pages and pages the filtered result itself; fine for a debugging query."""
        matching: list[Resource] = []
        cursor: int | None = 0
        while cursor is not None:
            chunk = await self.store.list(self.descriptor.name, mesh, offset=cursor, size=1000)
            matching.extend(r for r in chunk.items if r.meta.labels.get(LABEL_ZONE, self.zone) == zone)
            cursor = chunk.next_offset
        return listing(request, page, matching, codec.encode)

    async def get_resource(self, request: web.Request) -> web.Response:
        await self._require_mesh(request)
        try:
            resource = await self.store.get(self._key(request))
        except NotFoundError:
            raise not_found("Could not retrieve a resource") from None
        return web.json_response(codec.encode(resource))

    # -- write -------------------------------------------------------------------------------------------

    def meta_violations(self, doc: dict[str, object], key: ResourceKey) -> list[Violation]:
        """Kuma's validateResourceRequest: the body may not contradict the path. Missing fields are filled."""
        violations: list[Violation] = []
        kind = self.descriptor.name
        body_type = doc.get("type")
        if body_type not in (None, "") and body_type != kind:
            violations.append(Violation("type", "type from the URL has to be the same as in body"))
        doc["type"] = kind
        if doc.get("name") in (None, ""):
            doc["name"] = key.name
        elif doc["name"] != key.name:
            violations.append(Violation("name", "name from the URL has to be the same as in body"))
        if self.descriptor.mesh_scoped:
            if doc.get("mesh") in (None, ""):
                doc["mesh"] = key.mesh
            elif doc["mesh"] != key.mesh:
                violations.append(Violation("mesh", "mesh from the URL has to be the same as in body"))
        else:
            # Kuma ignores `mesh` on a kind that is not mesh-scoped; so do we, rather than fail the decode.
            doc.pop("mesh", None)
        if self.role == "zone":
            # Kuma's zone marks what users create there, so KDS sends it up and never back down. An origin
            # that is no origin at all is left for the codec to report, as Kuma validates before marking.
            labels = doc.get("labels")
            if labels is None:
                doc["labels"] = {LABEL_ORIGIN: Origin.ZONE.value}
            elif isinstance(labels, dict) and labels.get(LABEL_ORIGIN) in (None, *(o.value for o in Origin)):
                doc["labels"] = {**labels, LABEL_ORIGIN: Origin.ZONE.value}
                claimed = labels.get(LABEL_ZONE)
                if self.zone and claimed not in (None, self.zone):
                    violations.append(
                        Violation(
                            f'labels["{LABEL_ZONE}"]',
                            f"must be {self.zone!r} (this zone) or unset; other zones' resources arrive through"
                            " the global",
                        )
                    )
        return violations

    async def put_resource(self, request: web.Request) -> web.Response:
        self._check_writable()
        key = self._key(request)
        doc = await read_document(request)
        violations = self.meta_violations(doc, key)
        resource: Resource | None = None
        try:
            resource = codec.load(doc, kind=self.descriptor.name)
        except ValidationError as exc:
            violations.extend(exc.violations)
        if violations or resource is None:
            raise validation_failed(violations)
        if self.descriptor.mesh_scoped:
            try:
                await self.store.get(ResourceKey(kinds.MESH, "", key.mesh))
            except NotFoundError:
                raise mesh_not_found(key.mesh) from None
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                current: Resource | None = await self.store.get(key)
            except NotFoundError:
                current = None
            try:
                if current is None:
                    await self.store.create(resource.with_meta(version=""))
                    return web.Response(status=201)
                self._check_owned(current)
                await self.store.update(resource.with_meta(version=current.meta.version))
                return web.Response(status=200)
            except (AlreadyExistsError, ConflictError, NotFoundError):
                continue  # another writer got in between our read and our write: read again
        raise conflict(f"{key} kept changing while it was written; try again")

    async def delete_resource(self, request: web.Request) -> web.Response:
        self._check_writable()
        await self._require_mesh(request)
        key = self._key(request)
        for _ in range(MAX_WRITE_ATTEMPTS):
            try:
                current = await self.store.get(key)
            except NotFoundError:
                raise not_found("Could not delete a resource") from None
            self._check_owned(current)
            try:
                await self.store.delete(key, version=current.meta.version)
            except ConflictError:
                continue
            except NotFoundError:
                raise not_found("Could not delete a resource") from None
            return web.json_response({})
        raise conflict(f"{key} kept changing while it was deleted; try again")
