"""The sending side of one KDS stream: the delta engine (meshgate.delta) configured for KDS.

On GlobalToZoneSync the global is the sender; on ZoneToGlobalSync the zone is. The states, the transition
table and the events are the engine's (meshgate.delta.state); what is KDS's own:

- every subscription is wildcard and there is no UPDATE input: a second subscription to a kind is a
  ProtocolError;
- a NACK names the rejected resources in its google.rpc.BadRequest details (meshgate zones fill them; Kuma
  leaves them empty, and then the whole response counts as rejected);
- responses carry system_version_info = the snapshot revision and control_plane.identifier = the sender's
  instance id, as Kuma's control planes set it (pkg/util/xds/v3/control_plane_id_callbacks.go), and at most
  `max_bytes` of resources (a resource over it alone is reported, never sent);
- kinds answer in the order given (Mesh first), then the unknown ones.

The first response per kind is always sent, even when empty, so the receiver learns it is in sync.

A subscription to a kind this side does not serve is answered as Kuma's cache answers it: an empty first
response, then nothing, under the same transitions. A Kuma zone subscribes to 36 kinds and restarts its
whole KDS client on a stream error, so refusing one would make it loop forever. How many unknown kinds a
stream may name is bounded (meshgate.kds.limits.MAX_UNKNOWN_KINDS).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import error_details_pb2

from meshgate.delta import DeltaStream, Input, KindSnapshot, Sent, State, StreamConfig, TypeState
from meshgate.kds.errors import ProtocolError
from meshgate.kds.limits import DEFAULT_MAX_BYTES, check_initial_versions, check_unknown_kind, clip

__all__ = ["Input", "ProtocolError", "Sender", "State", "TypeState", "rejected_names"]


def rejected_names(req: discovery_pb2.DeltaDiscoveryRequest) -> dict[str, str]:
    """Rejected resource names from a NACK's error_detail.details (google.rpc.BadRequest), if present.

    Kuma leaves `details` empty; meshgate zones fill it, so the sender knows exactly which were bad.
    """
    out: dict[str, str] = {}
    for detail in req.error_detail.details:
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(bad):
            for v in bad.field_violations:
                out[v.field] = v.description
    return out


def _nack_names(
    req: discovery_pb2.DeltaDiscoveryRequest, upserts: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    named = rejected_names(req)
    # A peer that names nothing (Kuma) is taken to have rejected the whole response.
    bad = named.keys() & upserts.keys() if named else upserts.keys()
    return named, {name: named.get(name, req.error_detail.message) for name in bad}


class Sender(DeltaStream):
    """Sender state for all kinds of one stream. Feed it requests and snapshots; it emits events."""

    def __init__(self, kinds: Iterable[str], *, max_bytes: int = DEFAULT_MAX_BYTES, control_plane_id: str = "") -> None:
        """`control_plane_id` goes in every response's `control_plane.identifier`."""
        super().__init__(
            StreamConfig(
                served=tuple(kinds),
                nack_names=_nack_names,
                admit_unknown=check_unknown_kind,
                check_initial=check_initial_versions,
                max_bytes=max_bytes,
                version_info=True,
                control_plane_id=control_plane_id,
                change_log=True,
                cursor=True,
                label=clip,
            )
        )

    @property
    def kinds(self) -> dict[str, TypeState]:
        """The served kinds' states, in the order they are answered (KDS's name for `types`)."""
        return self.types

    @property
    def max_bytes(self) -> int:
        assert self.config.max_bytes is not None
        return self.config.max_bytes

    def is_unknown(self, kind: str) -> bool:
        return kind in self.unknown

    def next_response(self, snapshot: KindSnapshot, now: float) -> discovery_pb2.DeltaDiscoveryResponse | None:
        """The response to send for `snapshot.kind` now, or None (not subscribed, in flight, nothing new).
        Events other than the response are dropped: adapters use `respond`."""
        return next((e.response for e in self.respond_one(snapshot, now) if isinstance(e, Sent)), None)

    def unknown_responses(self, now: float) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        """The empty first response of every unknown kind subscribed since the last call."""
        return [r for kind in self.unknown if (r := self.next_response(KindSnapshot(kind), now)) is not None]
