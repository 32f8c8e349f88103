"""The redis-py client that every meshgate user of Redis (the store, the lease) builds the same way.

- One URL for all of them: ``redis://HOST:PORT/DB?prefix=P`` puts every key under P (default
  ``meshgate:``); `split_prefix` takes our parameter out before redis-py, which would refuse it, sees it.

- Bounded: connect and socket timeouts, so a call against a dead or partitioned Redis fails instead of
  hanging.
- No retries inside redis-py: a write whose reply was lost may have committed, and a blind retry would
  report a spurious conflict. Callers decide what is safe to repeat (the store repeats reads once).
- Stale pooled connections detected: before handing out a pooled connection, redis-py checks whether
  the server closed it (a Redis restart closes them all), but redis-py 8 skips that check whenever
  "maintenance notifications" are enabled, and their default, "auto", counts as enabled. Then every
  pooled connection fails once after a restart. We use no maintenance notifications, so they are off.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

__all__ = ["DEFAULT_PREFIX", "redis_client", "split_prefix"]

DEFAULT_PREFIX: Final = "meshgate:"


def split_prefix(url: str, default: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """(`url` without its `prefix` query parameter, that prefix or `default`)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), default)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    if not parts.netloc:
        # urlunsplit writes `unix:/path` for an empty netloc, a URL redis-py 8.2 refuses: keep the `//`.
        return f"{parts.scheme}://{parts.path}" + (f"?{rest}" if rest else ""), prefix
    return urlunsplit(parts._replace(query=rest)), prefix


def redis_client(url: str, *, timeout: float) -> Redis:
    """A client for `url` (redis://, rediss:// or unix://; a `prefix` parameter is ignored); bytes out."""
    return Redis.from_url(
        split_prefix(url)[0],
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        decode_responses=False,
    )
