"""The one async loop every delta stream runs: the KDS server, the zone's KDS upstream and Envoy's ADS server.

A reader applies each request to the sans-IO `DeltaStream` and sets the wake-up; a writer sends whatever
the stream says is due, then waits for the wake-up (a request arrived, or the snapshot source changed).
Both share one anyio task group, so either ending ends the other (house rule: the reader and writer of one
stream share a task group). Every event the stream returns goes to `observe` (meshgate.transport.observer);
a `Sent` is written first, so what is observed as sent was written.

A ProtocolError from the reader (a stale nonce, a malformed message, a failed `check`) ends the loop and is
returned, for the adapter to map to its status; anything else propagates, and a cancel from outside (a
replaced stream, a refused token) cancels the task group as usual.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

import anyio
import anyio.abc
from envoy.service.discovery.v3 import discovery_pb2

from meshgate.concurrency import Wakeup
from meshgate.delta import DeltaStream, Event, ProtocolError, Sent, Snapshots

__all__ = ["Observe", "run_stream"]

Observe = Callable[[Event], None]


async def run_stream(
    stream: DeltaStream,
    requests: AsyncIterable[discovery_pb2.DeltaDiscoveryRequest],
    write: Callable[[discovery_pb2.DeltaDiscoveryResponse], Awaitable[object]],
    snapshots: Callable[[], Snapshots | None],
    wake: Wakeup,
    observe: Observe,
    clock: Callable[[], float],
    *,
    first: Sequence[discovery_pb2.DeltaDiscoveryRequest] = (),
    check: Callable[[discovery_pb2.DeltaDiscoveryRequest], None] | None = None,
    started: Callable[[anyio.abc.TaskGroup], None] | None = None,
) -> ProtocolError | None:
    """Serves one stream until the peer stops sending (None) or breaks the protocol (the error).

    `first`: requests already read (ADS reads the first to name the proxy). `check`: the shape check a
    request passes before the machine sees it. `started`: called with the task group, to add a task (a
    token watch) or keep its cancel scope."""
    error: ProtocolError | None = None

    def apply(req: discovery_pb2.DeltaDiscoveryRequest) -> None:
        if check is not None:
            check(req)
        for event in stream.receive(req, clock()):
            observe(event)
        wake.set()

    async with anyio.create_task_group() as tg:

        async def read() -> None:
            nonlocal error
            try:
                for req in first:
                    apply(req)
                async for req in requests:
                    apply(req)
            except ProtocolError as exc:
                error = exc
            tg.cancel_scope.cancel()

        if started is not None:
            started(tg)
        tg.start_soon(read)
        while True:
            for event in stream.respond(snapshots(), clock()):
                if isinstance(event, Sent):
                    await write(event.response)
                observe(event)
            await wake.wait()
    return error
