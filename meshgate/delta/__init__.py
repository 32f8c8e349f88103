"""One sans-IO delta engine for every xDS-style protocol meshgate speaks: KDS and Envoy's delta ADS.

Entries with one content hash (`entry.py`), per-type snapshots with a change log (`snapshot.py`),
subscriptions (`subscription.py`), one pure `compute_delta` (`delta.py`), the per-type state and its
transition table (`state.py`), what a settled stream keeps as a cursor into the snapshot its peer holds
(`versions.py`, `stamps.py`), the events a stream reports (`events.py`) and the stream itself, set up by a
`StreamConfig` (`stream.py`). No I/O: no grpc, no sockets, no clocks (callers pass `now`).

Errors::

    ProtocolError          the peer broke the protocol: fatal for the stream
     └── (meshgate.kds.errors.MalformedMessage, raised by KDS's admission of unknown kinds)
"""

from __future__ import annotations

from meshgate.delta.delta import Delta, compute_delta
from meshgate.delta.entry import Entry, content_hash
from meshgate.delta.events import (
    Delivered,
    Event,
    InitialStateSplit,
    Oversized,
    Rejected,
    Sent,
    Subscribed,
    Updated,
)
from meshgate.delta.snapshot import KindSnapshot
from meshgate.delta.stamps import Stamp, Stamps
from meshgate.delta.state import InFlight, Input, NackRecord, ProtocolError, State, TypeState, TypeStats, classify
from meshgate.delta.stream import DeltaStream, PerType, Snapshots, StreamConfig
from meshgate.delta.subscription import WILDCARD, Subscription
from meshgate.delta.versions import Versions

__all__ = [
    "WILDCARD",
    "Delivered",
    "Delta",
    "DeltaStream",
    "Entry",
    "Event",
    "InFlight",
    "InitialStateSplit",
    "Input",
    "KindSnapshot",
    "NackRecord",
    "Oversized",
    "PerType",
    "ProtocolError",
    "Rejected",
    "Sent",
    "Snapshots",
    "Stamp",
    "Stamps",
    "State",
    "StreamConfig",
    "Subscribed",
    "Subscription",
    "TypeState",
    "TypeStats",
    "Updated",
    "Versions",
    "classify",
    "compute_delta",
    "content_hash",
]
