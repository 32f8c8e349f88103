"""Kuma's error bodies (`/std-errors`), so kumactl and the GUI read our failures as they read Kuma's.

Error tree of `meshgate.rest`::

    ApiError                 an expected failure with a Kuma error body; the status it carries is the answer
    ├── 400  bad input: unparsable, too deep or too large a body, path/body mismatch, violations, bad paging
    │         or query numbers (`params`), missing mesh
    ├── 404  no resource (or no mesh) under the path
    ├── 405  the kind is managed by the other control plane
    ├── 409  optimistic concurrency lost more than `handlers.MAX_WRITE_ATTEMPTS` times
    ├── 413  the body is larger than `body.MAX_BODY_BYTES` (a bulk apply: its own bounds, or too many items)
    ├── 415  the body has a Content-Encoding (only identity is accepted)
    └── 503  the store is unreachable

Anything else raised by a handler is a bug: it is logged and answered 500 "Internal Server Error", as Kuma's
`HandleError` default branch does. The body shape follows pkg/core/rest/errors/types/error.go (v2.7.29):
`invalid_parameters` and `causes` are omitted when empty, `details` repeats `detail` for old clients.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from meshgate.resources.errors import Violation

__all__ = [
    "GLOBAL_READ_ONLY_MESSAGE",
    "MAX_REPORTED_VIOLATIONS",
    "ZONE_READ_ONLY_MESSAGE",
    "ApiError",
    "InvalidParameter",
    "bad_request",
    "capped",
    "conflict",
    "error_body",
    "invalid_offset",
    "invalid_page_size",
    "mesh_not_found",
    "method_not_allowed",
    "not_found",
    "service_unavailable",
    "validation_failed",
]

ERROR_TYPE = "/std-errors"
# The most violations one answer lists; a person fixes the first hundred before reading more.
MAX_REPORTED_VIOLATIONS = 100

# Kuma's readOnlyMessage() texts (pkg/api-server/resource_endpoints.go, v2.7.29), less the final newline.
GLOBAL_READ_ONLY_MESSAGE = (
    "On global control plane you can not modify dataplane resources with 'kumactl apply' or via the HTTP API."
    " You can still use 'kumactl' or the HTTP API to modify them on the zone control plane."
)
ZONE_READ_ONLY_MESSAGE = (
    "On zone control plane you can only modify zone resources with 'kumactl apply' or via the HTTP API."
    " You can still use 'kumactl' or the HTTP API to modify the rest of the resource"
    " on the global control plane."
)


@dataclass(frozen=True, slots=True)
class InvalidParameter:
    field: str
    reason: str


class ApiError(Exception):
    """An expected failure: the handler stops and the middleware answers with this Kuma error body."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        invalid_parameters: Sequence[InvalidParameter] = (),
        extra: Mapping[str, object] | None = None,
    ) -> None:
        """`extra`: members added to Kuma's body (the bulk apply's per-resource `resources`)."""
        self.status = status
        self.title = title
        self.detail = detail
        self.invalid_parameters = list(invalid_parameters)
        self.extra = dict(extra or {})
        super().__init__(f"{status} {title}: {detail}")

    def body(self) -> dict[str, object]:
        return {**error_body(self.status, self.title, self.detail, self.invalid_parameters), **self.extra}

    def response(self) -> web.Response:
        return web.json_response(self.body(), status=self.status, dumps=_dumps)


def _dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)


def error_body(
    status: int, title: str, detail: str, invalid_parameters: Sequence[InvalidParameter] = ()
) -> dict[str, object]:
    body: dict[str, object] = {"type": ERROR_TYPE, "status": status, "title": title, "detail": detail}
    if invalid_parameters:
        body["invalid_parameters"] = [{"field": p.field, "reason": p.reason} for p in invalid_parameters]
    body["details"] = detail
    if invalid_parameters:
        body["causes"] = [{"field": p.field, "message": p.reason} for p in invalid_parameters]
    return body


def bad_request(detail: str) -> ApiError:
    # Kuma answers an unparsable body with title "Bad Request" and the parser's message as detail.
    return ApiError(400, "Bad Request", detail)


def validation_failed(violations: Iterable[Violation], title: str = "Could not process a resource") -> ApiError:
    return ApiError(400, title, "Resource is not valid", capped(violations))


def capped(violations: Iterable[Violation]) -> list[InvalidParameter]:
    """The violations as Kuma's invalid parameters, at most `MAX_REPORTED_VIOLATIONS` and a count of the rest."""
    params = [InvalidParameter(v.field, v.message) for v in violations]
    if len(params) > MAX_REPORTED_VIOLATIONS:
        # A 1 MiB body of unknown fields would otherwise earn a many-MiB answer: name the first ones.
        more = len(params) - MAX_REPORTED_VIOLATIONS
        params = [*params[:MAX_REPORTED_VIOLATIONS], InvalidParameter("", f"and {more} more violations")]
    return params


def mesh_not_found(mesh: str) -> ApiError:
    # error_handler.go, case manager.IsMeshNotFound; title as in testdata/resource_mesh-not-found.golden.json.
    return ApiError(
        400,
        "Could not create a resource",
        "Mesh is not found",
        [InvalidParameter("mesh", f"mesh of name {mesh} is not found")],
    )


def not_found(title: str) -> ApiError:
    # Titles Kuma uses: "Could not retrieve a resource" (GET), "Could not delete a resource" (DELETE),
    # "Failed to retrieve Mesh" (the mesh in the path does not exist).
    return ApiError(404, title, "Not found")


def invalid_offset(title: str = "Could not retrieve resources", reason: str = "Invalid format") -> ApiError:
    return ApiError(400, title, "Invalid offset", [InvalidParameter("offset", reason)])


def invalid_page_size(reason: str, title: str = "Could not retrieve resources") -> ApiError:
    return ApiError(400, title, "Invalid page size", [InvalidParameter("size", reason)])


def method_not_allowed(detail: str) -> ApiError:
    return ApiError(405, "Method not Allowed", detail)


def conflict(detail: str) -> ApiError:
    return ApiError(409, "Conflict", detail)


def service_unavailable(detail: str) -> ApiError:
    return ApiError(503, "Service unavailable", detail)
