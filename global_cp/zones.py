"""Zone records on the global: created the first time a zone connects (as Kuma does).

Only a zone that KDS admitted gets here (a valid name, proven by its token unless `--kds-auth none`), and
at most `max_zones` records are created this way (`--kds-max-zones`): each record is memory on every
replica (insights, the stream registry's history) and a line in every zone listing, so a client that may
invent names must not be able to make the global track names without end. A zone over the cap is refused
until a record is deleted or the cap raised; zones that have a record always reconnect.
"""

from __future__ import annotations

import structlog

from meshgate.api.system.v1alpha1 import zone_pb2
from meshgate.resources import kinds
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import AlreadyExistsError, NotFoundError, ResourceStore

__all__ = ["DEFAULT_MAX_ZONES", "ZoneRecords"]

log = structlog.get_logger(__name__)


# Kuma runs deployments of a few hundred zones; a thousand leaves room, and is still small in memory.
DEFAULT_MAX_ZONES = 1000


class ZoneRecords:
    def __init__(self, store: ResourceStore, max_zones: int = DEFAULT_MAX_ZONES) -> None:
        self._store = store
        self._max_zones = max_zones

    async def on_connect(self, zone: str) -> str | None:
        """Creates the Zone record on first connect; returns a refusal when the zone is disabled."""
        try:
            record = await self._store.get(ResourceKey(kinds.ZONE, "", zone))
        except NotFoundError:
            pass
        else:
            spec = record.spec
            assert isinstance(spec, zone_pb2.Zone)
            if spec.HasField("enabled") and not spec.enabled.value:
                log.warning("zone.refused_disabled", zone=zone)
                return f"zone {zone!r} is disabled (enabled: false); enable it on the global to resume its sync"
            return None
        records = (await self._store.list(kinds.ZONE, size=1)).total
        if records >= self._max_zones:
            log.warning("zone.refused_cap", zone=zone, zones=records, max_zones=self._max_zones)
            return (
                f"zone {zone!r} is new, and the global already has {records} Zone records (--kds-max-zones"
                f" {self._max_zones}): delete unused Zone records, or raise --kds-max-zones"
            )
        spec = zone_pb2.Zone()
        spec.enabled.value = True
        try:
            await self._store.create(Resource(kinds.ZONE, Meta(name=zone), spec))
            log.info("zone.created", zone=zone)
        except AlreadyExistsError:
            pass  # another stream of the same zone won the race
        return None
