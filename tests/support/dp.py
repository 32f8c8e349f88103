"""Moved to `meshgate.testing.dp`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.dp import DpProcess, dataplane_token, zone_ca, zone_dp

__all__ = ["DpProcess", "dataplane_token", "zone_ca", "zone_dp"]
