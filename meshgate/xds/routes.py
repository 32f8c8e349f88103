"""The route table of one virtual host: MeshGatewayRoute rules to ordered entries (`virtual_hosts` makes the
Envoy routes of them).

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
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from envoy.type.v3 import percent_pb2

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
    "tcp_destinations",
    "weighted",
]

_Http = MeshGatewayRoute.HttpRoute
_PathType = _Http.Match.Path
# Enum values looked up once: reading one from its message class runs Python code, once per match otherwise.
_EXACT = _PathType.EXACT
_PREFIX = _PathType.PREFIX
_NO_METHOD = HttpMethod.NONE

NO_ROUTE_BODY = "This is a Kuma MeshGateway. No routes match this MeshGateway!\n"
UNRESOLVED_BACKEND = "kuma.io/unresolved-backend"

Tags = tuple[tuple[str, str], ...]


# Destination, Match and Entry are NamedTuples, not frozen dataclasses: generation makes several of each for
# every route of every virtual host, and a frozen dataclass costs three times as much to construct.


class Destination(NamedTuple):
    tags: Tags  # sorted (key, value) pairs
    weight: int = 0

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)


def destination(tags: Mapping[str, str], weight: int = 0) -> Destination:
    # Keys, then values by key: `tags` is often a protobuf map, whose items() is a slow Python mixin.
    return Destination(tuple([(key, tags[key]) for key in sorted(tags)]), weight)


# Maps a destination to the name of its cluster, or to UNRESOLVED_BACKEND.
Resolver = Callable[[Destination], str]


class Match(NamedTuple):
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


class Entry(NamedTuple):
    route: str  # MeshGatewayRoute name
    match: Match
    forward: tuple[Destination, ...] = ()
    redirect: Redirect | None = None
    mirror: Mirror | None = None
    request_headers: HeaderOps | None = None
    response_headers: HeaderOps | None = None
    rewrite: Rewrite | None = None
    # (rule index, match index, twin): a stable tie-break after Kuma's specificity order
    position: tuple[int, int, int] = (0, 0, 0)

    def at(self, match: Match, position: tuple[int, int, int]) -> Entry:
        """This entry with another match and position (a hot path: `_replace` is 3x slower)."""
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


_ANY_MATCH = Match()  # a rule's entry before `entries` gives it each of the rule's matches


def _rule_entry(route: str, rule: Any, rule_index: int) -> Entry:
    entry = Entry(
        route=route,
        match=_ANY_MATCH,
        forward=tuple([destination(b.destination, b.weight) for b in rule.backends]),
        position=(rule_index, 0, 0),
    )
    for f in rule.filters:
        kind = f.WhichOneof("filter")
        if kind == "redirect":
            r = f.redirect
            path = _rewrite(r.path) if r.HasField("path") else None
            entry = entry._replace(redirect=Redirect(r.status_code, r.scheme, r.hostname, r.port, path))
        elif kind == "mirror":
            # Kuma reads an unset percentage as 0, which mirrors nothing.
            pct = f.mirror.percentage.value if f.mirror.HasField("percentage") else 0.0
            entry = entry._replace(mirror=Mirror(destination(f.mirror.backend.destination), pct))
        elif kind == "request_header":
            ops = _header_ops(f.request_header)
            entry = entry._replace(request_headers=entry.request_headers.merged(ops) if entry.request_headers else ops)
        elif kind == "response_header":
            ops = _header_ops(f.response_header)
            entry = entry._replace(
                response_headers=entry.response_headers.merged(ops) if entry.response_headers else ops
            )
        elif kind == "rewrite":
            entry = entry._replace(rewrite=_rewrite(f.rewrite))
    return entry


def _match(spec: Any) -> Match:
    exact = prefix = regex = ""
    if spec.HasField("path"):
        path = spec.path
        kind, value = path.match, path.value
        if kind == _EXACT:
            exact = value
        elif kind == _PREFIX:
            prefix = value
        else:
            regex = value
    else:
        # Envoy routes need a path match; "any path" lets the other conditions decide.
        prefix = "/"
    method = spec.method
    return Match(
        exact=exact,
        prefix=prefix,
        regex=regex,
        method=HttpMethod.Name(method) if method != _NO_METHOD else "",
        headers=tuple([(h.match, h.name, h.value) for h in spec.headers]),
        query=tuple([(q.match, q.name, q.value) for q in spec.query_parameters]),
    )


def _segment_prefix(rule_entry: Entry, m: Match, position: tuple[int, int, int], exact_paths: set[str]) -> list[Entry]:
    """The PREFIX match `m` of a rule as a `/`-terminated prefix and, unless shadowed, its exact twin.

    Takes the rule's entry and the match apart, so that the common case (no rewrite, no redirect) builds only
    the entries it returns: this runs for nearly every match of every route."""
    base = m.prefix.rstrip("/")
    rule, index, _ = position
    if rule_entry.rewrite is None and rule_entry.redirect is None:
        prefix = rule_entry.at(Match("", base + "/", m.regex, m.method, m.headers, m.query), position)
        if base in exact_paths or base == "":  # prefix "/" already matches "/"
            return [prefix]
        return [prefix, rule_entry.at(Match(base, "", m.regex, m.method, m.headers, m.query), (rule, index, 1))]
    entry = rule_entry.at(m, position)
    rewrite = entry.rewrite
    rewrite_base = rewrite.prefix.rstrip("/") if rewrite and rewrite.prefix is not None else None
    redirect = entry.redirect
    redirect_base = (
        redirect.path.prefix.rstrip("/") if redirect and redirect.path and redirect.path.prefix is not None else None
    )
    prefix_entry = entry._replace(
        match=entry.match._replace(prefix=base + "/"),
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
    twin = entry._replace(match=entry.match._replace(prefix="", exact=base or "/"))
    if rewrite_base is not None:
        assert rewrite is not None
        twin = twin._replace(rewrite=Rewrite(full=rewrite_base or "/", host_to_backend=rewrite.host_to_backend))
    if redirect_base is not None:
        assert redirect is not None
        twin = twin._replace(redirect=replace(redirect, path=Rewrite(full=redirect_base or "/")))
    return [*out, twin._replace(position=(rule, index, 1))]


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
    # (the rule's entry, one of its matches, position): entries are made only once prefixes are split.
    raw: list[tuple[Entry, Match, tuple[int, int, int]]] = []
    for route in routes:
        spec: Any = route.spec
        if not spec.conf.HasField("http"):
            continue
        for rule_index, rule in enumerate(spec.conf.http.rules):
            base = _rule_entry(route.meta.name, rule, rule_index)
            # A rule without matches (invalid) yields no entry, as in Kuma.
            for match_index, match in enumerate(rule.matches):
                raw.append((base, _match(match), (rule_index, match_index, 0)))
    exact_paths = {m.exact for _, m, _ in raw if m.exact}
    table: list[Entry] = []
    for base, m, position in raw:
        if m.prefix:
            table.extend(_segment_prefix(base, m, position, exact_paths))
        else:
            table.append(base.at(m, position))
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
