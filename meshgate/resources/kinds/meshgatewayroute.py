"""MeshGatewayRoute: HTTP or TCP routing for the gateway listeners its selectors match.

Rules are Kuma 2.7's `gateway_route_validator.go`, and every violation names the field Kuma's validator names,
even where that is not the field's JSON name: the snake_case proto names (`query_parameters`, `request_header`,
`status_code`), a match's path value as `matches[0].value`, a backend's tags at `backends[0]` (not its
`destination`), and filters numbered without the `rewrite.host_to_backend_hostname` ones, which Kuma leaves out.
Like Kuma, a rule without matches, or with a redirect beside other filters, is not checked further.

Added, from meshgate's gateway reference and Kuma's proto constraints, each at the field Kuma would name there:
match paths have no `..` segment; header names are HTTP tokens; a redirect status is one Envoy can send (301, 302,
303, 307, 308: Kuma accepts the rest of 300-308 and then fails to build the route); a redirect's path rewrite is
checked like a rewrite filter's; a mirror backend has no weight; response header filters are checked like request
ones; an empty filter is rejected; route hostnames are gateway hostnames; TCP routes need rules and backends.

Created on the global only and sent to every zone.
"""

from __future__ import annotations

import re
from typing import Any

from meshgate.api.mesh.v1alpha1.gateway_route_pb2 import MeshGatewayRoute
from meshgate.api.mesh.v1alpha1.http_method_pb2 import HttpMethod
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import check_hostname, check_port
from meshgate.resources.tags import check_selector, check_selectors

__all__ = ["DESCRIPTOR", "validate"]

_Http = MeshGatewayRoute.HttpRoute
_PathMatch = _Http.Match.Path
_HeaderMatch = _Http.Match.Header

# RFC 9110 token characters; a leading ':' admits HTTP/2 pseudo-headers such as :authority.
_HEADER_NAME = re.compile(r":?[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Envoy's RedirectAction.RedirectResponseCode has exactly these.
_REDIRECT_CODES = (301, 302, 303, 307, 308)
# Headers that `hostToBackendHostname` rewrites; a header filter must not fight it.
_HOST_HEADERS = frozenset({":authority", "Host", "host"})


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, MeshGatewayRoute, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_selectors(out, Path("selectors"), spec.selectors)
    conf = Path("conf")
    route = spec.conf.WhichOneof("route")
    if route is None:
        out.add(conf, "cannot be empty")
    elif route == "tcp":
        _check_tcp(out, conf.field("tcp"), spec.conf.tcp)
    else:
        _check_http(out, conf.field("http"), spec.conf.http)


def _check_tcp(out: Violations, path: Path, tcp: Any) -> None:
    rules = path.field("rules")
    if not tcp.rules:
        out.add(rules, "cannot be empty")
    for i, rule in enumerate(tcp.rules):
        backends = rules.index(i).field("backends")
        if not rule.backends:
            out.add(backends, "cannot be empty")
        for j, backend in enumerate(rule.backends):
            _check_backend(out, backends.index(j), backend)


def _check_http(out: Violations, path: Path, http: Any) -> None:
    for i, hostname in enumerate(http.hostnames):
        check_hostname(out, path.field("hostnames").index(i), hostname)
    rules = path.field("rules")
    if not http.rules:
        out.add(rules, "cannot be empty")
    for i, rule in enumerate(http.rules):
        _check_rule(out, rules.index(i), rule)


def _is_host_rewrite(item: Any) -> bool:
    return item.HasField("rewrite") and bool(item.rewrite.host_to_backend_hostname)


def _check_rule(out: Violations, path: Path, rule: Any) -> None:
    matches = path.field("matches")
    if not rule.matches:
        out.add(matches, "cannot be empty")
        return
    for i, match in enumerate(rule.matches):
        _check_match(out, matches.index(i), match)

    has_prefix_match = any(m.HasField("path") and m.path.match == _PathMatch.PREFIX for m in rule.matches)
    # Kuma takes host rewrites out before checking filters, so `filters[i]` counts only the others.
    rewrites_host = any(_is_host_rewrite(f) for f in rule.filters)
    checked = [f for f in rule.filters if not _is_host_rewrite(f)]
    has_redirect = any(f.HasField("redirect") for f in checked)
    filters = path.field("filters")
    for i, item in enumerate(checked):
        _check_filter(out, filters.index(i), item, has_prefix_match=has_prefix_match, rewrites_host=rewrites_host)

    if has_redirect and len(rule.filters) != 1:
        # A redirect answers at once: mirroring or rewriting alongside it would mean nothing. Whether the rule
        # needs backends is then unclear, so, as Kuma, nothing more is said about them.
        out.add(filters, "redirects cannot be used with other filters")
        return
    backends = path.field("backends")
    if has_redirect and rule.backends:
        out.add(backends, "must be empty when using redirect filters")
    elif not has_redirect and not rule.backends:
        out.add(backends, "cannot be empty")
    for i, backend in enumerate(rule.backends):
        _check_backend(out, backends.index(i), backend)


def _check_match(out: Violations, path: Path, match: Any) -> None:
    if (
        not match.HasField("path")
        and match.method == HttpMethod.NONE
        and not match.headers
        and not match.query_parameters
    ):
        out.add(path, "cannot be empty")

    if match.HasField("path"):
        value_path = path.field("value")  # Kuma's name: the match's, not `path.value`
        value = match.path.value
        if match.path.match == _PathMatch.REGEX:
            if value == "":
                out.add(value_path, "cannot be empty")
        elif not value.startswith("/"):
            out.add(value_path, "must be an absolute path")
        elif ".." in value.split("/"):
            out.add(value_path, 'must not contain ".." segments')

    for i, header in enumerate(match.headers):
        header_path = path.field("headers").index(i)
        _check_header_name(out, header_path.field("name"), header.name)
        if header.match in (_HeaderMatch.ABSENT, _HeaderMatch.PRESENT):
            if header.value:
                out.add(header_path.field("value"), "cannot be set")
        elif header.value == "":
            out.add(header_path.field("value"), "cannot be empty")

    for i, query in enumerate(match.query_parameters):
        query_path = path.field("query_parameters").index(i)
        if query.name == "":
            out.add(query_path.field("name"), "cannot be empty")
        if query.value == "":
            out.add(query_path.field("value"), "cannot be empty")


def _check_header_name(out: Violations, path: Path, name: str) -> None:
    if name == "":
        out.add(path, "cannot be empty")
    elif not _HEADER_NAME.fullmatch(name):
        out.add(path, "must be a valid HTTP header name")


def _check_filter(out: Violations, path: Path, item: Any, *, has_prefix_match: bool, rewrites_host: bool) -> None:
    which = item.WhichOneof("filter")
    if which is None:
        out.add(path, "cannot be empty")
    elif which == "request_header":
        _check_header_filter(out, path.field("request_header"), item.request_header, rewrites_host=rewrites_host)
    elif which == "response_header":
        _check_header_filter(out, path.field("response_header"), item.response_header, rewrites_host=False)
    elif which == "redirect":
        _check_redirect(out, path.field("redirect"), item.redirect, has_prefix_match=has_prefix_match)
    elif which == "mirror":
        _check_mirror(out, path.field("mirror"), item.mirror)
    else:
        _check_rewrite(out, path.field("rewrite"), item.rewrite, has_prefix_match=has_prefix_match)


def _check_header_filter(out: Violations, path: Path, headers: Any, *, rewrites_host: bool) -> None:
    if not headers.set and not headers.add and not headers.remove:
        out.add(path, "cannot be empty")
    for field in ("set", "add"):
        for i, header in enumerate(getattr(headers, field)):
            header_path = path.field(field).index(i)
            if rewrites_host and header.name in _HOST_HEADERS:
                out.add(
                    header_path,
                    f"cannot modify '{header.name}' header, when route has set "
                    "'rewrite.host_to_backend_hostname' option",
                )
            _check_header_name(out, header_path.field("name"), header.name)
            if header.value == "":
                out.add(header_path.field("value"), "cannot be empty")
    for i, name in enumerate(headers.remove):
        if name == "":
            out.add(path.field("remove").index(i), "cannot be empty")


def _check_redirect(out: Violations, path: Path, redirect: Any, *, has_prefix_match: bool) -> None:
    # Port 0 keeps the listener's port.
    if redirect.port > 0:
        check_port(out, path.field("port"), redirect.port)
    status_code = path.field("status_code")
    if not 300 <= redirect.status_code <= 308:
        out.add(status_code, "must be in the range [300, 308]")
    elif redirect.status_code not in _REDIRECT_CODES:
        out.add(status_code, "must be one of 301, 302, 303, 307, 308")
    if redirect.HasField("path"):
        _check_rewrite(out, path.field("path"), redirect.path, has_prefix_match=has_prefix_match)


def _check_mirror(out: Violations, path: Path, mirror: Any) -> None:
    percentage = path.field("percentage")
    if not mirror.HasField("percentage"):
        out.add(percentage, "cannot be empty")
    elif not 0.0 <= mirror.percentage.value <= 100.0:
        out.add(percentage, "has to be in [0.0 - 100.0] range")
    backend = path.field("backend")
    if not mirror.HasField("backend"):
        out.add(backend, "cannot be empty")
        return
    if mirror.backend.weight:
        # Mirrored requests are copies, not a share of the traffic.
        out.add(backend.field("weight"), "must not be set")
    _check_backend(out, backend, mirror.backend)


def _check_rewrite(out: Violations, path: Path, rewrite: Any, *, has_prefix_match: bool) -> None:
    if rewrite.WhichOneof("path") == "replace_prefix_match" and not has_prefix_match:
        out.add(path.field("replacePrefixMatch"), "cannot be used without a match on path prefix")


def _check_backend(out: Violations, path: Path, backend: Any) -> None:
    # Kuma checks the destination's tags at the backend's own path: `backends[0]["kuma.io/service"]`.
    check_selector(out, path, backend.destination, require_tag=True, require_service=True)


DESCRIPTOR = KindDescriptor(
    name=kinds.MESH_GATEWAY_ROUTE,
    singular="meshgatewayroute",
    plural="meshgatewayroutes",
    spec_type=MeshGatewayRoute,
    scope=Scope.MESH,
    sync=SyncDirection.GLOBAL_TO_ZONE,
    validate=validate,
    writable_on_global=True,
    writable_on_zone=False,
)
