"""Where the global keeps what zones send up (ZoneToGlobalSync): policy, not transport.

Rules (meshgate.kds.ownership, Kuma 2.7's with authentication of the zone added):
- the zone is the one the stream belongs to (`client-id`), never what the payload says: a resource whose
  `kuma.io/zone` names another zone, or whose origin is not `zone`, is rejected by name (NACK) and counted;
- a zone resource is stored as the zone named it (hash-suffixed, with `kuma.io/display-name`), or as
  `<zone>.<name>` from a zone without the `hash-suffix` feature;
- it may never overwrite a resource the global owns or another zone's;
- a mesh-scoped resource must be in a Mesh the global has: otherwise it is rejected by name (NACK, naming the
  missing mesh), never stored nor relayed to other zones;
- a response that does not even decode ends the stream (the receiver is strict: meshgate.kds.limits);
- on (re)connect the global offers the versions it holds for that zone, so the zone resumes with a delta
  and removes what it no longer has: the global converges to exactly the zone's set.
"""

from __future__ import annotations

import dataclasses
from functools import partial

from meshgate.kds import ownership
from meshgate.kds.envelope import to_wire
from meshgate.kds.receiver import Plan, Receiver, Rejection
from meshgate.resources import codec, kinds, registry
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, Origin, ResourceKey
from meshgate.store.protocol import NotFoundError, ResourceStore, iter_all

__all__ = ["ZoneSink"]

Held = dict[str, dict[str, tuple[ResourceKey, str]]]


class ZoneSink:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store
        self.kinds = registry.kinds_sent_to_global()

    async def held(self, zone: str, *, hash_suffix: bool = True) -> Held:
        """What the global holds from `zone`, as the zone would name and version it."""
        out: Held = {}
        for d in self.kinds:
            kind_held = out[d.name] = {}
            async for r in iter_all(self._store, d.name, page_size=5000):
                labels = r.meta.labels
                if labels.get(LABEL_ORIGIN) != Origin.ZONE.value or labels.get(LABEL_ZONE) != zone:
                    continue
                wire = to_wire(ownership.as_sent_by_zone(zone, r, hash_suffix=hash_suffix))
                kind_held[wire.name] = (r.key, wire.version)
        return out

    def receiver(self, zone: str, *, hash_suffix: bool = True) -> Receiver:
        return Receiver(
            self.kinds,
            codec.validate,
            accept=partial(ownership.global_accepts, zone),
            transform=partial(ownership.stored_on_global, zone, hash_suffix=hash_suffix),
            strict=True,
        )

    async def apply(self, zone: str, plan: Plan) -> Plan:
        """Stores a plan's valid resources; returns the plan with ownership violations moved to rejections."""
        upserts = []
        rejections = list(plan.rejections)
        meshes: dict[str, bool] = {}  # one lookup per mesh per response
        for name, version, resource in plan.upserts:
            mesh = resource.meta.mesh
            if mesh and mesh not in meshes:
                meshes[mesh] = await self._exists(ResourceKey(kinds.MESH, "", mesh))
            if mesh and not meshes[mesh]:
                reason = f"mesh {mesh!r} does not exist on the global: create the Mesh there first"
                rejections.append(Rejection(name, version, reason))
                continue
            owner = await self._owner(resource.key)
            if owner is not None and owner != zone:
                reason = f"{ownership.OWNERSHIP_PREFIX}would overwrite a resource owned by {owner}"
                rejections.append(Rejection(name, version, reason))
            else:
                upserts.append((name, version, resource))
        await self._store.apply_sync(plan.kind, [r for _, _, r in upserts], [k for _, k in plan.removals])
        return dataclasses.replace(plan, upserts=tuple(upserts), rejections=tuple(rejections))

    async def _exists(self, key: ResourceKey) -> bool:
        try:
            await self._store.get(key)
        except NotFoundError:
            return False
        return True

    async def _owner(self, key: ResourceKey) -> str | None:
        """ "global", a zone name, or None when nothing is stored under `key`."""
        try:
            current = await self._store.get(key)
        except NotFoundError:
            return None
        labels = current.meta.labels
        if labels.get(LABEL_ORIGIN) != Origin.ZONE.value:
            return "the global control plane"
        return labels.get(LABEL_ZONE, "an unknown zone")
