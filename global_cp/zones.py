"""Zone records on the global: created the first time a zone connects (as Kuma does)."""

from __future__ import annotations

import structlog

from meshgate.api.system.v1alpha1 import zone_pb2
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, NotFoundError, ResourceStore

__all__ = ["ZoneRecords"]

log = structlog.get_logger("meshgate.global.zones")


class ZoneRecords:
    def __init__(self, store: ResourceStore) -> None:
        self._store = store

    async def on_connect(self, zone: str) -> None:
        try:
            await self._store.get(ResourceKey("Zone", "", zone))
            return
        except NotFoundError:
            pass
        spec = zone_pb2.Zone()
        spec.enabled.value = True
        try:
            await self._store.create(Resource("Zone", Meta(name=zone), spec))
            log.info("zone.created", zone=zone)
        except AlreadyExistsError:
            pass  # another stream of the same zone won the race
