"""Moved to `meshgate.testing.envoy`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.envoy import DELAY_HEADER, Envoy, HttpBackend, free_port, http_backend, running_envoy

__all__ = ["DELAY_HEADER", "Envoy", "HttpBackend", "free_port", "http_backend", "running_envoy"]
