"""The diagnostics HTTP app of each control plane: readiness, liveness and Prometheus metrics.

Kept apart from the resource API so a probe or a scrape never competes with users for that port, and so
it can listen on an interface the API does not (Kuma serves these on its diagnostics port, 5680).
"""

from __future__ import annotations

from collections.abc import Callable

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry

__all__ = ["create_diagnostics_app"]


def create_diagnostics_app(
    ready: Callable[[], bool],
    registry: CollectorRegistry = prometheus_client.REGISTRY,
    *,
    extra_text: Callable[[], str] | None = None,
) -> web.Application:
    """`/ready` answers 200 once `ready()` is true (503 before), `/healthy` 200, `/metrics` the registry.

    `extra_text`, when given, returns more samples in the text exposition format, appended to `/metrics`:
    for metrics a component renders itself rather than through a prometheus_client registry.
    """

    async def get_ready(_: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready")

    async def get_healthy(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def get_metrics(_: web.Request) -> web.Response:
        body = prometheus_client.generate_latest(registry)
        if extra_text is not None:
            extra = extra_text()
            if extra and not extra.endswith("\n"):
                extra += "\n"  # the exposition format ends every sample line with a newline
            body += extra.encode("utf-8")
        response = web.Response(body=body)
        # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp wants set on the header itself.
        response.headers["Content-Type"] = prometheus_client.CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/ready", get_ready)
    app.router.add_get("/healthy", get_healthy)
    app.router.add_get("/metrics", get_metrics)
    return app
