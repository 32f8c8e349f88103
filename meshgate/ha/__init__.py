"""High availability of the global: leader election for singleton work, through a Redis lease."""

from __future__ import annotations

from meshgate.ha.lease import RedisLease

__all__ = ["RedisLease"]
