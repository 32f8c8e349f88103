"""Moved to `meshgate.testing.kds_peer`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.kds_peer import kds_channel, kds_metadata

__all__ = ["kds_channel", "kds_metadata"]
