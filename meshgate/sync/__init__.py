"""The live state of sync in one control-plane process, between the store and the KDS adapters.

- `snapshots.py`: `SnapshotSource`, what each KDS sender offers per kind (the delta engine's snapshots), kept
  current from the store by the one store-watch loop;
- `streams.py`: `StreamRegistry`, who is connected and what crossed: every KDS stream, its sender or receiver,
  per-zone history and the event feed that insights, `kds watch`, `kds trace` and the stall watchdog read.
"""

from __future__ import annotations

from meshgate.sync.snapshots import SnapshotSource
from meshgate.sync.streams import EventBus, KDSEvent, StreamRegistry, StreamSession, ZoneHistory

__all__ = ["EventBus", "KDSEvent", "SnapshotSource", "StreamRegistry", "StreamSession", "ZoneHistory"]
