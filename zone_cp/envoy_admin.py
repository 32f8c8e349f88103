"""The zone's Envoy admin client: a connected proxy's config dump, for `GET .../dataplanes/{name}/xds` on the
zone and for the global's requests over `StreamXDSConfigs` (meshgate/transport/xds_configs.py).

    EnvoyAdminDumper.dump(mesh, name)               the proxy's live authenticated xDS stream (zone_cp/dp_server.py):
                                                    its peer address and the `dataplane.admin.port` it declared
        -> GET http://<peer>:<admin port>/config_dump    (never a port a Dataplane resource names; with
           meshgate-dp beside the zone that is loopback; Kuma's kuma-dp reaches it through its own admin proxy)

The data plane token is redacted from the dump before it leaves the zone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from meshgate.resources import kinds
from meshgate.resources.model import ResourceKey
from meshgate.store.protocol import NotFoundError, ResourceStore
from meshgate.transport.xds_configs import ConfigDumpError, DataplaneNotFound, ProxyNotConnected

__all__ = ["ADMIN_TIMEOUT", "AdminLocator", "EnvoyAdminDumper", "admin_url"]

ADMIN_TIMEOUT = 10.0

# (mesh, name) -> (host, port) of the Envoy admin of a proxy with a live authenticated xDS stream, else None.
AdminLocator = Callable[[str, str], tuple[str, int] | None]


def admin_url(host: str, port: int, include_eds: bool) -> str:
    where = f"[{host}]" if ":" in host else host
    return f"http://{where}:{port}/config_dump" + ("?include_eds" if include_eds else "")


def _redact(config: bytes) -> bytes:
    """The dump without the data plane token: Envoy's bootstrap carries it as the xDS call's `authorization`
    initial metadata, and a config dump is readable by anyone who may read the API."""
    if b'"authorization"' not in config:
        return config
    try:
        doc = json.loads(config)
    except ValueError:
        return config

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("key", "")).lower() == "authorization" and "value" in node:
                node["value"] = "[redacted]"
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return json.dumps(doc, indent=1).encode()


class EnvoyAdminDumper:
    """The zone's side: a connected proxy's Envoy config dump.

    Only from a proxy with a live authenticated xDS stream, at that stream's peer address and the admin port
    the proxy declared on it (`locate`). Never from an address or port a Dataplane resource names: anyone
    who can write a Dataplane (or a zone relaying one) could otherwise make this zone request any port of
    its own loopback (a request forgery)."""

    def __init__(self, store: ResourceStore, locate: AdminLocator, timeout: float = ADMIN_TIMEOUT) -> None:
        self._store = store
        self._locate = locate
        self._timeout = timeout

    async def dump(self, mesh: str, name: str, include_eds: bool = False) -> bytes:
        try:
            await self._store.get(ResourceKey(kinds.DATAPLANE, mesh, name))
        except NotFoundError:
            raise DataplaneNotFound(f'Dataplane "{name}" not found in mesh "{mesh}"') from None
        target = self._locate(mesh, name)
        if target is None:
            raise ProxyNotConnected(
                f'proxy "{name}" has no authenticated xDS stream to this zone that declared an Envoy admin port:'
                " config dumps come only from a connected proxy"
            )
        url = admin_url(*target, include_eds)
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                resp = await client.get(url)
        except httpx.HTTPError as exc:
            raise ConfigDumpError(
                f'proxy "{name}" is not reachable at {url} ({type(exc).__name__}: {exc}); is it connected?'
            ) from None
        if resp.status_code != 200:
            raise ConfigDumpError(f"Envoy admin at {url} answered HTTP {resp.status_code}: {resp.text[:300]}")
        return _redact(resp.content)
