"""The zone writes a DataplaneInsight per proxy into its own store, from its xDS stream records; the zone to global
KDS client carries it up like any zone-owned resource (Kuma's DataplaneInsightSink and dataplaneInsightStore,
pkg/xds/server/callbacks/dataplane_status_sink.go, v2.7.29).

When and what are `meshgate.xds.insight_sink`: a proxy's insight is written when its stream opens or closes,
and otherwise at most once per `flush_interval` (Kuma's `KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL`, 10 s)
and only when its subscriptions changed; it keeps the last `subscription_limit` subscriptions (Kuma's
`KUMA_METRICS_DATAPLANE_SUBSCRIPTION_LIMIT`, 2). Only a Dataplane's proxy has one (ZoneIngress and ZoneEgress
proxies have their own insight kinds in Kuma, not kept here), and only while its Dataplane is in the store:
Kuma creates it with the Dataplane as its owner, so it goes with the Dataplane. Here a store watcher removes an
insight whose Dataplane is gone (a proxy that deregistered on disconnect, a Dataplane deleted through the API).

On start, an insight's subscriptions left open by a previous run of this zone are closed (`disconnectTime`
now): no proxy is connected to a process that has just started. Skipped on a shared store, where another
replica may be serving them.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

import anyio
import anyio.abc
import structlog

from meshgate.api.mesh.v1alpha1.dataplane_insight_pb2 import DataplaneInsight, DiscoverySubscription
from meshgate.concurrency import Wakeup
from meshgate.kds.ownership import LABEL_K8S_NAMESPACE
from meshgate.resources import kinds
from meshgate.resources.model import LABEL_ORIGIN, Meta, Origin, Resource, ResourceKey
from meshgate.store.events import ChangeBatch
from meshgate.store.protocol import (
    AlreadyExistsError,
    ConflictError,
    NotFoundError,
    ResourceStore,
    StoreError,
    iter_all,
)
from meshgate.store.watch import WatchLog, reconcile_forever
from meshgate.xds.ads import ProxyId
from meshgate.xds.ads_registry import ProxyRegistry
from meshgate.xds.insight_sink import (
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_SUBSCRIPTION_LIMIT,
    FlushSchedule,
    content_of,
    finalize,
    merge,
    subscriptions_of,
)

__all__ = ["DataplaneInsightWriter"]

log = structlog.get_logger(__name__)

# Optimistic concurrency: a write that loses a race re-reads, a few times at most (another replica, or the
# sweep), then waits for the next flush.
_ATTEMPTS = 3


class DataplaneInsightWriter:
    def __init__(
        self,
        store: ResourceStore,
        registry: ProxyRegistry,
        instance_id: str,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        subscription_limit: int = DEFAULT_SUBSCRIPTION_LIMIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.registry, self.instance_id = store, registry, instance_id
        self.schedule = FlushSchedule(flush_interval)
        self.subscription_limit = subscription_limit
        self.clock = clock
        self.writes = 0  # insights written (created or updated), for tests and the logs
        self._urgent: set[ProxyId] = set()
        self._wake = Wakeup()
        registry.on_change = self.changed

    def changed(self, proxy: ProxyId) -> None:
        """A stream of `proxy` opened or closed: flush its insight now (Kuma flushes on both)."""
        if not proxy.is_zone_proxy:
            self._urgent.add(proxy)
            self._wake.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        if not self.store.shared:
            await self._close_stale()
        async with anyio.create_task_group() as tg:
            await tg.start(
                partial(
                    reconcile_forever,
                    self.store,
                    {kinds.DATAPLANE, kinds.DATAPLANE_INSIGHT},
                    self._sweep,
                    log=WatchLog(log, "dataplane_insight.sweep_failed"),
                )
            )
            tg.start_soon(self._flush_forever)
            task_status.started()

    async def _flush_forever(self) -> None:
        while True:
            with anyio.move_on_after(self.schedule.interval):
                await self._wake.wait()
            urgent, self._urgent = self._urgent, set()
            await self.flush(urgent)

    async def flush(self, urgent: set[ProxyId] | frozenset[ProxyId] = frozenset()) -> None:
        """Writes every proxy's insight that is due (`FlushSchedule`); a failed write is tried again at a later
        flush, as it is not recorded as written."""
        now = self.clock()
        for proxy, record in list(self.registry.proxies.items()):
            if proxy.is_zone_proxy:
                continue
            subs = subscriptions_of(record, self.instance_id)
            content = content_of(subs)
            if not self.schedule.due(proxy, content, now, urgent=proxy in urgent):
                continue
            try:
                await self._write(proxy, subs, datetime.fromtimestamp(now, UTC))
            except StoreError as exc:
                log.warning("dataplane_insight.write_failed", proxy=str(proxy), error=str(exc))
                continue
            # Also when its Dataplane was missing: nothing to write until the proxy's streams change again.
            self.schedule.written(proxy, content, now)

    async def _write(self, proxy: ProxyId, subs: Sequence[DiscoverySubscription], now: datetime) -> None:
        key = ResourceKey(kinds.DATAPLANE_INSIGHT, proxy.mesh, proxy.name)
        for _ in range(_ATTEMPTS):
            try:
                dataplane = await self.store.get(ResourceKey(kinds.DATAPLANE, proxy.mesh, proxy.name))
            except NotFoundError:
                return  # deregistered (or never registered): its insight goes with it
            try:
                current: Resource | None = await self.store.get(key)
            except NotFoundError:
                current = None
            stored = None if current is None else current.spec
            assert stored is None or isinstance(stored, DataplaneInsight)
            spec = merge(stored, subs, limit=self.subscription_limit, now=now)
            try:
                if current is None:
                    await self.store.create(Resource(kinds.DATAPLANE_INSIGHT, _meta_for(dataplane), spec))
                elif current.spec != spec:
                    await self.store.update(dataclasses.replace(current, spec=spec))
                else:
                    return
            except (AlreadyExistsError, ConflictError, NotFoundError):
                continue
            self.writes += 1
            return
        log.info("dataplane_insight.write_contended", proxy=str(proxy))

    async def _sweep(self, _batch: ChangeBatch | None) -> None:
        """Removes each insight whose Dataplane is gone (Kuma: the Dataplane owns its insight)."""
        dataplanes = {(d.meta.mesh, d.meta.name) async for d in iter_all(self.store, kinds.DATAPLANE)}
        insights = [i async for i in iter_all(self.store, kinds.DATAPLANE_INSIGHT)]
        orphans = [i.key for i in insights if (i.meta.mesh, i.meta.name) not in dataplanes]
        for key in orphans:
            try:
                await self.store.delete(key)
            except NotFoundError:
                continue
            self.schedule.forget(ProxyId(key.mesh, key.name))

    async def _close_stale(self) -> None:
        """Closes the subscriptions a previous run of this zone left open (module docstring)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        try:
            insights = [i async for i in iter_all(self.store, kinds.DATAPLANE_INSIGHT)]
            for insight in insights:
                spec = DataplaneInsight()
                spec.CopyFrom(insight.spec)
                if finalize(spec, now):
                    await self.store.update(dataclasses.replace(insight, spec=spec))
        except StoreError as exc:  # the next connect of each proxy closes them anyway (merge)
            log.warning("dataplane_insight.close_stale_failed", error=str(exc))


def _meta_for(dataplane: Resource) -> Meta:
    """The insight's name and mesh are its Dataplane's; so is the Kubernetes namespace, part of the name the
    global stores it under (so that it is the Dataplane's there too)."""
    labels = {LABEL_ORIGIN: Origin.ZONE.value}
    namespace = dataplane.meta.labels.get(LABEL_K8S_NAMESPACE)
    if namespace:
        labels[LABEL_K8S_NAMESPACE] = namespace
    return Meta(name=dataplane.meta.name, mesh=dataplane.meta.mesh, labels=labels)
