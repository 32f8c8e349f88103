"""What a delta stream reports: `DeltaStream.receive` and `DeltaStream.respond` return these.

Adapters never look inside the machine to learn what happened; they map each event to a write (`Sent`
carries the response), log lines, metrics and watch events (meshgate.transport.observer). `unknown` marks a
type the stream answers without serving it (KDS: a kind this side does not know, answered empty once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.service.discovery.v3 import discovery_pb2

__all__ = [
    "Delivered",
    "Event",
    "InitialStateSplit",
    "Oversized",
    "Rejected",
    "Sent",
    "Subscribed",
    "Updated",
]


@dataclass(frozen=True, slots=True)
class Subscribed:
    type_url: str
    initial_versions: int
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Updated:
    """A subscription change outside an ACK or NACK (delta xDS)."""

    type_url: str
    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Delivered:
    """An ACK: the peer holds what the response `nonce` carried."""

    type_url: str
    nonce: str
    upserts: int
    removals: int
    latency: float  # seconds from the response to its ACK
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Rejected:
    """A NACK. `names`: rejected name -> reason, as far as the peer said; `error` is its whole message."""

    type_url: str
    nonce: str
    error: str
    names: dict[str, str]
    upserts: int
    removals: int
    latency: float
    unknown: bool = False


@dataclass(frozen=True, slots=True)
class Sent:
    """A response to write now, in this order."""

    type_url: str
    response: discovery_pb2.DeltaDiscoveryResponse = field(repr=False)
    bytes: int
    complete: bool  # False: the size budget cut it short and more follows
    unknown: bool = False

    @property
    def nonce(self) -> str:
        return str(self.response.nonce)


@dataclass(frozen=True, slots=True)
class Oversized:
    """Resources that alone exceed the message budget: (name, version, bytes) each, never sent."""

    type_url: str
    resources: tuple[tuple[str, str, int], ...]
    max_bytes: int


@dataclass(frozen=True, slots=True)
class InitialStateSplit:
    """The first response of a type did not carry its whole state (a Kuma peer takes it as the whole state)."""

    type_url: str
    resources: int
    bytes: int
    max_bytes: int


Event = Subscribed | Updated | Delivered | Rejected | Sent | Oversized | InitialStateSplit
