"""Envoy virtual hosts and route configurations from the route tables of `routes.entries`.

The actions follow `routes` (Kuma 2.7, `route/configurers.go`): forwarding is a `weighted_clusters` action with
`cluster_not_found_response_code: 500` and Kuma's 5 s stream idle timeout; a redirect replaces forwarding; a
virtual host without routes answers 404 with Kuma's body, and an HTTPS one requires TLS and sends HSTS.

**Cost.** A gateway proxy has a virtual host per route hostname, so this is the hot path of generation. With
upb every message built apart is copied again when it is appended or passed to a constructor, so routes are
filled in place (`routes.add()`), and the action of a match's twins (`/api/` and `/api`, which share their
backends) is built once per virtual host and copied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import wrappers_pb2

from meshgate.api.mesh.v1alpha1.gateway_route_pb2 import MeshGatewayRoute
from meshgate.xds.routes import (
    NO_ROUTE_BODY,
    UNRESOLVED_BACKEND,
    Entry,
    Match,
    Redirect,
    Resolver,
    fractional_percent,
    weighted,
)

__all__ = ["ROUTE_IDLE_TIMEOUT_SECONDS", "RouteShaper", "add_virtual_host", "route_configuration"]

_HeaderType = MeshGatewayRoute.HttpRoute.Match.Header
_QueryType = MeshGatewayRoute.HttpRoute.Match.Query

# Kuma's gateway defaults (policies/core/defaults): a stream idle for 5 s is dropped.
ROUTE_IDLE_TIMEOUT_SECONDS = 5
_HSTS = "max-age=31536000; includeSubDomains"
_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}

# Looked up once: a nested enum value read from its message class goes through Python code each time.
_CLUSTER_NOT_FOUND = rc.RouteAction.INTERNAL_SERVER_ERROR

# What a forwarding action depends on (forward, mirror, rewrite), by identity; equal ones share one action.
_ActionKey = tuple[int, int, int]
# Applies the policies that shape a route (meshgate.xds.policies), given its entry, once the route is built.
RouteShaper = Callable[[Entry, rc.Route], None]


def _string_matcher(match_type: int, value: str, *, regex_type: int) -> string_pb2.StringMatcher:
    if match_type == regex_type:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    return string_pb2.StringMatcher(exact=value)


def _header_value(name: str, value: str, *, overwrite: bool) -> base_pb2.HeaderValueOption:
    action = (
        base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
        if overwrite
        else base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    )
    return base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=name, value=value), append_action=action)


def _full_path_rewrite(path: str) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(pattern=regex_pb2.RegexMatcher(regex=".*"), substitution=path)


def _fill_match(out: rc.RouteMatch, m: Match) -> None:
    """`out` (empty) matches `m`. Every branch sets a path specifier, so `out` is always present."""
    if m.exact:
        out.path = m.exact
    elif m.prefix:
        out.prefix = m.prefix
    else:
        out.safe_regex.regex = m.regex
    if m.method:
        out.headers.append(rc.HeaderMatcher(name=":method", string_match=string_pb2.StringMatcher(exact=m.method)))
    for match_type, name, value in m.headers:
        if match_type == _HeaderType.PRESENT:
            out.headers.append(rc.HeaderMatcher(name=name, present_match=True))
        elif match_type == _HeaderType.ABSENT:
            out.headers.append(rc.HeaderMatcher(name=name, present_match=False))
        else:
            matcher = _string_matcher(match_type, value, regex_type=_HeaderType.REGEX)
            out.headers.append(rc.HeaderMatcher(name=name, string_match=matcher))
    for match_type, name, value in m.query:
        matcher = _string_matcher(match_type, value, regex_type=_QueryType.REGEX)
        out.query_parameters.append(rc.QueryParameterMatcher(name=name, string_match=matcher))


def _redirect(redirect: Redirect, listener_port: int) -> rc.RedirectAction:
    out = rc.RedirectAction(
        strip_query=True,
        port_redirect=redirect.port or listener_port,
        response_code=_REDIRECT_CODES.get(redirect.status, rc.RedirectAction.FOUND),
    )
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.host:
        out.host_redirect = redirect.host
    if redirect.path is not None:
        if redirect.path.prefix is not None:
            out.prefix_rewrite = redirect.path.prefix
        elif redirect.path.full is not None:
            out.regex_rewrite.CopyFrom(_full_path_rewrite(redirect.path.full))
    return out


def _action(entry: Entry, resolve: Resolver) -> rc.RouteAction | None:
    """The forwarding action of `entry` (its redirect aside), or None when no backend carries weight."""
    clusters = weighted(entry.forward, resolve)
    if not clusters:
        return None
    out = rc.RouteAction(cluster_not_found_response_code=_CLUSTER_NOT_FOUND)
    out.idle_timeout.seconds = ROUTE_IDLE_TIMEOUT_SECONDS
    targets = out.weighted_clusters.clusters
    for name, weight in clusters:
        targets.add(name=name).weight.value = weight
    if entry.mirror is not None and entry.mirror.percentage > 0:
        mirror_cluster = resolve(entry.mirror.destination)
        # Mirroring to nothing would only log errors in Envoy; an unknown mirror is skipped.
        if mirror_cluster != UNRESOLVED_BACKEND:
            policy = out.request_mirror_policies.add(cluster=mirror_cluster)
            policy.runtime_fraction.default_value.CopyFrom(fractional_percent(entry.mirror.percentage))
    if entry.rewrite is not None:
        if entry.rewrite.full is not None:
            out.regex_rewrite.CopyFrom(_full_path_rewrite(entry.rewrite.full))
        if entry.rewrite.prefix is not None:
            out.prefix_rewrite = entry.rewrite.prefix
        if entry.rewrite.host_to_backend:
            out.auto_host_rewrite.value = True
    return out


def _fill_route(
    out: rc.Route,
    entry: Entry,
    *,
    listener_port: int,
    resolve: Resolver,
    actions: dict[_ActionKey, rc.RouteAction | None],
) -> None:
    """`out` (empty) as the route of `entry`; `actions` holds the virtual host's actions built so far."""
    out.name = entry.route
    _fill_match(out.match, entry.match)
    if entry.redirect is not None:
        # Its backends are still resolved, so the proxy keeps their clusters (as for any other route).
        weighted(entry.forward, resolve)
        out.redirect.CopyFrom(_redirect(entry.redirect, listener_port))
    else:
        # By identity: `table` keeps these alive while `actions` lives, and the twins of a match share the very
        # objects (`Entry.at`), which are cheaper to tell apart by id than by hashing their contents.
        key = (id(entry.forward), id(entry.mirror), id(entry.rewrite))
        if key not in actions:
            actions[key] = _action(entry, resolve)
        action = actions[key]
        if action is None:
            out.direct_response.status = 500
            out.direct_response.body.inline_string = "This route has no backends.\n"
        else:
            out.route.CopyFrom(action)
    if entry.request_headers is not None:
        for name, value in entry.request_headers.set:
            if name.lower() in ("host", ":authority") and out.HasField("route"):
                out.route.host_rewrite_literal = value
            else:
                out.request_headers_to_add.append(_header_value(name, value, overwrite=True))
        for name, value in entry.request_headers.add:
            out.request_headers_to_add.append(_header_value(name, value, overwrite=False))
        out.request_headers_to_remove.extend(entry.request_headers.remove)
    if entry.response_headers is not None:
        for name, value in entry.response_headers.set:
            out.response_headers_to_add.append(_header_value(name, value, overwrite=True))
        for name, value in entry.response_headers.add:
            out.response_headers_to_add.append(_header_value(name, value, overwrite=False))
        out.response_headers_to_remove.extend(entry.response_headers.remove)


def add_virtual_host(
    config: route_pb2.RouteConfiguration,
    hostname: str,
    table: Sequence[Entry],
    *,
    listener_port: int,
    tls: bool,
    resolve: Resolver,
    shape: RouteShaper | None = None,
) -> rc.VirtualHost:
    """Adds one virtual host to `config` and returns it; `table` comes from `routes.entries` (already ordered).
    `shape`: called with each forwarding route once built, to apply the policies that match it.

    Built inside `config` rather than apart: a gateway's route configuration holds a virtual host per route
    hostname, and each would be copied again on the way in."""
    out = config.virtual_hosts.add(name=hostname, domains=[hostname])
    if tls:
        # Kuma: HTTPS listeners insist on TLS and announce it with HSTS for a year.
        out.require_tls = rc.VirtualHost.ALL
        out.response_headers_to_add.append(_header_value("Strict-Transport-Security", _HSTS, overwrite=True))
    if not table:
        route = out.routes.add(match=rc.RouteMatch(prefix="/"))
        route.direct_response.status = 404
        route.direct_response.body.inline_string = NO_ROUTE_BODY
        return out
    actions: dict[_ActionKey, rc.RouteAction | None] = {}
    for entry in table:
        route = out.routes.add()
        _fill_route(route, entry, listener_port=listener_port, resolve=resolve, actions=actions)
        if shape is not None and route.HasField("route"):
            shape(entry, route)
    return out


def route_configuration(name: str) -> route_pb2.RouteConfiguration:
    """A route configuration without virtual hosts yet (see `add_virtual_host`)."""
    return route_pb2.RouteConfiguration(
        name=name,
        # Clients send "host:port"; virtual hosts name hosts only.
        ignore_port_in_host_matching=True,
        # A route may name a cluster that is not there (an unresolved backend): answer 500, never NACK.
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
