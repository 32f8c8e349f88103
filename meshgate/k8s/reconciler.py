"""The level-triggered MeshGatewayInstance reconciler of a Kubernetes zone.

Triggers say only *which instance* to look at; `reconcile(key)` re-reads everything it needs and converges:

    MeshGatewayInstance watch ──┐  (the instance's key)
    Deployment / Service watch ─┤  (the key of the instance that controls the object: Kuma's `Owns(...)`)
    zone store: MeshGateway ────┤  (every known instance: a gateway's selectors may now match any of them)
    periodic resync ────────────┘  (every known and every listed instance: covers lost events)
                │
           WorkQueue (one entry per key; see meshgate.k8s.workqueue)
                │
           N workers ── reconcile(key):
             instance gone ........ delete the Deployment and Service it controlled (owner references make
                                    Kubernetes do so too; meshgate does not wait for the garbage collector)
             spec invalid ......... Ready=False InvalidInstance, listing the violations; nothing applied
             else ................. render; server-side apply the Service (only if a MeshGateway matched),
                                    then the Deployment (only if the Service exists); set Ready from what the
                                    API server returned, through a status merge patch when it changed

A failed reconcile (API unreachable, conflict, store unavailable) is retried with exponential backoff; a bug
(any other exception) is not caught, so it ends the task group loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import anyio
import anyio.abc
import structlog

from meshgate.k8s.api import Kind, KubeApi, KubeObject, WatchEventType
from meshgate.k8s.errors import KubeError, KubeGoneError, NotControlledError
from meshgate.k8s.instance import API_VERSION, KIND, MeshGatewayInstance, parse_instance
from meshgate.k8s.render import Rendering, render
from meshgate.k8s.settings import ZoneSettings
from meshgate.k8s.status import (
    Condition,
    compute_ready,
    format_time,
    invalid_condition,
    set_condition,
    status_patch,
)
from meshgate.k8s.workqueue import WorkQueue
from meshgate.resources import kinds
from meshgate.resources.model import Resource, utcnow
from meshgate.store.events import ChangeBatch
from meshgate.store.protocol import ResourceStore, StoreError
from meshgate.store.watch import WatchLog, reconcile_forever

__all__ = ["InstanceKey", "Outcome", "ReconcileResult", "Reconciler", "ReconcilerOptions", "controller_of"]

log = structlog.get_logger(__name__)

InstanceKey = tuple[str, str]  # (namespace, name)

# Zone store kinds whose change can change a rendering: a MeshGateway's selectors and listeners; a Mesh's
# deletion removes its gateways (the store publishes those too, but re-reading on Mesh is cheap and safe).
_STORE_KINDS = frozenset({kinds.MESH_GATEWAY, kinds.MESH})


class Outcome(StrEnum):
    APPLIED = "applied"  # a MeshGateway matched: Service and Deployment applied
    NO_GATEWAY = "no-gateway"  # none matched: Service left as it was, Deployment applied only if it exists
    INVALID = "invalid"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    outcome: Outcome
    condition: Condition | None = None


@dataclass(frozen=True, slots=True)
class ReconcilerOptions:
    workers: int = 4
    resync_interval: float = 60.0
    retry_base: float = 0.5
    retry_max: float = 60.0
    # Pause before listing again after a watch fails, so an unreachable API server is not hammered.
    rewatch_delay: float = 1.0


def controller_of(obj: Mapping[str, Any]) -> str | None:
    """The name of the MeshGatewayInstance that controls `obj`, if one does."""
    for ref in obj.get("metadata", {}).get("ownerReferences", None) or ():
        if ref.get("controller") and ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION:
            name = ref.get("name")
            return name if isinstance(name, str) else None
    return None


def _key(obj: Mapping[str, Any]) -> InstanceKey:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


class Reconciler:
    def __init__(
        self,
        api: KubeApi,
        store: ResourceStore,
        settings: ZoneSettings,
        *,
        options: ReconcilerOptions | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._api = api
        self._store = store
        self._settings = settings
        self._options = options or ReconcilerOptions()
        self._clock = clock
        self._queue: WorkQueue[InstanceKey] = WorkQueue()
        # Instances seen by the last list or watch and not yet reconciled away.
        self._known: set[InstanceKey] = set()
        self._failures: dict[InstanceKey, int] = {}

    # -- running -------------------------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_loop, Kind.MESH_GATEWAY_INSTANCE)
            tg.start_soon(self._watch_loop, Kind.DEPLOYMENT)
            tg.start_soon(self._watch_loop, Kind.SERVICE)
            await tg.start(self._store_loop)
            tg.start_soon(self._resync_loop)
            for _ in range(self._options.workers):
                tg.start_soon(self._worker)
            log.info("k8s.reconciler.started", workers=self._options.workers)
            task_status.started()

    def _enqueue_all(self, keys: Iterable[InstanceKey] = ()) -> None:
        for key in (*self._known, *keys):
            self._queue.add(key)

    def _on_object(self, kind: Kind, event: WatchEventType, obj: KubeObject) -> None:
        if kind is Kind.MESH_GATEWAY_INSTANCE:
            key = _key(obj)
            if event is not WatchEventType.DELETED:
                self._known.add(key)
            self._queue.add(key)
            return
        owner = controller_of(obj)
        if owner is not None:
            self._queue.add((_key(obj)[0], owner))

    async def _list(self, kind: Kind) -> str:
        listing = await self._api.list(kind)
        if kind is Kind.MESH_GATEWAY_INSTANCE:
            listed = {_key(obj) for obj in listing.items}
            # Instances that vanished while nobody watched are reconciled too: that deletes their objects.
            self._enqueue_all(listed)
            self._known |= listed
        else:
            for obj in listing.items:
                self._on_object(kind, WatchEventType.ADDED, obj)
        return listing.resource_version

    async def _watch_loop(self, kind: Kind) -> None:
        """List, then watch from the list's version; on any failure, pause and list again (level-triggered:
        the list re-enqueues whatever the lost events were about)."""
        while True:
            try:
                version = await self._list(kind)
                async with aclosing(self._api.watch(kind, resource_version=version)) as events:
                    async for event in events:
                        if event.type is not WatchEventType.BOOKMARK:
                            self._on_object(kind, event.type, event.object)
                log.debug("k8s.watch.ended", kind=kind.value)
            except KubeGoneError:
                log.info("k8s.watch.expired", kind=kind.value)
            except KubeError as exc:
                log.warning("k8s.watch.failed", kind=kind.value, error=str(exc))
            await anyio.sleep(self._options.rewatch_delay)

    async def _store_loop(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        await reconcile_forever(
            self._store,
            _STORE_KINDS,
            self._on_store_change,
            log=WatchLog(log, "k8s.store.enqueue_failed"),
            task_status=task_status,
        )

    async def _on_store_change(self, _batch: ChangeBatch | None) -> None:
        # Which instances a gateway change concerns is for `reconcile` to find out: enqueue every one.
        self._enqueue_all()

    async def _resync_loop(self) -> None:
        while True:
            await anyio.sleep(self._options.resync_interval)
            try:
                await self._list(Kind.MESH_GATEWAY_INSTANCE)
            except KubeError as exc:
                log.warning("k8s.resync.failed", error=str(exc))
                self._enqueue_all()

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            try:
                await self._reconcile_with_retry(key)
            finally:
                self._queue.done(key)

    async def _reconcile_with_retry(self, key: InstanceKey) -> None:
        try:
            await self.reconcile(key)
        except (KubeError, StoreError) as exc:
            failures = self._failures.get(key, 0) + 1
            self._failures[key] = failures
            delay = min(self._options.retry_base * 2 ** (failures - 1), self._options.retry_max)
            log.warning(
                "k8s.reconcile.failed", namespace=key[0], name=key[1], error=str(exc), retry_in=delay, failures=failures
            )
            self._queue.add_after(key, delay)
        else:
            self._failures.pop(key, None)

    # -- one pass --------------------------------------------------------------------------------------------

    async def reconcile(self, key: InstanceKey) -> ReconcileResult:
        """Converges one instance's Deployment, Service and status; raises KubeError or StoreError to retry."""
        namespace, name = key
        obj = await self._api.get(Kind.MESH_GATEWAY_INSTANCE, namespace, name)
        if obj is None or obj.get("metadata", {}).get("deletionTimestamp"):
            await self._delete_controlled(namespace, name)
            if obj is None:
                self._known.discard(key)
            return ReconcileResult(Outcome.DELETED)
        self._known.add(key)

        parsed = parse_instance(obj)
        instance = parsed.instance
        old_status = obj.get("status") or {}
        if parsed.violations:
            condition = invalid_condition(parsed.violations, instance.generation)
            log.warning("k8s.instance.invalid", namespace=namespace, name=name, violations=condition.message)
            await self._write_status(instance, old_status, condition, load_balancer=None)
            return ReconcileResult(Outcome.INVALID, condition)

        rendering = await self._render(instance)
        service = await self._controlled(Kind.SERVICE, instance, write=rendering.service)
        deployment = await self._controlled(Kind.DEPLOYMENT, instance, write=rendering.deployment if service else None)

        matched = rendering.gateway is not None
        condition = compute_ready(
            deployment, service, gateway_matched=matched, mesh=rendering.mesh, generation=instance.generation
        )
        load_balancer = None
        if matched and service is not None:
            load_balancer = (service.get("status") or {}).get("loadBalancer") or {}
        await self._write_status(instance, old_status, condition, load_balancer=load_balancer)
        log.debug(
            "k8s.instance.reconciled",
            namespace=namespace,
            name=name,
            mesh=rendering.mesh,
            gateway=rendering.gateway.meta.name if rendering.gateway else None,
            ready=condition.status,
            reason=condition.reason,
        )
        return ReconcileResult(Outcome.APPLIED if matched else Outcome.NO_GATEWAY, condition)

    async def _render(self, instance: MeshGatewayInstance) -> Rendering:
        namespace = await self._api.get(Kind.NAMESPACE, "", instance.namespace)
        annotations = ((namespace or {}).get("metadata") or {}).get("annotations") or {}
        gateways: list[Resource] = (await self._store.list(kinds.MESH_GATEWAY)).items
        return render(instance, gateways, self._settings, annotations)

    async def _controlled(
        self, kind: Kind, instance: MeshGatewayInstance, *, write: KubeObject | None
    ) -> KubeObject | None:
        """Applies `write` and returns the result; with nothing to write, returns the instance's live object as
        it is. An object of that name that the instance does not control counts as absent, and is never
        written: Kuma's ManageControlledObject only finds and changes objects its instance controls."""
        live = await self._api.get(kind, instance.namespace, instance.name)
        if live is not None and controller_of(live) != instance.name:
            if write is not None:
                raise NotControlledError(kind.value, instance.namespace, instance.name)
            return None
        if write is None:
            return live
        return await self._api.apply(write)

    async def _delete_controlled(self, namespace: str, name: str) -> None:
        for kind in (Kind.DEPLOYMENT, Kind.SERVICE):
            obj = await self._api.get(kind, namespace, name)
            if obj is not None and controller_of(obj) == name and await self._api.delete(kind, namespace, name):
                log.info("k8s.object.deleted", kind=kind.value, namespace=namespace, name=name)

    async def _write_status(
        self,
        instance: MeshGatewayInstance,
        old_status: Mapping[str, Any],
        condition: Condition,
        *,
        load_balancer: Mapping[str, Any] | None,
    ) -> None:
        conditions = set_condition(instance.conditions, condition, format_time(self._clock()))
        new_status = dict(old_status)
        new_status["conditions"] = [c.to_json() for c in conditions]
        if load_balancer is not None:
            new_status["loadBalancer"] = dict(load_balancer)
        patch = status_patch(old_status, new_status)
        if patch is not None:
            await self._api.patch_status(Kind.MESH_GATEWAY_INSTANCE, instance.namespace, instance.name, patch)
