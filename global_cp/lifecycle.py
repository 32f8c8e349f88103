"""Zone lifecycle rules on the global: a connected zone cannot be deleted, and a disabled one is cut off.

Deleting a Zone while its control plane is connected is refused, with Kuma's words (pkg/core/managers/apis/
zone/zone_validator.go, v2.7.29): a 400 "Could not delete a resource" naming the field `zone`. Like Kuma, the
test is "still connected" (any open stream), not the health-based online status: a zone whose pings stopped
but whose stream is open would re-create its record on its next connect.

Disabling a zone (`enabled: false`) must stop its sync now, not at its next reconnect: the KDS server refuses
new streams of a disabled zone (`ZoneRecords.on_connect`), and `ZoneLifecycle.run` cancels the open ones. It
follows the store's change feed rather than the REST handler, so a disable by any writer (another global on
a shared store, a restored backup) takes effect; a periodic re-check closes the window in which a stream
opened between the record's read in `on_connect` and the disable.
"""

from __future__ import annotations

import anyio
import anyio.abc
import structlog

from global_cp.insights import zone_enabled
from meshgate.resources import kinds, registry
from meshgate.resources.errors import Violation
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, Origin, ResourceKey
from meshgate.rest.errors import validation_failed
from meshgate.store.events import ChangeBatch
from meshgate.store.protocol import NotFoundError, ResourceStore, StoreError, iter_all
from meshgate.store.watch import Started, WatchLog, reconcile_forever
from meshgate.sync.streams import StreamRegistry

__all__ = ["STILL_CONNECTED", "ZoneLifecycle"]

log = structlog.get_logger(__name__)

STILL_CONNECTED = "unable to delete Zone, Zone CP is still connected, please shut it down first"
DISABLED_CUT = "zone disabled (enabled: false): stream closed by the global"


class ZoneLifecycle:
    def __init__(self, store: ResourceStore, streams: StreamRegistry) -> None:
        self._store = store
        self._streams = streams

    async def before_write(self, method: str, key: ResourceKey) -> None:
        """The REST API's veto (meshgate.rest.app.BeforeWrite): refuses to delete a connected zone."""
        if key.kind == kinds.ZONE and method == "DELETE" and self._streams.connected(key.name):
            raise validation_failed([Violation("zone", STILL_CONNECTED)], title="Could not delete a resource")

    def cut(self, zone: str) -> int:
        """Cancels every open stream of `zone`; returns how many. The adapters close and record them."""
        cut = 0
        for session in self._streams.by_zone(zone):
            if session.cancel is None or session.cancel.cancel_called:
                continue
            session.cancel.cancel()
            cut += 1
            log.warning("zone.disabled.stream_cut", zone=zone, stream=session.stream_id)
            self._streams.events.publish(zone, session.stream_id, session.direction, "error", error=DISABLED_CUT)
        return cut

    async def reconcile(self, zone: str) -> None:
        """Brings the streams of one zone in line with its record: cut if disabled, forgotten if deleted."""
        try:
            record = await self._store.get(ResourceKey(kinds.ZONE, "", zone))
        except NotFoundError:
            if not self._streams.by_zone(zone):
                # A deleted zone leaves no trace in insights or `kds trace`; it starts afresh if it returns.
                self._streams.history.pop(zone, None)
                self._streams.last_health_check.pop(zone, None)
                await self.remove_synced(zone)
            return
        if not zone_enabled(record):
            self.cut(zone)

    async def remove_synced(self, zone: str) -> int:
        """Deletes what a deleted zone had synced up (its Dataplanes, its zone-origin MeshGateways):
        nothing will ever update or remove them again. Returns how many were removed."""
        removed = 0
        for descriptor in registry.kinds_sent_to_global():
            keys = [
                r.key
                async for r in iter_all(self._store, descriptor.name)
                if r.meta.labels.get(LABEL_ZONE) == zone and r.meta.labels.get(LABEL_ORIGIN) == Origin.ZONE.value
            ]
            if keys:
                await self._store.apply_sync(descriptor.name, [], keys)
                removed += len(keys)
        if removed:
            log.info("zone.deleted.resources_removed", zone=zone, count=removed)
        return removed

    async def sweep_orphans(self) -> int:
        """Removes synced-up resources whose zone has no record any more (its deletion was missed, e.g.
        while this replica was down). Singleton work: only the leader runs it."""
        zones = {r.meta.name for r in (await self._store.list(kinds.ZONE)).items}
        removed = 0
        orphans: set[str] = set()
        for descriptor in registry.kinds_sent_to_global():
            async for r in iter_all(self._store, descriptor.name):
                zone = r.meta.labels.get(LABEL_ZONE)
                if r.meta.labels.get(LABEL_ORIGIN) == Origin.ZONE.value and zone and zone not in zones:
                    orphans.add(zone)
        for zone in sorted(orphans):
            if not self._streams.connected(zone):
                removed += await self.remove_synced(zone)
        return removed

    async def sweep_forever(self, interval: float = 30.0) -> None:
        while True:
            try:
                await self.sweep_orphans()
            except StoreError as exc:
                log.warning("zone.sweep_failed", error=str(exc))
            await anyio.sleep(interval)

    async def _reconcile_batch(self, batch: ChangeBatch | None) -> None:
        """`batch`: the Zone records that changed (None: every zone with a stream)."""
        if batch is not None and kinds.ZONE not in batch:
            return
        keys = batch[kinds.ZONE] if batch is not None else None
        zones = {k.name for k in keys} if keys is not None else self._streams.zones()
        for zone in sorted(zones):
            await self.reconcile(zone)

    async def run(
        self, check_interval: float = 1.0, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Checks every zone with a stream, reports started, then re-checks the zones whose record changed, and
        every zone with a stream each `check_interval` seconds (a stream opened as its zone was disabled)."""
        await reconcile_forever(
            self._store,
            {kinds.ZONE},
            self._reconcile_batch,
            resync=check_interval,
            log=WatchLog(log, "zone.reconcile_failed"),
            started=Started.RECONCILED,
            task_status=task_status,
        )
