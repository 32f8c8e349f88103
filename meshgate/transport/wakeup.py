"""Moved to `meshgate.concurrency`; kept so that modules written against this path still import (zone_cp/xds.py,
meshgate/xds/ads_server.py and meshgate/transport/snapshots.py did when it moved). Remove once none does."""

from __future__ import annotations

from meshgate.concurrency import Wakeup

__all__ = ["Wakeup"]
