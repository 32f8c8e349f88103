"""The zone's side of ZoneIngress: what an ingress proxy registers (`zone_ingress_from_metadata`, for the xDS
door in `zone_cp.dp_server`), and keeping the zone's ZoneIngresses listing the services behind them (Kuma
2.7.29's `ZoneAvailableServicesTracker`, pkg/zone/available_services.go).

Kuma polls on an interval; here the one store-watch loop runs the step after every change of Dataplanes or
ZoneIngresses (and on a slow resync). The computation is `meshgate.xds.ingress`; this module only reads the
store and writes the ZoneIngresses whose list differs. A write that loses a race with another writer (a
re-registration, a second zone replica) is read again and retried at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import anyio.abc
import grpc
import structlog

from meshgate.kds import ownership
from meshgate.resources import codec, kinds
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import LABEL_ORIGIN, LABEL_ZONE, Origin, Resource
from meshgate.store.protocol import ConflictError, NotFoundError, ResourceStore, iter_all
from meshgate.store.watch import WatchLog, reconcile_forever
from meshgate.transport.ads_server import StreamRefused
from meshgate.xds.ads import ProxyId
from meshgate.xds.ingress import available_services, serves_zone, with_available_services

__all__ = ["IngressServices", "zone_ingress_from_metadata"]

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


def zone_ingress_from_metadata(proxy: ProxyId, text: str | None, *, field: str, max_bytes: int) -> Resource:
    """The ZoneIngress an ingress proxy (`node.id` `.<name>`) sends in its metadata, as kuma-dp
    `--proxy-type ingress` does; registered with origin zone, like a Dataplane."""
    if text is None or len(text) > max_bytes:
        raise StreamRefused(
            "invalid_dataplane",
            f"a ZoneIngress proxy must send its ZoneIngress (at most {max_bytes} bytes) as node metadata"
            f" {field!r} (meshgate-dp --proxy-type ingress --dataplane-file)",
            grpc.StatusCode.INVALID_ARGUMENT,
        )
    try:
        docs = codec.load_documents(text)
        if len(docs) != 1 or docs[0].get("type", kinds.ZONE_INGRESS) != kinds.ZONE_INGRESS:
            raise StreamRefused(
                "invalid_dataplane", f"{field} must hold one ZoneIngress", grpc.StatusCode.INVALID_ARGUMENT
            )
        if docs[0].get("name", proxy.name) != proxy.name:
            raise StreamRefused(
                "invalid_dataplane",
                f"{field} names {docs[0].get('name')}, not node.id {proxy}",
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        given = docs[0].get("labels")
        labels: dict[str, Any] = dict(given) if isinstance(given, dict) else {}
        labels.pop(LABEL_ZONE, None)
        doc = {
            **docs[0],
            "type": kinds.ZONE_INGRESS,
            "name": proxy.name,
            "labels": {**labels, LABEL_ORIGIN: Origin.ZONE.value},
        }
        doc.pop("zone", None)  # empty in the zone that registers it; the global sets it
        doc.pop("availableServices", None)  # the zone computes them
        return codec.load(doc, kind=kinds.ZONE_INGRESS)
    except ValidationError as exc:
        problems = "; ".join(map(str, exc.violations))[:_MAX_LOGGED]
        raise StreamRefused(
            "invalid_dataplane",
            f"invalid ZoneIngress in {field}: {problems}",
            grpc.StatusCode.INVALID_ARGUMENT,
        ) from None
