"""The zone's side of ZoneToGlobalSync: the zone opens the call but plays the delta-xDS *server*.

The global sends requests (subscribe with the versions it holds for this zone, then ACK/NACK) and the
zone answers with its Dataplanes and zone-origin MeshGateways, named and labelled as
`meshgate.kds.ownership.to_global` says, using the same sans-IO `Sender` and stream loop the global uses in
the other direction (meshgate.transport.stream_loop). It runs inside the zone's KDS session (one gRPC
connection), so the two directions connect and fail together, as Kuma's multiplexed session does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import grpc
import structlog

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.delta import PerType
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE, payload_budget
from meshgate.kds.sender import ProtocolError, Sender
from meshgate.sync.snapshots import SnapshotSource
from meshgate.transport.observer import Observer
from meshgate.transport.stream_loop import run_stream

__all__ = ["ZoneUpstream"]

log = structlog.get_logger(__name__)


class ZoneUpstream:
    def __init__(
        self,
        zone: str,
        source: SnapshotSource,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_msg_size: int = DEFAULT_MAX_MSG_SIZE,
    ) -> None:
        self.zone = zone
        self._max_bytes = payload_budget(max_msg_size)
        self._source = source
        self._clock = clock
        self._observer = Observer("kds", served=self.kinds)
        # The current session's sender (its per-kind counters), None before the first connect.
        self.sender: Sender | None = None

    @property
    def kinds(self) -> Sequence[str]:
        return [d.name for d in self._source.kinds]

    async def run(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]], instance_id: str = "") -> None:
        """Serves the global until the call ends; raises so the whole zone session reconnects. `instance_id`
        (this zone control plane's) goes in every response's `control_plane.identifier`. Kinds the global
        asks for that this zone does not serve (a Kuma global asks for 22) are answered empty once."""
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(metadata=metadata)
        sender = self.sender = Sender(self.kinds, max_bytes=self._max_bytes, control_plane_id=instance_id)
        views = PerType(lambda kind: self._source.snapshots[kind])
        slog = log.bind(zone=self.zone, stream="zone-to-global")
        with self._source.listen() as wake:
            error = await run_stream(
                sender, call, call.write, lambda: views, wake, self._observer.stream(slog), self._clock
            )
        raise error or ProtocolError("the global closed ZoneToGlobalSync")
