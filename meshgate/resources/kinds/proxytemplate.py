"""ProxyTemplate: raw Envoy resources and modifications of the generated ones, for the proxies it selects.

Rules are Kuma 2.7's `proxytemplate_validator.go`: selectors (optional) name a service; imports are known
profiles; raw resources have a name, a version and an Envoy resource; each modification has an operation its
kind allows, a `match.name` where the operation needs one, and a `value` that reads as the Envoy message it
adds or patches (see `_envoy_json` for how far that check goes).
"""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3.cluster_pb2 import Cluster
from envoy.config.listener.v3.listener_components_pb2 import Filter
from envoy.config.listener.v3.listener_pb2 import Listener
from envoy.config.route.v3.route_components_pb2 import VirtualHost
from envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2 import HttpFilter
from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.proxy_template_pb2 import ProxyTemplate
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.kinds._envoy_json import parse_envoy, parse_envoy_any
from meshgate.resources.kinds._policy import check_selectors, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "PROFILES", "validate"]

# The profiles Kuma's control plane registers (pkg/xds/generator/proxy_template.go's init).
PROFILES = ("default-proxy", "egress-proxy", "gateway-proxy", "ingress-proxy")

ADD, ADD_FIRST, ADD_LAST, ADD_BEFORE, ADD_AFTER, REMOVE, PATCH = (
    "add",
    "addFirst",
    "addLast",
    "addBefore",
    "addAfter",
    "remove",
    "patch",
)
_RESOURCE_OPERATIONS = (ADD, PATCH, REMOVE)
_FILTER_OPERATIONS = (ADD_FIRST, ADD_LAST, ADD_BEFORE, ADD_AFTER, PATCH, REMOVE)
# Each modification kind: the Envoy message its value is, and whether it is a filter (placed among others).
_KINDS: dict[str, tuple[type[Message], bool]] = {
    "cluster": (Cluster, False),
    "listener": (Listener, False),
    "networkFilter": (Filter, True),
    "httpFilter": (HttpFilter, True),
    "virtualHost": (VirtualHost, False),
}


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, ProxyTemplate, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_selectors(out, Path("selectors"), spec.selectors, require_selector=False, require_service=True)
    conf = Path("conf")
    for i, name in enumerate(spec.conf.imports):
        path = conf.field("imports").index(i)
        if not name:
            out.add(path, "cannot be empty")
        elif name not in PROFILES:
            out.add(path, f"profile not found. Available profiles: {','.join(PROFILES)}")
    for i, raw in enumerate(spec.conf.resources):
        path = conf.field("resources").index(i)
        if not raw.name:
            out.add(path.field("name"), "cannot be empty")
        if not raw.version:
            out.add(path.field("version"), "cannot be empty")
        if not raw.resource:
            out.add(path.field("resource"), "cannot be empty")
        elif (problem := parse_envoy_any(raw.resource)) is not None:
            out.add(path.field("resource"), f"native Envoy resource is not valid: {problem}")
    for i, modification in enumerate(spec.conf.modifications):
        which = modification.WhichOneof("type")
        if which is not None:
            _check_modification(out, conf.field("modifications").index(i).field(which), which, modification)


def _check_modification(out: Violations, path: Path, which: str, modification: Any) -> None:
    envoy_type, is_filter = _KINDS[which]
    mod = getattr(modification, which)
    operation = mod.operation

    def check_value() -> None:
        problem = parse_envoy(mod.value, envoy_type)
        if problem is not None:
            out.add(path.field("value"), f"native Envoy resource is not valid: {problem}")

    if operation == PATCH:
        if is_filter and not mod.match.name:
            out.add(path.field("match").field("name"), "cannot be empty")
        check_value()
    elif operation == REMOVE:
        pass
    elif is_filter and operation in (ADD_FIRST, ADD_LAST, ADD_BEFORE, ADD_AFTER):
        if operation in (ADD_BEFORE, ADD_AFTER) and not mod.match.name:
            where = "before" if operation == ADD_BEFORE else "after"
            out.add(
                path.field("match").field("name"),
                f"cannot be empty. You need to pick a filter {where} which this one will be added",
            )
        check_value()
    elif not is_filter and operation == ADD:
        if which == "virtualHost":
            if mod.match.name:
                out.add(path.field("match").field("name"), "cannot be defined")
        elif mod.HasField("match"):
            out.add(path.field("match"), "cannot be defined")
        check_value()
    else:
        allowed = _FILTER_OPERATIONS if is_filter else _RESOURCE_OPERATIONS
        out.add(
            path.field("operation"),
            "invalid operation. Available operations: " + ", ".join(go_quote(op) for op in allowed),
        )


DESCRIPTOR = policy_descriptor(
    name=kinds.PROXY_TEMPLATE,
    singular="proxytemplate",
    plural="proxytemplates",
    spec_type=ProxyTemplate,
    validate=validate,
)
