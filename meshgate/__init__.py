"""meshgate: a multi-zone control plane for mesh gateways (Kuma 2.7 wire-compatible)."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
