"""The zone's side of ZoneToGlobalSync: the zone opens the call but plays the delta-xDS *server*.

The global sends requests (subscribe with the versions it holds for this zone, then ACK/NACK) and the
zone answers with its Dataplanes and zone-origin MeshGateways, named and labelled as
`meshgate.kds.ownership.to_global` says, using the same sans-IO `Sender` the global uses in the other
direction. It runs inside the zone's KDS session (one gRPC connection), so
the two directions connect and fail together, as Kuma's multiplexed session does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import anyio
import grpc
import structlog

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE, clip, payload_budget
from meshgate.kds.sender import Input, ProtocolError, Sender, rejected_names
from meshgate.transport.snapshots import SnapshotSource

__all__ = ["ZoneUpstream"]

log = structlog.get_logger("meshgate.kds.upstream")


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
        # The current session's sender (its per-kind counters), None before the first connect.
        self.sender: Sender | None = None

    @property
    def kinds(self) -> Sequence[str]:
        return [d.name for d in self._source.kinds]

    async def run(self, channel: grpc.aio.Channel, metadata: Sequence[tuple[str, str]], instance_id: str = "") -> None:
        """Serves the global until the call ends; raises so the whole zone session reconnects. `instance_id`
        (this zone control plane's) goes in every response's `control_plane.identifier`."""
        call = kds_pb2_grpc.KDSSyncServiceStub(channel).ZoneToGlobalSync(metadata=metadata)
        sender = self.sender = Sender(self.kinds, max_bytes=self._max_bytes, control_plane_id=instance_id)
        slog = log.bind(zone=self.zone, stream="zone-to-global")
        with self._source.listen() as wake:
            async with anyio.create_task_group() as tg:

                async def read() -> None:
                    async for req in call:
                        kind = req.type_url
                        flight = sender.kinds[kind].in_flight if kind in sender.kinds else None
                        ks, inp = sender.receive(req, self._clock())
                        if sender.is_unknown(kind):
                            # A kind the zone does not serve (a Kuma global asks for 22): answered empty.
                            if inp is Input.SUBSCRIBE:
                                slog.info("kds.subscribe.unknown_kind", type=clip(kind))
                        elif inp is Input.ACK and flight is not None:
                            slog.info(
                                "kds.delivered",
                                type=kind,
                                nonce=req.response_nonce,
                                upserts=len(flight.upserts),
                                removals=len(flight.removals),
                            )
                        elif inp is Input.NACK:
                            slog.warning(
                                "kds.nack",
                                type=kind,
                                nonce=req.response_nonce,
                                error=req.error_detail.message,
                                rejected=sorted(rejected_names(req)),
                            )
                        else:
                            slog.info("kds.subscribe", type=kind, initial_versions=len(ks.known))
                        wake.set()
                    raise ProtocolError("the global closed ZoneToGlobalSync")

                tg.start_soon(read)
                while True:
                    for kind in self.kinds:
                        resp = sender.next_response(self._source.snapshots[kind], self._clock())
                        if resp is not None:
                            await call.write(resp)
                            slog.debug(
                                "kds.response.sent",
                                type=kind,
                                nonce=resp.nonce,
                                upserts=len(resp.resources),
                                removals=len(resp.removed_resources),
                            )
                    # Kinds the global asked for that this zone does not serve: one empty response each, as
                    # Kuma's cache answers them, and the session goes on.
                    for resp in sender.unknown_responses(self._clock()):
                        await call.write(resp)
                    await wake.wait()
