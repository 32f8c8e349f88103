"""Several global replicas on one Redis: each tells the others which zone streams it holds.

A zone's KDS streams live on whichever replica it connected to, but any replica must answer
`/zones/_overview`, `inspect zones` and "can I delete this zone?" for every zone. So every replica publishes
a summary of its open streams to Redis (one key per replica, expiring after a few intervals, so a dead
replica's streams vanish on their own) and reads the others' into `StreamRegistry.remote`.

With a single-process store (memory, sqlite) there is nobody to tell, and this does nothing.
"""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any

import anyio
import structlog
from redis.exceptions import RedisError

from global_cp.insights import Now, subscription, timestamp
from meshgate.store.redis_client import redis_client, split_prefix
from meshgate.sync.streams import RemoteZone, StreamRegistry

__all__ = ["ReplicaDirectory"]

log = structlog.get_logger(__name__)

# A replica's summary outlives this many publish intervals: one missed beat is no outage.
_TTL_INTERVALS = 4


class ReplicaDirectory:
    def __init__(self, redis_url: str, streams: StreamRegistry, *, interval: float = 1.0):
        self._redis = redis_client(redis_url, timeout=2.0)
        self._streams = streams
        # The same key prefix as the store (the URL's ?prefix=), so replicas of one install find each other.
        self._prefix = f"{split_prefix(redis_url)[1]}replica:"
        self._interval = interval
        # This replica's API URL as others can reach it; set by the app once the API port is bound.
        self.api_url = ""

    def summary(self, now: Now) -> dict[str, Any]:
        zones: dict[str, Any] = {}
        for session in self._streams.active.values():
            z = zones.setdefault(session.zone, {"subscriptions": [], "streaming": False, "health": None})
            z["subscriptions"].append(subscription(session, now))
            z["streaming"] = z["streaming"] or session.direction == "global-to-zone"
        for zone, z in zones.items():
            z["health"] = timestamp(self._streams.last_health_check.get(zone))
        return {"instanceId": self._streams.instance_id, "apiUrl": self.api_url, "zones": zones}

    async def publish_and_collect(self) -> None:
        me = self._streams.instance_id
        ttl_ms = int(self._interval * _TTL_INTERVALS * 1000)
        await self._redis.set(self._prefix + me, json.dumps(self.summary(Now.current())), px=ttl_ms)
        remote: dict[str, RemoteZone] = {}
        async for key in self._redis.scan_iter(match=self._prefix + "*", count=100):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name == self._prefix + me:
                continue
            raw = await self._redis.get(name)
            if raw is None:
                continue  # expired between SCAN and GET
            doc = json.loads(raw)
            for zone, z in doc.get("zones", {}).items():
                view = remote.setdefault(zone, RemoteZone())
                replica = str(doc.get("instanceId", name))
                view.replicas.add(replica)
                if doc.get("apiUrl"):
                    view.api_urls[replica] = str(doc["apiUrl"])
                view.subscriptions.extend(z.get("subscriptions", []))
                view.streaming = view.streaming or bool(z.get("streaming"))
                if z.get("health"):
                    seen = datetime.fromisoformat(z["health"].replace("Z", "+00:00"))
                    view.health_last_seen = max(filter(None, (view.health_last_seen, seen)))
        self._streams.remote = remote

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        down = False
        try:
            while True:
                try:
                    await self.publish_and_collect()
                    if down:
                        log.info("replicas.redis_back")
                    down = False
                except (RedisError, OSError) as exc:
                    if not down:
                        log.warning("replicas.redis_unavailable", error=str(exc))
                    down = True
                await anyio.sleep(self._interval)
        finally:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(RedisError, OSError):
                    await self._redis.delete(self._prefix + self._streams.instance_id)
                await self._redis.aclose()
