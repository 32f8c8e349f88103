"""Moved to `meshgate.testing.wait`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.wait import eventually

__all__ = ["eventually"]
