"""`GET /config`: the control plane's effective configuration, as Kuma's (pkg/api-server/config_ws.go, v2.7.29).

Kuma answers its parsed kuma-cp config after `config.ConfigForDisplay` replaced every secret with `*****`
(`config.SanitizedValue`). meshgate has no config file: each process renders its parsed flags in Kuma's
top-level keys where it has an equivalent (`mode`, `environment`, `general`, `store`, `apiServer`,
`diagnostics`, `multizone`, and on a zone `dpServer`, `dnsServer`, `runtime`), in `global_cp/config_view.py`
and `zone_cp/config_view.py`, durations as Go writes them ("10s", "1m0s").

What keeps secrets out, in two layers:
- the views are allow-lists: a field is shown only when a view names it, and a secret-bearing field is shown
  as `*****` when set (`sanitized`); a store or global URL keeps everything but its password and any
  credential-like query parameter (`redact_url`);
- `scrub` then replaces any string that holds a PEM block or looks like a JWT, so a token or key pasted into
  some other flag is never served either.

Nothing here holds a private key, a token or a password: key material lives in the store (served only as
the API's access rules allow) and in files whose paths, as in Kuma, are shown.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from aiohttp import web

from meshgate.resources.duration import SECOND, format_duration
from meshgate.rest.app import ExtraRoute
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.factory import DEFAULT_SQLITE_FILE

__all__ = [
    "CONFIG_SCHEMA",
    "SANITIZED",
    "api_server_view",
    "config_route",
    "duration",
    "path_or_empty",
    "redact_url",
    "sanitized",
    "scrub",
    "store_view",
]

SANITIZED = "*****"
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+\.")
# Query parameters that carry credentials in the URLs drivers accept (redis-py reads `password` there).
_CREDENTIAL_PARAM = re.compile(r"pass|token|secret|key|credential|auth", re.IGNORECASE)

CONFIG_SCHEMA: JsonSchema = {
    "type": "object",
    "description": "The control plane's effective configuration in Kuma's top-level keys; secrets as *****",
    "properties": {
        "mode": {"type": "string", "enum": ["global", "zone"]},
        "environment": {"type": "string", "enum": ["universal", "kubernetes"]},
        **{
            key: {"type": "object"}
            for key in ("general", "store", "apiServer", "diagnostics", "multizone", "dpServer", "dnsServer")
        },
    },
    "required": ["mode", "environment", "store", "apiServer", "multizone"],
}


def sanitized(value: str) -> str:
    """A secret as Kuma displays it: `*****` when set, "" when not (so an operator sees whether it is)."""
    return SANITIZED if value else ""


def duration(seconds: float) -> str:
    """Seconds as Go's Duration.String, as Kuma writes durations in its config."""
    return format_duration(round(seconds * SECOND))


def path_or_empty(path: Path | None) -> str:
    return "" if path is None else str(path)


def redact_url(url: str) -> str:
    """`url` without its password (userinfo) or credential-like query values; other text is kept."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return SANITIZED  # not a URL we can take apart: show nothing of it rather than guess
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{SANITIZED}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, SANITIZED if _CREDENTIAL_PARAM.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def store_view(url: str, data_dir: Path, *, allow_volatile: bool, leader_lease: float | None = None) -> dict[str, Any]:
    """Kuma's `store`: its `type`, and the settings of that type (`--store` forms: meshgate.store.factory)."""
    if url == "memory":
        return {"type": "memory"}
    if url == "sqlite" or url.startswith("sqlite:"):
        path = data_dir / DEFAULT_SQLITE_FILE if url == "sqlite" else Path(url.removeprefix("sqlite:"))
        return {"type": "sqlite", "sqlite": {"path": str(path)}}
    redis: dict[str, Any] = {"url": redact_url(url), "allowVolatile": allow_volatile}
    if leader_lease is not None:
        redis["leaderLease"] = duration(leader_lease)
    return {"type": "redis", "redis": redis}


def api_server_view(bind_address: str, port: int, *, localhost_is_admin: bool) -> dict[str, Any]:
    """Kuma's `apiServer`: plain HTTP on the bind address, user tokens (Kuma's `tokens` authn)."""
    return {
        "http": {"enabled": True, "interface": bind_address, "port": port},
        "https": {"enabled": False},
        "authn": {"type": "tokens", "localhostIsAdmin": localhost_is_admin, "tokens": {"bootstrapAdminToken": True}},
    }


def scrub(value: Any) -> Any:
    """`value` with every string that holds a PEM block or a JWT replaced by `*****`, at any depth."""
    if isinstance(value, str):
        return SANITIZED if _PEM.search(value) or _JWT.search(value) else value
    if isinstance(value, Mapping):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def config_route(view: Mapping[str, Any]) -> ExtraRoute:
    """`GET /config` answering `view` (scrubbed once, here: the configuration does not change while running)."""
    body = scrub(view)

    async def handler(_: web.Request) -> web.Response:
        return web.json_response(body)

    return ExtraRoute(
        "GET",
        "/config",
        handler,
        "This control plane's configuration (Kuma's /config), secrets as *****",
        CONFIG_SCHEMA,
    )
