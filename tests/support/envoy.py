"""Moved to `meshgate.testing.envoy`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.envoy import Envoy, HttpBackend, free_port, http_backend, running_envoy

__all__ = ["Envoy", "HttpBackend", "free_port", "http_backend", "running_envoy"]
