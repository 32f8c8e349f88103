"""The HTTP resource API (Kuma's REST paths) shared by the global and the zone control plane."""

from __future__ import annotations

from meshgate.rest.app import STORE_KEY, ExtraRoute, Handler, create_api_app
from meshgate.rest.errors import ApiError
from meshgate.rest.handlers import Role
from meshgate.rest.server import serve_app

__all__ = ["STORE_KEY", "ApiError", "ExtraRoute", "Handler", "Role", "create_api_app", "serve_app"]
