"""The route table of one virtual host: MeshGatewayRoute rules to ordered Envoy routes.

Kuma 2.7 (`gateway/gateway_route_generator.go`, `route/sorter.go`, `route/configurers.go`,
`route_table_generator.go`):

- A rule's matches are ORed, so each match becomes its own entry. A match without a path is PREFIX `/`.
- **Whole-segment prefixes.** Envoy prefixes are byte-wise, so PREFIX `/api` (or `/api/`) becomes a prefix
  `/api/` plus an exact `/api`. The exact twin is left out when any route of the virtual host has an explicit
  EXACT `/api`: the explicit one wins. PREFIX `/` gets no exact twin unless it rewrites or redirects the path.
  A `replacePrefixMatch` follows the same split: `/v2/` on the prefix, the full path `/v2` on the twin.
- **Order.** Exact paths (longest first), then prefixes (longest first), then regexes (longest first); then a
  method before none, more header matches first, more query matches first; then the path text, and finally
  route name and rule position, so the table never depends on input order.
- **Actions.** Forwarding is always a `weighted_clusters` action (weight 1 for a lone backend), with
  `cluster_not_found_response_code: 500`. A backend the mesh does not know resolves to
  `UNRESOLVED_BACKEND`, a cluster name that is never generated, so Envoy answers 500 for its share of the
  traffic (Kuma's `kuma.io/unresolved-backend`). A redirect replaces forwarding: the port defaults to the
  listener's, the query is stripped. A virtual host without routes answers 404 with Kuma's body.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from meshgate.api.mesh.v1alpha1.gateway_route_pb2 import MeshGatewayRoute
from meshgate.api.mesh.v1alpha1.http_method_pb2 import HttpMethod
from meshgate.resources.model import Resource

__all__ = [
    "NO_ROUTE_BODY",
    "UNRESOLVED_BACKEND",
    "Destination",
    "Entry",
    "HeaderOps",
    "Match",
    "Mirror",
    "Redirect",
    "Resolver",
    "Rewrite",
    "destination",
    "entries",
    "fractional_percent",
    "route_configuration",
    "tcp_destinations",
    "virtual_host",
    "weighted",
]

_Http = MeshGatewayRoute.HttpRoute
_PathType = _Http.Match.Path
_HeaderType = _Http.Match.Header
_QueryType = _Http.Match.Query

NO_ROUTE_BODY = "This is a Kuma MeshGateway. No routes match this MeshGateway!\n"
UNRESOLVED_BACKEND = "kuma.io/unresolved-backend"
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

Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Destination:
    tags: Tags  # sorted (key, value) pairs
    weight: int = 0

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)


def destination(tags: Mapping[str, str], weight: int = 0) -> Destination:
    return Destination(tuple(sorted(tags.items())), weight)


# Maps a destination to the name of its cluster, or to UNRESOLVED_BACKEND.
Resolver = Callable[[Destination], str]


@dataclass(frozen=True, slots=True)
class Match:
    exact: str = ""
    prefix: str = ""
    regex: str = ""
    method: str = ""
    # (match type, name, value) in the route's order
    headers: tuple[tuple[int, str, str], ...] = ()
    query: tuple[tuple[int, str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Rewrite:
    full: str | None = None
    prefix: str | None = None
    host_to_backend: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    status: int
    scheme: str = ""
    host: str = ""
    port: int = 0
    path: Rewrite | None = None


@dataclass(frozen=True, slots=True)
class Mirror:
    destination: Destination
    percentage: float


@dataclass(frozen=True, slots=True)
class HeaderOps:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def merged(self, other: HeaderOps) -> HeaderOps:
        return HeaderOps(self.set + other.set, self.add + other.add, self.remove + other.remove)


@dataclass(frozen=True, slots=True)
class Entry:
    route: str  # MeshGatewayRoute name
    match: Match
    forward: tuple[Destination, ...] = ()
    redirect: Redirect | None = None
    mirror: Mirror | None = None
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None
    rewrite: Rewrite | None = None
    # (rule index, match index, twin): a stable tie-break after Kuma's specificity order
    position: tuple[int, int, int] = field(default=(0, 0, 0))

    def at(self, match: Match, position: tuple[int, int, int]) -> Entry:
        """This entry with another match and position (a hot path: `dataclasses.replace` is 5x slower)."""
        return Entry(
            self.route,
            match,
            self.forward,
            self.redirect,
            self.mirror,
            self.request_headers,
            self.response_headers,
            self.rewrite,
            position,
        )


def _rewrite(spec: Any) -> Rewrite:
    which = spec.WhichOneof("path")
    return Rewrite(
        full=spec.replace_full if which == "replace_full" else None,
        prefix=spec.replace_prefix_match if which == "replace_prefix_match" else None,
        host_to_backend=spec.host_to_backend_hostname,
    )


def _header_ops(spec: Any) -> HeaderOps:
    return HeaderOps(
        tuple((h.name, h.value) for h in spec.set),
        tuple((h.name, h.value) for h in spec.add),
        tuple(spec.remove),
    )


def _rule_entry(route: str, rule: Any, rule_index: int) -> Entry:
    entry = Entry(
        route=route,
        match=Match(),
        forward=tuple(destination(b.destination, b.weight) for b in rule.backends),
        position=(rule_index, 0, 0),
    )
    for f in rule.filters:
        kind = f.WhichOneof("filter")
        if kind == "redirect":
            r = f.redirect
            path = _rewrite(r.path) if r.HasField("path") else None
            entry = replace(entry, redirect=Redirect(r.status_code, r.scheme, r.hostname, r.port, path))
        elif kind == "mirror":
            # Kuma reads an unset percentage as 0, which mirrors nothing.
            pct = f.mirror.percentage.value if f.mirror.HasField("percentage") else 0.0
            entry = replace(entry, mirror=Mirror(destination(f.mirror.backend.destination), pct))
        elif kind == "request_header":
            ops = _header_ops(f.request_header)
            entry = replace(entry, request_headers=entry.request_headers.merged(ops) if entry.request_headers else ops)
        elif kind == "response_header":
            ops = _header_ops(f.response_header)
            entry = replace(
                entry, response_headers=entry.response_headers.merged(ops) if entry.response_headers else ops
            )
        elif kind == "rewrite":
            entry = replace(entry, rewrite=_rewrite(f.rewrite))
    return entry


def _match(spec: Any) -> Match:
    exact = prefix = regex = ""
    if spec.HasField("path"):
        if spec.path.match == _PathType.EXACT:
            exact = spec.path.value
        elif spec.path.match == _PathType.PREFIX:
            prefix = spec.path.value
        else:
            regex = spec.path.value
    else:
        # Envoy routes need a path match; "any path" lets the other conditions decide.
        prefix = "/"
    method = HttpMethod.Name(spec.method) if spec.method != HttpMethod.NONE else ""
    return Match(
        exact=exact,
        prefix=prefix,
        regex=regex,
        method=method,
        headers=tuple((h.match, h.name, h.value) for h in spec.headers),
        query=tuple((q.match, q.name, q.value) for q in spec.query_parameters),
    )


def _segment_prefix(entry: Entry, exact_paths: set[str]) -> list[Entry]:
    """A PREFIX entry as a `/`-terminated prefix and, unless shadowed, its exact twin."""
    m = entry.match
    base = m.prefix.rstrip("/")
    rule, index, _ = entry.position
    if entry.rewrite is None and entry.redirect is None:
        prefix = entry.at(Match("", base + "/", m.regex, m.method, m.headers, m.query), entry.position)
        if base in exact_paths or base == "":  # prefix "/" already matches "/"
            return [prefix]
        return [prefix, entry.at(Match(base, "", m.regex, m.method, m.headers, m.query), (rule, index, 1))]
    rewrite = entry.rewrite
    rewrite_base = rewrite.prefix.rstrip("/") if rewrite and rewrite.prefix is not None else None
    redirect = entry.redirect
    redirect_base = (
        redirect.path.prefix.rstrip("/") if redirect and redirect.path and redirect.path.prefix is not None else None
    )
    prefix_entry = replace(
        entry,
        match=replace(entry.match, prefix=base + "/"),
        rewrite=replace(rewrite, prefix=rewrite_base + "/") if rewrite and rewrite_base is not None else rewrite,
        redirect=(
            replace(redirect, path=replace(redirect.path, prefix=redirect_base + "/"))
            if redirect and redirect.path and redirect_base is not None
            else redirect
        ),
    )
    out = [prefix_entry]
    if base in exact_paths:
        return out
    if base == "" and rewrite_base is None and redirect_base is None:
        return out  # prefix "/" already matches "/"
    twin = replace(entry, match=replace(entry.match, prefix="", exact=base or "/"))
    if rewrite_base is not None:
        assert rewrite is not None
        twin = replace(twin, rewrite=Rewrite(full=rewrite_base or "/", host_to_backend=rewrite.host_to_backend))
    if redirect_base is not None:
        assert redirect is not None
        twin = replace(twin, redirect=replace(redirect, path=Rewrite(full=redirect_base or "/")))
    return [*out, replace(twin, position=(rule, index, 1))]


def _sort_key(entry: Entry) -> tuple[Any, ...]:
    m = entry.match
    if m.exact:
        category, path = 0, m.exact
    elif m.prefix:
        category, path = 1, m.prefix
    elif m.regex:
        category, path = 2, m.regex
    else:
        category, path = 3, ""
    specificity = (category, -len(path), 0 if m.method else 1, -len(m.headers), -len(m.query))
    return (*specificity, path, entry.route, entry.position)


def entries(routes: Iterable[Resource]) -> list[Entry]:
    """The HTTP route table of one virtual host from its routes, most specific first."""
    raw: list[Entry] = []
    for route in routes:
        spec: Any = route.spec
        if not spec.conf.HasField("http"):
            continue
        for rule_index, rule in enumerate(spec.conf.http.rules):
            base = _rule_entry(route.meta.name, rule, rule_index)
            # A rule without matches (invalid) yields no entry, as in Kuma.
            for match_index, match in enumerate(rule.matches):
                raw.append(base.at(_match(match), (rule_index, match_index, 0)))
    exact_paths = {e.match.exact for e in raw if e.match.exact}
    table: list[Entry] = []
    for entry in raw:
        table.extend(_segment_prefix(entry, exact_paths) if entry.match.prefix else [entry])
    return sorted(table, key=_sort_key)


def tcp_destinations(routes: Iterable[Resource]) -> list[Destination]:
    """Every backend of the TCP routes, in route and rule order."""
    out: list[Destination] = []
    for route in routes:
        spec: Any = route.spec
        if spec.conf.HasField("tcp"):
            for rule in spec.conf.tcp.rules:
                out.extend(destination(b.destination, b.weight) for b in rule.backends)
    return out


def weighted(destinations: Sequence[Destination], resolve: Resolver) -> list[tuple[str, int]]:
    """(cluster, weight) by cluster name: equal clusters add up, and zero weights are dropped.

    A lone backend weighs 1 whatever its weight (Kuma). When every weight is zero, every backend weighs 1, so
    the split stays valid for Envoy (weights must not all be zero).
    """
    if not destinations:
        return []
    positive = any(d.weight > 0 for d in destinations)
    totals: dict[str, int] = {}
    for d in destinations:
        weight = d.weight if positive else 1
        if weight <= 0:
            continue
        name = resolve(d)
        totals[name] = totals.get(name, 0) + weight
    return sorted(totals.items())


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


def fractional_percent(percent: float) -> percent_pb2.FractionalPercent:
    """Kuma's ConvertPercentage: the coarsest denominator that holds the value exactly."""
    if percent == int(percent):
        return percent_pb2.FractionalPercent(numerator=int(percent), denominator=percent_pb2.FractionalPercent.HUNDRED)
    if percent * 100 == int(percent * 100):
        return percent_pb2.FractionalPercent(
            numerator=int(percent * 100), denominator=percent_pb2.FractionalPercent.TEN_THOUSAND
        )
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _full_path_rewrite(path: str) -> regex_pb2.RegexMatchAndSubstitute:
    return regex_pb2.RegexMatchAndSubstitute(pattern=regex_pb2.RegexMatcher(regex=".*"), substitution=path)


def _route_match(m: Match) -> rc.RouteMatch:
    out = rc.RouteMatch()
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
    return out


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


def _route(entry: Entry, *, listener_port: int, resolve: Resolver) -> rc.Route:
    out = rc.Route(name=entry.route, match=_route_match(entry.match))
    clusters = weighted(entry.forward, resolve)
    if entry.redirect is not None:
        out.redirect.CopyFrom(_redirect(entry.redirect, listener_port))
    elif not clusters:
        out.direct_response.status = 500
        out.direct_response.body.inline_string = "This route has no backends.\n"
    else:
        action = out.route
        action.cluster_not_found_response_code = rc.RouteAction.INTERNAL_SERVER_ERROR
        action.idle_timeout.CopyFrom(duration_pb2.Duration(seconds=ROUTE_IDLE_TIMEOUT_SECONDS))
        for name, weight in clusters:
            action.weighted_clusters.clusters.append(
                rc.WeightedCluster.ClusterWeight(name=name, weight=wrappers_pb2.UInt32Value(value=weight))
            )
        if entry.mirror is not None and entry.mirror.percentage > 0:
            mirror_cluster = resolve(entry.mirror.destination)
            # Mirroring to nothing would only log errors in Envoy; an unknown mirror is skipped.
            if mirror_cluster != UNRESOLVED_BACKEND:
                policy = action.request_mirror_policies.add(cluster=mirror_cluster)
                policy.runtime_fraction.default_value.CopyFrom(fractional_percent(entry.mirror.percentage))
        if entry.rewrite is not None:
            if entry.rewrite.full is not None:
                action.regex_rewrite.CopyFrom(_full_path_rewrite(entry.rewrite.full))
            if entry.rewrite.prefix is not None:
                action.prefix_rewrite = entry.rewrite.prefix
            if entry.rewrite.host_to_backend:
                action.auto_host_rewrite.value = True
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
    return out


def virtual_host(
    hostname: str, table: Sequence[Entry], *, listener_port: int, tls: bool, resolve: Resolver
) -> rc.VirtualHost:
    """One virtual host; `table` comes from `entries` (already ordered)."""
    out = rc.VirtualHost(name=hostname, domains=[hostname])
    if tls:
        # Kuma: HTTPS listeners insist on TLS and announce it with HSTS for a year.
        out.require_tls = rc.VirtualHost.ALL
        out.response_headers_to_add.append(_header_value("Strict-Transport-Security", _HSTS, overwrite=True))
    if not table:
        route = out.routes.add(match=rc.RouteMatch(prefix="/"))
        route.direct_response.status = 404
        route.direct_response.body.inline_string = NO_ROUTE_BODY
        return out
    out.routes.extend(_route(e, listener_port=listener_port, resolve=resolve) for e in table)
    return out


def route_configuration(name: str, virtual_hosts: Iterable[rc.VirtualHost]) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=list(virtual_hosts),
        # Clients send "host:port"; virtual hosts name hosts only.
        ignore_port_in_host_matching=True,
        # A route may name a cluster that is not there (an unresolved backend): answer 500, never NACK.
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
