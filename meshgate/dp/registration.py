"""Registering a Dataplane with its zone over the zone's HTTP API, and removing it again.

    PUT    {cp_api}/meshes/{mesh}/dataplanes/{name}   body: the Universal form as JSON (codec.encode)
    DELETE {cp_api}/meshes/{mesh}/dataplanes/{name}

A zone that is not up yet is waited for (connection errors and 5xx are retried until a deadline); a 4xx is the
user's mistake (an invalid Dataplane, an unknown mesh) and fails at once with Kuma's error body.

Errors: `RegistrationError` (fatal for startup). Deregistration never raises: it logs, because it runs on the way
out, when there is nothing better to do.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import anyio
import httpx
import structlog

from meshgate.resources import codec
from meshgate.resources.model import Resource

__all__ = ["RegistrationError", "dataplane_path", "deregister", "register"]

log = structlog.get_logger("meshgate.dp")

# Retry delays while the zone is not reachable: start fast (a zone starting beside us), cap at 2 s.
_FIRST_DELAY = 0.1
_MAX_DELAY = 2.0


class RegistrationError(Exception):
    """The zone refused the Dataplane, or stayed unreachable until the deadline."""


def dataplane_path(resource: Resource) -> str:
    return f"/meshes/{quote(resource.meta.mesh, safe='')}/dataplanes/{quote(resource.meta.name, safe='')}"


def _describe(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:500]}"
    return f"HTTP {resp.status_code}: {json.dumps(body)[:2000]}"


async def register(client: httpx.AsyncClient, resource: Resource, *, retry_for: float) -> None:
    """PUT the Dataplane; retries while the zone is unreachable or failing, for at most `retry_for` seconds."""
    path = dataplane_path(resource)
    body = codec.encode(resource)
    delay = _FIRST_DELAY
    last = ""
    with anyio.move_on_after(retry_for):
        while True:
            try:
                resp = await client.put(path, json=body)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    log.info(
                        "dp.registered", dataplane=resource.meta.name, mesh=resource.meta.mesh, api=str(client.base_url)
                    )
                    return
                if resp.status_code < 500:
                    raise RegistrationError(f"the zone refused the Dataplane: {_describe(resp)}")
                last = _describe(resp)
            log.warning("dp.register.retry", error=last, retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)
    raise RegistrationError(f"could not register with {client.base_url} within {retry_for}s: {last}")


async def deregister(client: httpx.AsyncClient, resource: Resource) -> bool:
    """DELETE the Dataplane; True when it is gone (also when it already was)."""
    try:
        resp = await client.delete(dataplane_path(resource))
    except httpx.TransportError as exc:
        log.warning("dp.deregister.failed", error=f"{type(exc).__name__}: {exc}")
        return False
    if resp.status_code < 300 or resp.status_code == 404:
        log.info("dp.deregistered", dataplane=resource.meta.name, mesh=resource.meta.mesh)
        return True
    log.warning("dp.deregister.failed", error=_describe(resp))
    return False
