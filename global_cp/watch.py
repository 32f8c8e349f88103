"""`GET /kds/watch`: a live tail of what crosses the zones' KDS streams, as newline-delimited JSON.

One line per `KDSEvent` (its `to_json()`), flushed as it happens, filtered by `zone` and `kind`. With
`since=SEQ` the reply first replays the matching events still in the bus's short history with a larger
sequence number, then continues live without a gap or a duplicate (the watch is opened before the replay is
read, and live events already replayed are skipped by sequence number).

A `{"event":"heartbeat"}` line every `heartbeat` seconds keeps proxies from closing an idle stream, and is how a
vanished client is noticed (the write fails). If this client falls behind, the bus drops events for it rather
than slow a KDS stream; a `{"event":"dropped","count":N}` line says how many. On shutdown, `run` ending cancels
every open watch so the HTTP server need not wait out its grace period.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import anyio
import structlog
from aiohttp import web

from meshgate.resources import registry as kinds
from meshgate.resources.errors import UnknownKindError
from meshgate.rest.app import ExtraRoute
from meshgate.rest.errors import bad_request
from meshgate.rest.params import query_int
from meshgate.sync.streams import KDSEvent, StreamRegistry

__all__ = ["KDSWatch", "matches"]

log = structlog.get_logger(__name__)

HEARTBEAT = 15.0


def matches(event: KDSEvent, zone: str | None, kind: str | None) -> bool:
    """Events without a kind (connect, disconnect, health) belong to every kind's view of their zone."""
    return (zone is None or event.zone == zone) and (kind is None or not event.kind or event.kind == kind)


def _line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


class KDSWatch:
    def __init__(self, streams: StreamRegistry, *, heartbeat: float = HEARTBEAT) -> None:
        self._streams = streams
        self._heartbeat = heartbeat
        self._open: set[anyio.CancelScope] = set()

    def routes(self) -> list[ExtraRoute]:
        return [
            ExtraRoute(
                "GET",
                "/kds/watch",
                self.handle,
                "Live KDS events as NDJSON (?zone=, ?kind=, ?since=SEQ to replay recent history first)",
            )
        ]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        zone = request.query.get("zone") or None
        kind = request.query.get("kind") or None
        if kind is not None:
            try:
                kind = kinds.lookup(kind).name
            except UnknownKindError:
                raise bad_request(f"kind: unknown kind {kind!r}") from None
        since = query_int(request.query, "since", minimum=0)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson", "Cache-Control": "no-cache"})
        bus = self._streams.events
        # Watch first, then send the headers: a client that has the headers sees every later event.
        with bus.watch() as (events, dropped), anyio.CancelScope() as scope:
            self._open.add(scope)
            try:
                last = since if since is not None else max((e.seq for e in bus.history), default=0)
                try:
                    await response.prepare(request)
                    if since is not None:
                        for event in list(bus.history):
                            if event.seq > since and matches(event, zone, kind):
                                await response.write(_line(event.to_json()))
                                last = event.seq
                    await self._live(response, events, dropped, last, zone, kind)
                except ConnectionError:
                    log.debug("kds.watch.client_gone", zone=zone, kind=kind)
                    return response
            finally:
                self._open.discard(scope)
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
        return response

    async def _live(
        self,
        response: web.StreamResponse,
        events: anyio.abc.ObjectReceiveStream[KDSEvent],
        dropped: list[int],
        last: int,
        zone: str | None,
        kind: str | None,
    ) -> None:
        reported_drops = 0
        while True:
            event: KDSEvent | None = None
            with anyio.move_on_after(self._heartbeat):
                event = await events.receive()
            if dropped[0] > reported_drops:
                await response.write(_line({"event": "dropped", "count": dropped[0] - reported_drops}))
                reported_drops = dropped[0]
            if event is None:
                await response.write(_line({"event": "heartbeat"}))
            elif event.seq > last and matches(event, zone, kind):
                await response.write(_line(event.to_json()))

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Lives as long as the process: when it is cancelled, every open watch ends cleanly."""
        task_status.started()
        try:
            await anyio.sleep_forever()
        finally:
            for scope in list(self._open):
                scope.cancel()
