"""The zone's side of ZoneIngress: keeping the zone's ZoneIngresses listing the services behind them (Kuma 2.7.29's
`ZoneAvailableServicesTracker`, pkg/zone/available_services.go). What an ingress proxy registers is
`zone_cp.zone_proxies`.

Kuma polls on an interval; here the one store-watch loop runs the step after every change of Dataplanes or
ZoneIngresses (and on a slow resync). The computation is `meshgate.xds.ingress`; this module only reads the
store and writes the ZoneIngresses whose list differs. A write that loses a race with another writer (a
re-registration, a second zone replica) is read again and retried at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import anyio.abc
import structlog

from meshgate.kds import ownership
from meshgate.resources import kinds
from meshgate.store.protocol import ConflictError, NotFoundError, ResourceStore, iter_all
from meshgate.store.watch import WatchLog, reconcile_forever
from meshgate.xds.ingress import available_services, serves_zone, with_available_services

__all__ = ["IngressServices"]

# A refusal quotes at most this much of what the proxy sent.
_MAX_LOGGED = 300

log = structlog.get_logger(__name__)

_KINDS = (kinds.DATAPLANE, kinds.ZONE_INGRESS)
# A change event can be missed only across a store outage, which the loop already recovers from by re-reading;
# the resync is a slow safety net, as Kuma's tracker interval is (1 s there: here events do the work).
_RESYNC_SECONDS = 60.0


class IngressServices:
    def __init__(self, store: ResourceStore, zone: str, tag_filters: Sequence[str] = ()) -> None:
        self._store = store
        self._zone = zone
        self._tag_filters = tuple(tag_filters)

    async def refresh(self) -> list[str]:
        """Writes the current `availableServices` into every ZoneIngress of this zone that lists others;
        returns the names it updated."""
        own = [
            dp
            async for dp in iter_all(self._store, kinds.DATAPLANE)
            if not ownership.synced_from_global(self._zone, dp)
        ]
        services = available_services(own, self._tag_filters)
        updated = []
        async for ingress in iter_all(self._store, kinds.ZONE_INGRESS):
            if not serves_zone(ingress, self._zone):
                continue  # another zone's, relayed through the global
            new = with_available_services(ingress, services)
            if new is None:
                continue
            try:
                await self._store.update(new)
            except NotFoundError:
                continue  # deleted meanwhile: nothing to keep current
            updated.append(ingress.meta.name)
        if updated:
            log.info("ingress.available_services_updated", zone_ingresses=updated, services=len(services))
        return updated

    async def _refresh_settled(self) -> bool:
        while True:
            try:
                return bool(await self.refresh())
            except ConflictError as exc:
                log.info("ingress.available_services_conflict", error=str(exc))
                await anyio.sleep(0.05)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await reconcile_forever(
            self._store,
            _KINDS,
            lambda _: self._refresh_settled(),
            log=WatchLog(log, "ingress.available_services_failed", resync_changed="ingress.resync_changed"),
            resync=_RESYNC_SECONDS,
            task_status=task_status,
        )
