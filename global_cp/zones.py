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

    async def on_connect(self, zone: str) -> str | None:
        """Creates the Zone record on first connect; returns a refusal when the zone is disabled."""
        try:
            record = await self._store.get(ResourceKey("Zone", "", zone))
        except NotFoundError:
            pass
        else:
            spec = record.spec
            assert isinstance(spec, zone_pb2.Zone)
            if spec.HasField("enabled") and not spec.enabled.value:
                log.warning("zone.refused_disabled", zone=zone)
                return f"zone {zone!r} is disabled (enabled: false); enable it on the global to resume its sync"
            return None
        spec = zone_pb2.Zone()
        spec.enabled.value = True
        try:
            await self._store.create(Resource("Zone", Meta(name=zone), spec))
            log.info("zone.created", zone=zone)
        except AlreadyExistsError:
            pass  # another stream of the same zone won the race
        return None
