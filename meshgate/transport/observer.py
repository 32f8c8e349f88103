"""What a process makes of its delta streams' events: structlog lines, Prometheus metrics, `kds watch` events.

One `Observer` per process and protocol; `stream(log, session)` gives the callable one stream's loop
(meshgate.transport.stream_loop) feeds every event to. The lines it writes are the ones operators and tests
read, so their names and fields are part of the interface:

    event               KDS (type = the kind)                                xDS (type = the short type)
    Subscribed          kds.subscribe INFO (+ watch "subscribe"),            xds.subscribe DEBUG
                        kds.subscribe.unknown_kind INFO for an unknown kind
    Updated             -                                                    xds.update DEBUG
    Delivered (ACK)     kds.delivered INFO (+ metric, watch "ack")           xds.delivered INFO (+ metric)
    Rejected (NACK)     kds.nack WARNING (+ metric, watch "nack")            xds.nack WARNING (+ metric)
    Sent                kds.response.sent DEBUG (+ metric, watch "response") xds.response.sent DEBUG (+ metric)
    Oversized           kds.resource.oversized ERROR (+ stream warning, watch "oversized")
    InitialStateSplit   kds.initial_state_split WARNING

Metrics and watch events need the process's `StreamRegistry` and the stream's `StreamSession` (the global's
side of KDS); without them (the zone's upstream) only the lines are written. xDS metrics need the
`XdsMetrics` and the stream's proxy (`stream(log, proxy=...)`): the zone's counters per proxy. What a peer wrote (kind
names, NACK texts, rejected names) is clipped before it is logged or published.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import UTC, datetime
from functools import partial
from typing import Literal

import structlog

from meshgate.delta import Event
from meshgate.delta import events as ev
from meshgate.kds.limits import clip
from meshgate.kds.receiver import Plan
from meshgate.observability.metrics import XdsMetrics
from meshgate.sync.streams import StreamRegistry, StreamSession

__all__ = ["Observer"]

Logger = structlog.typing.FilteringBoundLogger

# A NACK's text as a zone wrote it is logged and published up to this many characters (it joins every
# validation error of the response), and at most this many rejected names per line or event.
_NACK_TEXT = 1024
_NACK_NAMES = 20


class Observer:
    def __init__(
        self,
        protocol: Literal["kds", "xds"],
        registry: StreamRegistry | None = None,
        *,
        served: Collection[str] = (),
        label: Callable[[str], str] = clip,
        xds_metrics: XdsMetrics | None = None,
    ) -> None:
        """`served`: the kinds metrics are labelled with (unknown kinds are named by peers: no label values
        for them). `label`: how a type URL is named in lines."""
        self.protocol = protocol
        self.registry = registry
        self.served = frozenset(served)
        self.label = label
        self.xds_metrics = xds_metrics

    def stream(
        self, log: Logger, session: StreamSession | None = None, *, proxy: tuple[str, str] | None = None
    ) -> Callable[[Event], None]:
        """`proxy`: an xDS stream's (mesh, dataplane name), which its metrics are labelled with."""
        return partial(self.observe, log, session, proxy=proxy)

    def observe(
        self, log: Logger, session: StreamSession | None, event: Event, *, proxy: tuple[str, str] | None = None
    ) -> None:
        if self.protocol == "xds":
            self._xds(log, event)
            if self.xds_metrics is not None and proxy is not None:
                self._xds_metric(self.xds_metrics, proxy, event)
        else:
            self._kds(log, session, event)

    # -- KDS --------------------------------------------------------------------------------------------

    def _publish(self, session: StreamSession | None, event: str, **fields: object) -> None:
        if self.registry is not None and session is not None:
            self.registry.events.publish(session.zone, session.stream_id, session.direction, event, **fields)  # type: ignore[arg-type]

    def _kds(self, log: Logger, session: StreamSession | None, event: Event) -> None:
        metrics = self.registry.metrics if self.registry is not None and session is not None else None
        match event:
            case ev.Subscribed(unknown=True):
                # Answered empty, never sent again: an INFO line when subscribed, nothing per ACK.
                log.info("kds.subscribe.unknown_kind", type=clip(event.type_url))
            case ev.Subscribed():
                log.info("kds.subscribe", type=event.type_url, initial_versions=event.initial_versions)
                self._publish(session, "subscribe", kind=event.type_url)
            case ev.Delivered(unknown=True) | ev.Updated():
                pass
            case ev.Rejected(unknown=True):
                log.warning("kds.nack", type=clip(event.type_url), nonce=event.nonce, error=clip(event.error))
            case ev.Delivered():
                latency_ms = round(event.latency * 1000, 3)
                if session is not None:
                    session.last_update = datetime.now(UTC)
                if metrics is not None:
                    metrics.requests_received[(event.type_url, "ACK")] += 1
                # One INFO line per delivered change: delivery is provable from the logs alone.
                log.info(
                    "kds.delivered",
                    type=event.type_url,
                    nonce=event.nonce,
                    upserts=event.upserts,
                    removals=event.removals,
                    latency_ms=latency_ms,
                )
                self._publish(session, "ack", kind=event.type_url, nonce=event.nonce, latency_ms=latency_ms)
            case ev.Rejected():
                if session is not None:
                    session.last_update = datetime.now(UTC)
                if metrics is not None:
                    metrics.requests_received[(event.type_url, "NACK")] += 1
                # The peer wrote these: what we log and publish of them is bounded (names, reasons, how many).
                rejected = sorted((clip(n), clip(r, _NACK_TEXT)) for n, r in event.names.items())
                error = clip(event.error, _NACK_TEXT)
                log.warning(
                    "kds.nack",
                    type=event.type_url,
                    nonce=event.nonce,
                    error=error,
                    rejected=[n for n, _ in rejected[:_NACK_NAMES]],
                    rejected_count=len(rejected),
                )
                self._publish(
                    session,
                    "nack",
                    kind=event.type_url,
                    nonce=event.nonce,
                    latency_ms=round(event.latency * 1000, 3),
                    error=error,
                    rejected=tuple(rejected[:_NACK_NAMES]),
                )
            case ev.Sent():
                resp = event.response
                if session is not None:
                    session.last_update = datetime.now(UTC)
                if metrics is not None and event.type_url in self.served:
                    metrics.responses_sent[event.type_url] += 1
                self._publish(
                    session,
                    "response",
                    kind=event.type_url,
                    nonce=resp.nonce,
                    upserts=tuple((r.name, r.version) for r in resp.resources),
                    removals=tuple(resp.removed_resources),
                )
                log.debug(
                    "kds.response.sent",
                    type=event.type_url,
                    nonce=resp.nonce,
                    upserts=len(resp.resources),
                    removals=len(resp.removed_resources),
                )
            case ev.Oversized():
                for name, _, size in event.resources:
                    message = f"{event.type_url} {name} is {size} bytes, over the {event.max_bytes}-byte message limit"
                    if session is not None:
                        if message in session.warnings:
                            continue
                        session.warn(message)
                    log.error("kds.resource.oversized", type=event.type_url, name=name, bytes=size)
                    self._publish(session, "oversized", kind=event.type_url, error=message)
            case ev.InitialStateSplit():
                # A Kuma zone takes the first response as the whole state and deletes what it lacks.
                log.warning(
                    "kds.initial_state_split",
                    type=event.type_url,
                    resources=event.resources,
                    bytes=event.bytes,
                    max_bytes=event.max_bytes,
                    hint="raise --kds-max-msg-size on the global and the zones: a Kuma zone deletes and"
                    " re-creates what did not fit in the first response",
                )

    def applied(self, log: Logger, session: StreamSession, plan: Plan) -> None:
        """What the global's receiver made of a response a zone sent up (zone-to-global): its ACK or NACK."""
        upserts = tuple((name, version) for name, version, _ in plan.upserts)
        removals = tuple(name for name, _ in plan.removals)
        common = {"kind": plan.kind, "nonce": plan.nonce, "upserts": upserts, "removals": removals}
        if plan.accepted:
            log.info("kds.delivered", type=plan.kind, nonce=plan.nonce, upserts=len(upserts), removals=len(removals))
            self._publish(session, "ack", **common)
            return
        rejected = tuple((r.name, r.reason) for r in plan.rejections)
        if self.registry is not None and plan.rejections:
            self.registry.metrics.rejected[(session.zone, plan.kind)] += len(plan.rejections)
        log.warning(
            "kds.nack",
            type=plan.kind,
            nonce=plan.nonce,
            rejected=dict(rejected[:_NACK_NAMES]),
            rejected_count=len(rejected),
        )
        self._publish(session, "nack", error="; ".join(f"{n}: {r}" for n, r in rejected), rejected=rejected, **common)

    # -- xDS --------------------------------------------------------------------------------------------

    @staticmethod
    def _xds_metric(metrics: XdsMetrics, proxy: tuple[str, str], event: Event) -> None:
        mesh, name = proxy
        match event:
            case ev.Delivered():
                metrics.requests_received[(mesh, name, event.type_url, "ACK")] += 1
            case ev.Rejected():
                metrics.requests_received[(mesh, name, event.type_url, "NACK")] += 1
            case ev.Sent():
                metrics.responses_sent[(mesh, name, event.type_url)] += 1
            case _:
                pass

    def _xds(self, log: Logger, event: Event) -> None:
        match event:
            case ev.Subscribed() | ev.Updated():
                first = isinstance(event, ev.Subscribed)
                log.debug(
                    "xds.subscribe" if first else "xds.update",
                    type=self.label(event.type_url),
                    subscribe=list(event.subscribe),
                    unsubscribe=list(event.unsubscribe),
                    initial_versions=event.initial_versions if isinstance(event, ev.Subscribed) else 0,
                )
            case ev.Delivered():
                # One INFO line per delivered change: delivery is provable from the logs alone.
                log.info(
                    "xds.delivered",
                    type=self.label(event.type_url),
                    nonce=event.nonce,
                    upserts=event.upserts,
                    removals=event.removals,
                    latency_ms=round(event.latency * 1000, 3),
                )
            case ev.Rejected():
                log.warning(
                    "xds.nack",
                    type=self.label(event.type_url),
                    nonce=event.nonce,
                    rejected=list(event.names),
                    error=event.error,
                )
            case ev.Sent():
                log.debug(
                    "xds.response.sent",
                    type=self.label(event.type_url),
                    nonce=event.response.nonce,
                    upserts=[r.name for r in event.response.resources],
                    removals=list(event.response.removed_resources),
                )
            case ev.Oversized() | ev.InitialStateSplit():
                pass  # xDS streams have no size budget
