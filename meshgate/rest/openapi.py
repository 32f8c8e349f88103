"""The OpenAPI 3.1 document of the API, derived from the kind registry and the routes actually served.

Nothing here is written per kind: a new kind in the registry appears in `/openapi.json` with its paths,
its spec schema (from the protobuf descriptor) and the role's write rules (405 where the kind is read-only).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from meshgate.apply_batch import APPLY_PATH, MAX_APPLY_BYTES, MAX_APPLY_ITEMS
from meshgate.resources.descriptor import KindDescriptor, Scope
from meshgate.rest.body import MAX_BODY_BYTES, MAX_DEPTH
from meshgate.rest.paging import MAX_OFFSET
from meshgate.rest.spec_schema import JsonSchema, message_properties, spec_descriptor

__all__ = ["PAGE_PARAMS", "DocumentedRoute", "build_openapi"]

_REF = "#/components/schemas/"
_PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@dataclass(frozen=True, slots=True)
class DocumentedRoute:
    """An endpoint outside the kind registry (index, /zones, ...): enough to list it in the document, and,
    when the route says, the schema of its 200 body and its query parameters (OpenAPI Parameter objects)."""

    method: str
    path: str
    summary: str
    response: JsonSchema | None = None
    query: tuple[JsonSchema, ...] = ()


def _error_schemas() -> dict[str, JsonSchema]:
    # The shape of pkg/core/rest/errors/types/error.go (Kuma v2.7.29).
    return {
        "InvalidParameter": {
            "type": "object",
            "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            "required": ["field", "reason"],
        },
        "Cause": {
            "type": "object",
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            "required": ["field", "message"],
        },
        "Error": {
            "type": "object",
            "description": "Kuma's standard error body",
            "properties": {
                "type": {"type": "string", "const": "/std-errors"},
                "status": {"type": "integer"},
                "title": {"type": "string"},
                "detail": {"type": "string"},
                "invalid_parameters": {"type": "array", "items": {"$ref": _REF + "InvalidParameter"}},
                "details": {"type": "string", "deprecated": True},
                "causes": {"type": "array", "items": {"$ref": _REF + "Cause"}, "deprecated": True},
            },
            "required": ["type", "status", "title", "detail"],
        },
        "Index": {
            "type": "object",
            "properties": {
                name: {"type": "string"}
                for name in (
                    "hostname",
                    "tagline",
                    "product",
                    "version",
                    "instanceId",
                    "clusterId",
                    "basedOnKuma",
                )
            },
        },
        "ResourceTypeDescriptionList": {
            "type": "object",
            "properties": {
                "resources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "path": {"type": "string"},
                            "singular": {"type": "string"},
                            "singularDisplayName": {"type": "string"},
                            "pluralDisplayName": {"type": "string"},
                            "scope": {"type": "string", "enum": [s.value for s in Scope]},
                            "readOnly": {"type": "boolean"},
                            "includeInFederation": {"type": "boolean"},
                        },
                    },
                }
            },
        },
    }


def _resource_schema(kind: KindDescriptor, components: dict[str, JsonSchema]) -> JsonSchema:
    meta: dict[str, JsonSchema] = {"type": {"type": "string", "const": kind.name}}
    if kind.mesh_scoped:
        meta["mesh"] = {"type": "string"}
    meta |= {
        "name": {"type": "string"},
        "creationTime": {"type": "string", "format": "date-time", "readOnly": True},
        "modificationTime": {"type": "string", "format": "date-time", "readOnly": True},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    }
    # Universal format: the spec's fields sit beside type/mesh/name, not under a `spec` key.
    return {
        "type": "object",
        "description": f"{kind.name} in Kuma's Universal format (spec fields inline, camelCase)",
        "properties": meta | message_properties(spec_descriptor(kind), components),
    }


def _list_schema(kind: KindDescriptor) -> JsonSchema:
    return {
        "type": "object",
        "properties": {
            "total": {"type": "integer"},
            "items": {"type": "array", "items": {"$ref": _REF + kind.name}},
            "next": {"type": ["string", "null"], "description": "URL of the next page, null on the last"},
        },
        "required": ["total", "items", "next"],
    }


def _json(ref: str) -> JsonSchema:
    return {"application/json": {"schema": {"$ref": _REF + ref}}}


def _error(description: str) -> JsonSchema:
    return {"description": description, "content": _json("Error")}


def _path_param(name: str, description: str) -> JsonSchema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


PAGE_PARAMS: list[JsonSchema] = [
    {
        "name": "size",
        "in": "query",
        "description": "page size",
        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
    },
    {
        "name": "offset",
        "in": "query",
        "description": "offset of the page",
        "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
    },
]


def _kind_paths(kind: KindDescriptor, writable: bool, role: str) -> dict[str, JsonSchema]:
    mesh_param = [_path_param("mesh", "name of the Mesh")] if kind.mesh_scoped else []
    name_param = [_path_param("name", f"name of the {kind.name}")]
    collection = f"/meshes/{{mesh}}/{kind.plural}" if kind.mesh_scoped else f"/{kind.plural}"
    lister: JsonSchema = {
        "summary": f"List {kind.name} resources" + (" in a mesh" if kind.mesh_scoped else ""),
        "operationId": f"list_{kind.plural}",
        "parameters": mesh_param + PAGE_PARAMS,
        "responses": {
            "200": {"description": "a page of resources", "content": _json(kind.name + "List")},
            "400": _error("bad size or offset"),
            **({"404": _error("no such mesh")} if kind.mesh_scoped else {}),
            "503": _error("the store is unavailable"),
        },
    }
    item: JsonSchema = {
        "parameters": mesh_param + name_param,
        "get": {
            "summary": f"Get a {kind.name}",
            "operationId": f"get_{kind.singular}",
            "responses": {
                "200": {"description": "the resource", "content": _json(kind.name)},
                "404": _error("no such resource"),
                "503": _error("the store is unavailable"),
            },
        },
    }
    read_only = {"405": _error(f"{kind.name} cannot be changed on the {role} control plane")}
    if writable:
        item["put"] = {
            "summary": f"Create or update a {kind.name}",
            "operationId": f"put_{kind.singular}",
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": _REF + kind.name}},
                    "application/yaml": {"schema": {"$ref": _REF + kind.name}},
                },
            },
            "responses": {
                "200": {"description": "updated"},
                "201": {"description": "created"},
                "400": _error(
                    "the body is not a valid resource (each violation names its field), is not JSON or YAML,"
                    f" nests deeper than {MAX_DEPTH} levels, or its mesh does not exist"
                ),
                "405": _error("the resource is synced from the other control plane"),
                "409": _error("concurrent writers kept changing the resource"),
                "413": _error(f"the body is larger than {MAX_BODY_BYTES} bytes"),
                "415": _error("the body has a Content-Encoding; only unencoded (identity) bodies are accepted"),
                "503": _error("the store is unavailable"),
            },
        }
        item["delete"] = {
            "summary": f"Delete a {kind.name}" + ("" if kind.mesh_scoped else " and every resource in it"),
            "operationId": f"delete_{kind.singular}",
            "responses": {
                "200": {
                    "description": "deleted",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "404": _error("no such resource"),
                "405": _error("the resource is synced from the other control plane"),
                "409": _error("concurrent writers kept changing the resource"),
                "503": _error("the store is unavailable"),
            },
        }
    else:
        item["put"] = {"summary": "Not allowed on this control plane", "responses": read_only}
        item["delete"] = {"summary": "Not allowed on this control plane", "responses": read_only}
    paths: dict[str, JsonSchema] = {collection: {"get": lister}, f"{collection}/{{name}}": item}
    if kind.mesh_scoped:
        everywhere: JsonSchema = dict(lister)
        everywhere |= {
            "summary": f"List {kind.name} resources in every mesh",
            "operationId": f"list_{kind.plural}_all_meshes",
            "parameters": PAGE_PARAMS,
        }
        everywhere["responses"] = {k: v for k, v in lister["responses"].items() if k != "404"}
        paths[f"/{kind.plural}"] = {"get": everywhere}
    return paths


def _apply_schemas(kinds: Sequence[str]) -> dict[str, JsonSchema]:
    named: JsonSchema = {k: {"type": "string"} for k in ("type", "mesh", "name")}
    return {
        "ApplyRequest": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_APPLY_ITEMS,
                    # Not a oneOf of every kind's schema: each item is checked as its PUT's body would be, and a
                    # oneOf of 30 deep schemas only makes generators (schemathesis) recurse.
                    "items": {
                        "type": "object",
                        "description": "a resource in Kuma's Universal format, as the PUT of its kind takes it",
                        "properties": {"type": {"type": "string", "enum": list(kinds)}, **named},
                        "required": ["type", "name"],
                    },
                }
            },
            "required": ["items"],
        },
        "ApplyResult": {
            "type": "object",
            "properties": {
                "items": {
                    "type": "array",
                    "description": "every item, in request order",
                    "items": {
                        "type": "object",
                        "properties": {
                            **named,
                            "index": {"type": "integer"},
                            "status": {"type": "string", "enum": ["created", "updated"]},
                        },
                    },
                }
            },
        },
        "ApplyError": {
            "allOf": [{"$ref": _REF + "Error"}],
            "description": "Kuma's error body; `invalid_parameters` fields are `items[i].<field>`, and `resources`"
            " lists each failing resource with its own violations",
            "properties": {
                "resources": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            **named,
                            "index": {"type": "integer"},
                            "invalid_parameters": {"type": "array", "items": {"$ref": _REF + "InvalidParameter"}},
                        },
                    },
                }
            },
        },
    }


def _apply_operation() -> JsonSchema:
    def error(description: str) -> JsonSchema:
        return {"description": description, "content": _json("ApplyError")}

    return {
        "summary": "Create or update many resources at once, all or nothing (meshgate's own; Kuma has none)",
        "description": "Every item is checked as its PUT would be, then all are stored in one transaction;"
        " if any item fails, nothing is stored and the answer names every failing resource and field."
        " A Mesh in the batch counts as existing for the other items.",
        "operationId": "apply_resources",
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF + "ApplyRequest"}}},
        },
        "responses": {
            "200": {"description": "every item stored", "content": _json("ApplyResult")},
            "400": error("some items are not valid resources, repeat a key, or name a mesh that does not exist"),
            "405": error("some items are of kinds, or are resources, owned by the other control plane"),
            "409": error("concurrent writers kept changing some of the resources"),
            "413": error(f"the body is larger than {MAX_APPLY_BYTES} bytes or has more than {MAX_APPLY_ITEMS} items"),
            "415": error("the body has a Content-Encoding; only unencoded (identity) bodies are accepted"),
            "503": error("the store is unavailable"),
        },
    }


def _extra_path_item(route: DocumentedRoute) -> tuple[str, str, JsonSchema]:
    params = [_path_param(p, p) for p in _PATH_PARAM.findall(route.path)] + list(route.query)
    path = _PATH_PARAM.sub(lambda m: "{" + m.group(1) + "}", route.path)
    ok: JsonSchema = {"description": "see the summary"}
    if route.response is not None:
        ok["content"] = {"application/json": {"schema": route.response}}
    op: JsonSchema = {
        "summary": route.summary,
        "responses": {
            # The success body differs per endpoint (JSON, NDJSON, a token as text); its errors do not.
            "200": ok,
            "4XX": _error("bad input (the parameter or field is named), no such resource, or not allowed"),
            "5XX": _error("the store, or a zone or proxy the answer depends on, is unavailable or did not answer"),
        },
    }
    if params:
        op["parameters"] = params
    return path, route.method.lower(), op


def build_openapi(
    kinds: Iterable[tuple[KindDescriptor, bool]],
    *,
    role: str,
    version: str,
    extra_routes: Sequence[DocumentedRoute] = (),
) -> JsonSchema:
    """`kinds` pairs each descriptor with whether this control plane lets users write it."""
    components = _error_schemas()
    paths: dict[str, JsonSchema] = {
        "/": {
            "get": {
                "summary": "Index",
                "responses": {"200": {"description": "index", "content": _json("Index")}},
            }
        },
        "/_resources": {
            "get": {
                "summary": "The resource kinds this control plane serves",
                "responses": {"200": {"description": "kinds", "content": _json("ResourceTypeDescriptionList")}},
            }
        },
        "/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
    }
    served: list[str] = []
    for kind, writable in kinds:
        components[kind.name] = _resource_schema(kind, components)
        components[kind.name + "List"] = _list_schema(kind)
        paths |= _kind_paths(kind, writable, role)
        served.append(kind.name)
    components |= _apply_schemas(served)
    paths[APPLY_PATH] = {"post": _apply_operation()}
    for route in extra_routes:
        path, method, op = _extra_path_item(route)
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": f"meshgate {role} control plane API",
            "version": version,
            "description": "Kuma 2.7 compatible resource API",
        },
        "paths": paths,
        "components": {"schemas": components},
    }


# Open to anonymous callers (meshgate.rest.access, Rule.PUBLIC); every other operation needs a user token.
_PUBLIC = {("/", "get"), ("/openapi.json", "get")}
_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def secure_openapi(doc: JsonSchema) -> JsonSchema:
    """`doc` with the bearer scheme (Kuma user tokens) required by default and 401/403 on every guarded operation."""
    doc["components"]["securitySchemes"] = {
        "BearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A user token: the admin token file in the data dir, or `meshgatectl generate user-token`",
        }
    }
    doc["security"] = [{"BearerAuth": []}]
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in _METHODS:
                continue  # path-level "parameters"
            if (path, method) in _PUBLIC:
                op["security"] = []
                continue
            op["responses"].setdefault("401", _error("no token, or a token that is malformed, expired or revoked"))
            op["responses"].setdefault("403", _error("the user's groups do not allow this (or a private key)"))
    return doc
