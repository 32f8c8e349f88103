"""`POST /_apply`: many resources in one request, validated as a whole and stored in one transaction.

The request and its bounds are `meshgate.apply_batch`'s. Each item gets exactly what a PUT of it would get,
in the same order of checks (`meshgate.rest.handlers`), but for the whole batch at each step, so the answer
names every failing resource and nothing is stored unless every item passes:

    1. the body: at most `MAX_APPLY_BYTES` and `MAX_APPLY_ITEMS` items (413), `items` an array (400)
    2. each item names its kind, name and mesh, each key once                                  (400)
    3. the kind is writable on this control plane (a zone refuses global-owned kinds)          (405)
    4. the item's body, as PUT validates it (path rules, zone origin labels, codec, kind rules) (400)
    5. its mesh exists, in the store or as a Mesh of the same batch                            (400)
    6. the owning process's veto (`before_write`), then the stored item is not owned by the
       other control plane                                                                     (405)
    7. `ResourceStore.write_batch`: creates and updates from the versions just read, all or nothing;
       a lost race reads again, at most `MAX_WRITE_ATTEMPTS` times                             (409)

Steps 2 and 4 are CPU work (about 0.1 ms per route): they run in a worker thread, so the event loop keeps
serving KDS and other requests while a big batch is checked. A 400 is Kuma's error body with every violation
as `items[i].<field>` in `invalid_parameters`, plus `resources`: per failing resource its index, type, mesh,
name and its own violations (fields as in the resource, as a PUT of it would name them). The 200 lists
every item with `created` or `updated`, in request order.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import anyio
import anyio.to_thread
import structlog
from aiohttp import web

from meshgate.apply_batch import MAX_APPLY_BYTES, MAX_APPLY_ITEMS
from meshgate.kds.ownership import refusal_to_write
from meshgate.resources import codec, kinds
from meshgate.resources.errors import ValidationError, Violation
from meshgate.resources.model import Resource, ResourceKey
from meshgate.rest.body import MAX_DEPTH, Bounds, parse_document, parse_limiter, read_body
from meshgate.rest.errors import (
    GLOBAL_READ_ONLY_MESSAGE,
    MAX_REPORTED_VIOLATIONS,
    ZONE_READ_ONLY_MESSAGE,
    ApiError,
    InvalidParameter,
    bad_request,
    capped,
    conflict,
)
from meshgate.rest.handlers import MAX_WRITE_ATTEMPTS, ResourceEndpoints, Role
from meshgate.store.protocol import AlreadyExistsError, ConflictError, NotFoundError, ResourceStore, iter_all

__all__ = ["APPLY_BOUNDS", "BeforeWrite", "BulkApply"]

_log = structlog.get_logger(__name__)

# `{"items": [...]}` adds two levels above each resource; values may be as many as the bytes allow.
APPLY_BOUNDS: Final = Bounds(max_bytes=MAX_APPLY_BYTES, max_depth=MAX_DEPTH + 2, max_values=MAX_APPLY_BYTES)
# A (kind, mesh) group with more items than this is read with one list of the group instead of a get per
# item, when the group holds at most `_LIST_FACTOR` times as many resources as the batch names.
_GET_EACH_UP_TO: Final = 32
_LIST_FACTOR: Final = 4

# Called with ("PUT" | "DELETE", key) before a write is attempted; raises an ApiError to refuse it.
BeforeWrite = Callable[[str, ResourceKey], Awaitable[None]]


@dataclass(slots=True)
class _Item:
    index: int
    doc: object
    endpoints: ResourceEndpoints | None = None
    key: ResourceKey | None = None
    resource: Resource | None = None
    violations: list[Violation] = field(default_factory=list)

    def describe(self) -> dict[str, object]:
        doc = self.doc if isinstance(self.doc, Mapping) else {}
        return {
            "index": self.index,
            "type": str(doc.get("type") or ""),
            "mesh": self.key.mesh if self.key else str(doc.get("mesh") or ""),
            "name": self.key.name if self.key else str(doc.get("name") or ""),
        }

    def __str__(self) -> str:
        assert self.key is not None
        where = f' in mesh "{self.key.mesh}"' if self.key.mesh else ""
        return f'{self.key.kind} "{self.key.name}"{where}'


class BulkApply:
    """The handler of `POST /_apply` for one API app: the same endpoints (and so rules) as its PUTs."""

    def __init__(
        self,
        store: ResourceStore,
        endpoints: Sequence[ResourceEndpoints],
        role: Role,
        zone: str,
        before_write: BeforeWrite | None = None,
    ) -> None:
        self._store = store
        self._by_kind = {ep.descriptor.name: ep for ep in endpoints}
        self._role = role
        self._zone = zone
        self._before_write = before_write

    async def handle(self, request: web.Request) -> web.Response:
        raw = await read_body(request, APPLY_BOUNDS)
        # Parsing and the checks of steps 2 and 4 share the body parser's threads, so a few big requests at
        # once still leave the event loop its share of the interpreter.
        threads = parse_limiter()
        doc = await anyio.to_thread.run_sync(parse_document, raw, APPLY_BOUNDS, limiter=threads)
        docs = doc.get("items")
        if not isinstance(docs, list):
            raise bad_request('the body must be an object with "items": an array of resources')
        if len(docs) > MAX_APPLY_ITEMS:
            raise ApiError(
                413,
                "Request Entity Too Large",
                f"the request has {len(docs)} resources, more than {MAX_APPLY_ITEMS}: send them in several requests",
            )
        if not docs:
            raise bad_request("no resources to apply")
        items = [_Item(i, d) for i, d in enumerate(docs)]
        await anyio.to_thread.run_sync(self._identify, items, limiter=threads)
        self._check_writable(items)
        await anyio.to_thread.run_sync(self._validate, items, limiter=threads)
        await self._check_meshes(items)
        _raise_if_invalid(items)
        if self._before_write is not None:
            for item in items:
                assert item.key is not None
                await self._before_write("PUT", item.key)
        created = await self._write(items)
        _log.info("api.apply", resources=len(items), created=len(created), updated=len(items) - len(created))
        return web.json_response(
            {
                "items": [
                    {**item.describe(), "status": "created" if item.key in created else "updated"} for item in items
                ]
            }
        )

    # Steps 2 and 4 run in a worker thread: no awaits, no store.

    def _identify(self, items: list[_Item]) -> None:
        seen: dict[ResourceKey, int] = {}
        for item in items:
            doc = item.doc
            if not isinstance(doc, dict):
                item.violations.append(Violation("", "must be an object"))
                continue
            type_name = doc.get("type")
            endpoints = self._by_kind.get(type_name) if isinstance(type_name, str) else None
            if endpoints is None:
                reason = "is required" if type_name in (None, "") else f"unknown type {type_name!r}"
                item.violations.append(Violation("type", reason))
                continue
            name, mesh = doc.get("name"), doc.get("mesh")
            if not isinstance(name, str) or not name:
                item.violations.append(Violation("name", "is required"))
                continue
            scoped = endpoints.descriptor.mesh_scoped
            if scoped and (not isinstance(mesh, str) or not mesh):
                item.violations.append(Violation("mesh", "is required"))
                continue
            key = ResourceKey(endpoints.descriptor.name, mesh if scoped else "", name)  # type: ignore[arg-type]
            if key in seen:
                item.violations.append(Violation("", f"repeats items[{seen[key]}]: each resource at most once"))
                continue
            seen[key] = item.index
            item.endpoints, item.key = endpoints, key

    def _validate(self, items: list[_Item]) -> None:
        for item in items:
            if item.endpoints is None or item.key is None or not isinstance(item.doc, dict):
                continue
            doc: dict[str, object] = item.doc
            item.violations.extend(item.endpoints.meta_violations(doc, item.key))
            try:
                item.resource = codec.load(doc, kind=item.key.kind)
            except ValidationError as exc:
                item.violations.extend(exc.violations)

    # The rest is on the loop.

    def _check_writable(self, items: list[_Item]) -> None:
        refused = [item for item in items if item.endpoints is not None and not item.endpoints.writable]
        if refused:
            message = GLOBAL_READ_ONLY_MESSAGE if self._role == "global" else ZONE_READ_ONLY_MESSAGE
            raise _refused(refused, [message] * len(refused))

    async def _check_meshes(self, items: list[_Item]) -> None:
        """Kuma's "mesh of name X is not found", for each item whose mesh is neither stored nor in the batch."""
        in_batch = {i.key.name for i in items if i.key is not None and i.key.kind == kinds.MESH}
        needed: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            if item.key is not None and item.key.mesh and item.key.mesh not in in_batch:
                needed[item.key.mesh].append(item)
        for mesh, users in needed.items():
            try:
                await self._store.get(ResourceKey(kinds.MESH, "", mesh))
            except NotFoundError:
                for item in users:
                    item.violations.append(Violation("mesh", f"mesh of name {mesh} is not found"))

    async def _write(self, items: list[_Item]) -> set[ResourceKey]:
        """Stores every item from the versions read just before; returns the keys it created."""
        for _ in range(MAX_WRITE_ATTEMPTS):
            current = await self._current([item.key for item in items if item.key is not None])
            owned = [(item, refusal) for item in items if (refusal := self._refusal(current, item)) is not None]
            if owned:
                raise _refused([item for item, _ in owned], [refusal for _, refusal in owned])
            batch: list[Resource] = []
            for item in items:
                assert item.key is not None
                assert item.resource is not None
                stored = current.get(item.key)
                batch.append(item.resource.with_meta(version=stored.meta.version if stored else ""))
            try:
                await self._store.write_batch(batch)
            except (AlreadyExistsError, ConflictError, NotFoundError):
                continue  # another writer got in between our read and our write: read again
            return {r.key for r in batch if not r.meta.version}
        raise conflict("some of the resources kept changing while they were applied; try again")

    def _refusal(self, current: Mapping[ResourceKey, Resource], item: _Item) -> str | None:
        stored = current.get(item.key) if item.key is not None else None
        return None if stored is None else refusal_to_write(self._role, self._zone, stored)

    async def _current(self, keys: Sequence[ResourceKey]) -> dict[ResourceKey, Resource]:
        """What the store holds under `keys`: a get per key for small groups, one listing for large ones."""
        groups: dict[tuple[str, str], list[ResourceKey]] = defaultdict(list)
        for key in keys:
            groups[(key.kind, key.mesh)].append(key)
        found: dict[ResourceKey, Resource] = {}
        for (kind, mesh), wanted in groups.items():
            listed = False
            if len(wanted) > _GET_EACH_UP_TO:
                scoped = self._by_kind[kind].descriptor.mesh_scoped
                total = (await self._store.list(kind, mesh if scoped else None, size=1)).total
                if total <= _LIST_FACTOR * len(wanted):
                    names = set(wanted)
                    async for r in iter_all(self._store, kind, mesh if scoped else None):
                        if r.key in names:
                            found[r.key] = r
                    listed = True
            if not listed:
                for key in wanted:
                    with contextlib.suppress(NotFoundError):
                        found[key] = await self._store.get(key)
        return found


def _raise_if_invalid(items: Sequence[_Item]) -> None:
    failing = [item for item in items if item.violations]
    if not failing:
        return
    listed = failing[:MAX_REPORTED_VIOLATIONS]
    more = len(failing) - len(listed)
    detail = f"{len(failing)} of {len(items)} resources are not valid; nothing was stored"
    if more:
        detail += f" (the first {len(listed)} are listed)"
    raise ApiError(
        400,
        "Could not apply resources",
        detail,
        capped(v for item in failing for v in _in_batch(item)),
        extra={
            "resources": [
                {
                    **item.describe(),
                    "invalid_parameters": [{"field": p.field, "reason": p.reason} for p in capped(item.violations)],
                }
                for item in listed
            ]
        },
    )


def _in_batch(item: _Item) -> list[Violation]:
    """The item's violations with fields as paths in the request body: `items[3].conf.listeners[0].port`."""
    at = f"items[{item.index}]"
    return [Violation(f"{at}.{v.field}" if v.field else at, v.message) for v in item.violations]


def _refused(items: Sequence[_Item], reasons: Sequence[str]) -> ApiError:
    """405 naming every refused resource; nothing is stored."""
    pairs = list(zip(items, reasons, strict=True))
    params = [InvalidParameter(f"items[{item.index}]", f"{item}: {reason}") for item, reason in pairs]
    return ApiError(
        405,
        "Method not Allowed",
        f"{len(items)} of the resources may not be changed here: {reasons[0]}",
        params[:MAX_REPORTED_VIOLATIONS],
        extra={
            "resources": [
                {**item.describe(), "invalid_parameters": [{"field": "", "reason": reason}]}
                for item, reason in pairs[:MAX_REPORTED_VIOLATIONS]
            ]
        },
    )
