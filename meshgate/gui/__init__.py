"""The web GUI: a static page at `/gui` on the API's own port, reading the API like any other client.

How it authenticates: the page and its assets are static files that hold no stored data, so they are served to
anyone (the access table's `/gui/**` row is PUBLIC, as `GET /` and `/openapi.json` are). Everything the page
shows it reads with `fetch()` from the JSON API, which runs every request through the same authentication and
access rules as `meshgatectl`: a browser cannot send `Authorization: Bearer` on a navigation, but it can on a
`fetch()`. A user pastes a user token once; the page keeps it in `sessionStorage` (gone with the tab, never in a
cookie, so no other site can make the browser send it) and sends it as a bearer header. From a browser on the
control plane's own machine, with `--api-localhost-is-admin` (the default), the page works with no token: its
same-origin requests pass `meshgate.rest.authn.direct_loopback` as the admin user, as `meshgatectl` does there.

The assets are package data (`meshgate/gui/static/`, listed in pyproject.toml), hand-written HTML, CSS and
JavaScript with no build step and nothing fetched from another origin; the Content-Security-Policy below
forbids any other origin, inline script and framing.
"""

from __future__ import annotations

import importlib.resources
from typing import Final, Literal

from aiohttp import web

__all__ = ["ASSETS", "GUI_PATH", "add_gui"]

GUI_PATH: Final = "/gui"
# Every file the GUI serves, and its type: a fixed table, so no request path ever reaches the file system.
ASSETS: Final = {
    "index.html": "text/html",
    "app.css": "text/css",
    "app.js": "text/javascript",
    "pages.js": "text/javascript",
    "yaml.js": "text/javascript",
}
_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Small files read once per page load: always revalidated, so an upgraded control plane serves its own GUI.
    "Cache-Control": "no-cache",
}
# What the page learns from the server: which control plane it is on (the global shows zones, a zone itself).
_ROLE_MARKER: Final = "{{ROLE}}"


def _load(role: str) -> dict[str, bytes]:
    files = importlib.resources.files(__name__) / "static"
    out = {name: (files / name).read_bytes() for name in ASSETS}
    out["index.html"] = out["index.html"].replace(_ROLE_MARKER.encode(), role.encode())
    return out


def add_gui(app: web.Application, *, role: Literal["global", "zone"]) -> None:
    """Serves the GUI from `app` (the API app, before it starts), behind the app's own middlewares. Not listed
    in /openapi.json: these are pages for a browser, not API operations."""
    body = _load(role)

    async def redirect(_: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(GUI_PATH + "/")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info.get("file") or "index.html"
        if name not in ASSETS:
            raise web.HTTPNotFound(text=f"the GUI has no file {name!r}")
        return web.Response(body=body[name], content_type=ASSETS[name], charset="utf-8", headers=_HEADERS)

    app.router.add_get(GUI_PATH, redirect)
    app.router.add_get(GUI_PATH + "/", asset)
    app.router.add_get(GUI_PATH + "/{file}", asset)
