"""The HTTP API shared by the global and the zone control plane: Kuma's REST paths over a ResourceStore.

Routes are derived from the kind registry: `/meshes` and `/meshes/{name}` for Mesh, and for every
mesh-scoped kind with plural P: `/meshes/{mesh}/P`, `/meshes/{mesh}/P/{name}` and `/P` (every mesh).
`extra_routes` lets the process that owns the app add its own endpoints (the global's `/zones`, say); they
are routed through the same error and logging middleware and listed in `/openapi.json`. `before_write` lets it
veto a PUT or DELETE of a resource with an `ApiError` (the global refuses to delete a connected Zone) without
the shared handlers knowing about that process's rules. `POST /_apply` (`meshgate.rest.bulk`) stores many
resources in one transaction, item by item under the same rules as their PUTs.
"""

from __future__ import annotations

import importlib.metadata
import re
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

import structlog
from aiohttp import web

from meshgate.apply_batch import APPLY_PATH
from meshgate.resources import registry
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import ResourceKey
from meshgate.rest.authn import ApiAuth, private_keys_middleware
from meshgate.rest.body import MAX_BODY_BYTES
from meshgate.rest.bulk import BeforeWrite, BulkApply
from meshgate.rest.errors import ApiError, conflict, not_found, service_unavailable
from meshgate.rest.handlers import ResourceEndpoints, Role
from meshgate.rest.openapi import DocumentedRoute, build_openapi, secure_openapi
from meshgate.rest.spec_schema import JsonSchema
from meshgate.store.protocol import ConflictError, NotFoundError, ResourceStore, StoreUnavailableError

__all__ = ["STORE_KEY", "BeforeWrite", "ExtraRoute", "Handler", "create_api_app"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE_KEY = web.AppKey("meshgate.store", ResourceStore)
BASED_ON_KUMA = "2.7"
PRODUCT = "meshgate"

_logger = structlog.get_logger(__name__)


class ExtraRoute(NamedTuple):
    """An endpoint added by the owning process; a plain (method, path, handler, summary) tuple works too.
    `response` (the 200 body's JSON schema) and `query` (OpenAPI Parameter objects) go into /openapi.json."""

    method: str
    path: str
    handler: Handler
    summary: str
    response: JsonSchema | None = None
    query: tuple[JsonSchema, ...] = ()


def _version() -> str:
    try:
        return importlib.metadata.version("meshgate")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


KUMACTL_TAGLINE = "Kuma"


def _display_name(kind: str) -> str:
    return " ".join(re.findall(r"[A-Z][a-z0-9]*", kind)) or kind


def _plural_display_name(kind: str) -> str:
    singular = _display_name(kind)
    return singular + ("es" if singular.endswith(("s", "sh", "ch", "x")) else "s")


@web.middleware
async def _kuma_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Maps expected failures to Kuma error bodies, logs every request once with its status."""
    log = _logger.bind(method=request.method, path=request.path)
    try:
        response = await handler(request)
    except ApiError as exc:
        response = exc.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        # aiohttp's own 404 (no route), 405 (no such method on a route), 413 (body too large), ...
        api_error = ApiError(exc.status, exc.reason, exc.text or exc.reason)
        response = api_error.response()
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
    except StoreUnavailableError as exc:
        response = service_unavailable(f"the resource store is unavailable: {exc}").response()
    except ConflictError as exc:
        response = conflict(str(exc)).response()
    except NotFoundError:
        response = not_found("Could not find a resource").response()
    except Exception:
        # A bug, not an expected failure: keep the traceback in the log, give the client Kuma's 500.
        log.exception("request failed")
        response = ApiError(500, "Could not process the request", "Internal Server Error").response()
    log.info("request", status=response.status)
    return response


def create_api_app(
    store: ResourceStore,
    *,
    role: Role,
    extra_routes: Sequence[ExtraRoute | tuple[str, str, Handler, str]] = (),
    instance_id: str | None = None,
    cluster_id: str = "",
    kinds: Sequence[KindDescriptor] | None = None,
    before_write: BeforeWrite | None = None,
    zone: str = "",
    auth: ApiAuth | None = None,
) -> web.Application:
    """The aiohttp app serving Kuma's resource API for `role`. Serve it with `meshgate.rest.serve_app`.

    `auth`: who may call what (`meshgate.rest.authn`); None serves everyone as admin (in-process tests only).
    Private keys are withheld either way."""
    hostname = socket.gethostname()
    version = _version()
    served = list(kinds) if kinds is not None else list(registry.KINDS)
    endpoints = [ResourceEndpoints(store, kind, role, zone) for kind in served]
    extras = [ExtraRoute(*route) for route in extra_routes]
    index = {
        "hostname": hostname,
        # kumactl 2.7 refuses a control plane whose tagline is not "Kuma" (app/kumactl/pkg/config/validate.go),
        # as Kong Mesh answers "Kong Mesh" to its own CLI; `product` says what this really is.
        "tagline": KUMACTL_TAGLINE,
        "product": PRODUCT,
        "version": version,
        "basedOnKuma": BASED_ON_KUMA,
        # Kuma's instance id is "<hostname>-<4 random hex chars>" unless the process supplies one.
        "instanceId": instance_id or f"{hostname}-{secrets.token_hex(2)}",
        "clusterId": cluster_id,
    }
    resource_types = {
        "resources": sorted(
            (
                {
                    "name": ep.descriptor.name,
                    "path": ep.descriptor.plural,
                    "singular": ep.descriptor.singular,
                    "singularDisplayName": _display_name(ep.descriptor.name),
                    "pluralDisplayName": _plural_display_name(ep.descriptor.name),
                    "scope": ep.descriptor.scope.value,
                    "readOnly": not ep.writable,
                    "includeInFederation": ep.descriptor.sends_to_zone(),
                }
                for ep in endpoints
            ),
            key=lambda d: str(d["name"]),
        )
    }
    openapi = secure_openapi(
        build_openapi(
            ((ep.descriptor, ep.writable) for ep in endpoints),
            role=role,
            version=version,
            extra_routes=[DocumentedRoute(r.method, r.path, r.summary, r.response, r.query) for r in extras],
        )
    )

    async def get_index(_: web.Request) -> web.Response:
        return web.json_response(index)

    async def get_resource_types(_: web.Request) -> web.Response:
        return web.json_response(resource_types)

    async def get_openapi(_: web.Request) -> web.Response:
        return web.json_response(openapi)

    app = web.Application(
        middlewares=[_kuma_errors, *(auth.middlewares() if auth else ()), private_keys_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[STORE_KEY] = store
    app.router.add_get("/", get_index)
    app.router.add_get("/_resources", get_resource_types)
    app.router.add_get("/openapi.json", get_openapi)
    # Extra routes first: aiohttp tries routes that share a prefix in registration order, and a fixed path
    # such as /meshes/{mesh}/dataplanes/_overview must win over the resource route /meshes/{mesh}/dataplanes/{name}.
    for route in extras:
        app.router.add_route(route.method, route.path, route.handler)
    app.router.add_post(APPLY_PATH, BulkApply(store, endpoints, role, zone, before_write).handle)
    for ep in endpoints:
        plural = ep.descriptor.plural
        collection = f"/meshes/{{mesh}}/{plural}" if ep.descriptor.mesh_scoped else f"/{plural}"
        app.router.add_get(collection, ep.list_resources)
        app.router.add_get(collection + "/{name}", ep.get_resource)
        app.router.add_put(collection + "/{name}", _checked(ep.put_resource, ep.descriptor, before_write))
        app.router.add_delete(collection + "/{name}", _checked(ep.delete_resource, ep.descriptor, before_write))
        if ep.descriptor.mesh_scoped:
            app.router.add_get(f"/{plural}", ep.list_resources)
    return app


def _checked(handler: Handler, descriptor: KindDescriptor, before_write: BeforeWrite | None) -> Handler:
    """`handler`, preceded by the owning process's veto on writes of this kind (when it has one)."""
    if before_write is None:
        return handler

    async def checked(request: web.Request) -> web.StreamResponse:
        mesh = request.match_info.get("mesh", "") if descriptor.mesh_scoped else ""
        await before_write(request.method, ResourceKey(descriptor.name, mesh, request.match_info["name"]))
        return await handler(request)

    return checked
