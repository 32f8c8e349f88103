"""Which proxies are connected to this zone's ADS server, and what each holds, ACKed and rejected.

Plain state, no I/O: the adapter opens and closes streams here, and the read API (`describe`) serves a
later `/xds/proxies` endpoint and the tests. A proxy's last stream stays visible after it disconnects, so a
NACK is never lost just because Envoy went away.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from meshgate.xds.ads import AdsStream, ProxyId

__all__ = ["ProxyRecord", "ProxyRegistry", "StreamRecord"]


@dataclass(slots=True)
class StreamRecord:
    id: int
    stream: AdsStream
    peer: str
    opened_at: float
    closed_at: float | None = None
    error: str = ""

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "peer": self.peer,
            "openedAt": self.opened_at,
            "closedAt": self.closed_at,
            "error": self.error or None,
            "types": self.stream.describe(),
        }


@dataclass(slots=True)
class ProxyRecord:
    proxy: ProxyId
    active: dict[int, StreamRecord] = field(default_factory=dict)
    last: StreamRecord | None = None  # the most recently opened stream, open or closed
    connects: int = 0

    @property
    def connected(self) -> bool:
        return bool(self.active)

    def describe(self) -> dict[str, Any]:
        return {
            "proxy": str(self.proxy),
            "mesh": self.proxy.mesh,
            "dataplane": self.proxy.name,
            "connected": self.connected,
            "connects": self.connects,
            "streams": [s.describe() for s in self.active.values()],
            "last": None if self.last is None else self.last.describe(),
        }


class ProxyRegistry:
    def __init__(self) -> None:
        self.proxies: dict[ProxyId, ProxyRecord] = {}
        self._ids = itertools.count(1)

    def open(self, stream: AdsStream, peer: str, now: float) -> StreamRecord:
        record = self.proxies.get(stream.proxy)
        if record is None:
            record = self.proxies[stream.proxy] = ProxyRecord(stream.proxy)
        rec = StreamRecord(next(self._ids), stream, peer, now)
        record.active[rec.id] = rec
        record.last = rec
        record.connects += 1
        return rec

    def close(self, rec: StreamRecord, now: float, error: str = "") -> None:
        rec.closed_at = now
        rec.error = error
        record = self.proxies.get(rec.stream.proxy)
        if record is not None:
            record.active.pop(rec.id, None)

    def get(self, proxy: ProxyId) -> ProxyRecord | None:
        return self.proxies.get(proxy)

    def describe(self) -> dict[str, Any]:
        """`{"proxies": [...]}` sorted by mesh and name; each proxy as `ProxyRecord.describe`."""
        return {"proxies": [self.proxies[p].describe() for p in sorted(self.proxies)]}
