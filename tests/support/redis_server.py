"""Moved to `meshgate.testing.redis_server`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.redis_server import RedisServer, redis_server

__all__ = ["RedisServer", "redis_server"]
