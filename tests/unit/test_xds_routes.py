"""Route tables of a builtin gateway: Kuma's order, whole-segment prefixes, matches, filters and actions.

Each test applies routes to one HTTP listener on port 8080 and reads the generated virtual hosts back.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.xds import NO_ROUTE_BODY, ROUTE, UNRESOLVED_BACKEND, MeshContext, generate
from meshgate.xds.clusters import cluster_name
from meshgate.xds.routes import fractional_percent

WORLD = """
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge
---
type: MeshGateway
mesh: default
name: edge
selectors:
- match:
    kuma.io/service: edge
conf:
  listeners:
  - port: 8080
    protocol: HTTP
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.1
  inbound:
  - port: 8000
    tags: {kuma.io/service: backend, version: v1, kuma.io/protocol: http}
---
type: Dataplane
mesh: default
name: other-1
networking:
  address: 10.0.0.2
  inbound:
  - port: 8000
    tags: {kuma.io/service: other, kuma.io/protocol: http}
"""

APPEND = base_pb2.HeaderValueOption.HeaderAppendAction
BACKEND = cluster_name({"kuma.io/service": "backend"})
OTHER = cluster_name({"kuma.io/service": "other"})


def load(text: str) -> list[Resource]:
    return [codec.decode(doc) for doc in codec.load_documents(text)]


def route(rules: str, *, name: str = "r", hostnames: str = "") -> str:
    return f"""
type: MeshGatewayRoute
mesh: default
name: {name}
selectors:
- match:
    kuma.io/service: edge
conf:
  http:
    {hostnames}
    rules:
{rules}
"""


def rule(*matches: str, backend: str = "backend", filters: str = "") -> str:
    body = "\n".join(f"      - {m}" for m in matches)
    out = f"    - matches:\n{body}\n"
    if filters:
        out += f"      filters:\n{filters}\n"
    if backend:
        out += f"      backends:\n      - destination: {{kuma.io/service: {backend}}}\n"
    return out


def vhosts(*route_docs: str) -> dict[str, Any]:
    resources = load(WORLD + "".join(f"---\n{doc}" for doc in route_docs))
    by_kind: dict[str, list[Resource]] = {}
    for r in resources:
        by_kind.setdefault(r.kind, []).append(r)
    proxy = next(r for r in by_kind["Dataplane"] if r.meta.name == "gw-1")
    ctx = MeshContext.build(
        proxy.meta.mesh,
        gateways=by_kind["MeshGateway"],
        routes=by_kind.get("MeshGatewayRoute", []),
        dataplanes=by_kind["Dataplane"],
        zone="zone-1",
    )
    snap = generate(proxy, ctx)
    assert snap.problems == ()
    config: Any = snap[ROUTE]["edge:HTTP:8080:*"]
    return {vh.name: vh for vh in config.virtual_hosts}


def routes_of(*route_docs: str, host: str = "*") -> list[Any]:
    return list(vhosts(*route_docs)[host].routes)


def path_of(r: Any) -> tuple[str, str]:
    kind = r.match.WhichOneof("path_specifier")
    return (kind, r.match.safe_regex.regex if kind == "safe_regex" else getattr(r.match, kind))


def clusters_of(r: Any) -> list[tuple[str, int]]:
    return [(c.name, c.weight.value) for c in r.route.weighted_clusters.clusters]


def test_order_exact_then_prefix_then_regex_longest_first() -> None:
    """Exact paths longest first, then (segment) prefixes longest first, then regexes longest first."""
    doc = route(
        rule(
            "path: {match: REGEX, value: '^/r$'}",
            "path: {match: EXACT, value: /a}",
            "path: {match: PREFIX, value: /long/prefix}",
            "path: {match: EXACT, value: /a/much/longer}",
            "path: {match: REGEX, value: '^/longer-regex$'}",
            "path: {match: PREFIX, value: /p}",
        )
    )
    assert [path_of(r) for r in routes_of(doc)] == [
        ("path", "/a/much/longer"),
        ("path", "/long/prefix"),
        ("path", "/a"),
        ("path", "/p"),
        ("prefix", "/long/prefix/"),
        ("prefix", "/p/"),
        ("safe_regex", "^/longer-regex$"),
        ("safe_regex", "^/r$"),
    ]


def test_order_method_then_headers_then_query_on_equal_paths() -> None:
    """On the same path: a method first, then more header matches, then more query matches."""
    doc = route(
        rule("path: {match: EXACT, value: /x}", backend="other")
        + rule("path: {match: EXACT, value: /x}\n        queryParameters: [{name: q, value: '1'}]")
        + rule("path: {match: EXACT, value: /x}\n        headers: [{name: h, value: '1'}]")
        + rule("path: {match: EXACT, value: /x}\n        method: GET")
        + rule("path: {match: EXACT, value: /x}\n        headers: [{name: h, value: '1'}, {name: i, match: PRESENT}]")
    )
    shape = [
        (
            [h.name for h in r.match.headers if h.name == ":method"],
            len([h for h in r.match.headers if h.name != ":method"]),
            len(r.match.query_parameters),
        )
        for r in routes_of(doc)
    ]
    assert shape == [([":method"], 0, 0), ([], 2, 0), ([], 1, 0), ([], 0, 1), ([], 0, 0)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/api", [("path", "/api"), ("prefix", "/api/")]),
        ("/api/", [("path", "/api"), ("prefix", "/api/")]),
        ("/", [("prefix", "/")]),
    ],
)
def test_prefix_matches_whole_segments(value: str, expected: list[tuple[str, str]]) -> None:
    """PREFIX /api matches /api, /api/ and /api/x, never /apix: an exact /api plus a prefix /api/."""
    doc = route(rule(f"path: {{match: PREFIX, value: '{value}'}}"))
    assert [path_of(r) for r in routes_of(doc)] == expected


def test_a_match_without_path_is_prefix_root() -> None:
    doc = route(rule("method: POST"))
    (only,) = routes_of(doc)
    assert path_of(only) == ("prefix", "/")


def test_explicit_exact_beats_the_prefix_exact_twin() -> None:
    """An explicit EXACT /api (from any route of the host) replaces the exact form of PREFIX /api."""
    prefix = route(rule("path: {match: PREFIX, value: /api}", backend="backend"), name="a-prefix")
    exact = route(rule("path: {match: EXACT, value: /api}", backend="other"), name="b-exact")
    table = routes_of(prefix, exact)
    assert [(path_of(r), clusters_of(r)) for r in table] == [
        (("path", "/api"), [(OTHER, 1)]),
        (("prefix", "/api/"), [(BACKEND, 1)]),
    ]


def test_header_query_and_method_matches() -> None:
    doc = route(
        rule(
            """path: {match: EXACT, value: /m}
        method: PUT
        headers:
        - {name: x-exact, value: 'yes'}
        - {name: x-regex, match: REGEX, value: '^v[0-9]+$'}
        - {name: x-present, match: PRESENT}
        - {name: x-absent, match: ABSENT}
        queryParameters:
        - {name: page, value: '2'}
        - {name: sort, match: REGEX, value: '^(asc|desc)$'}"""
        )
    )
    (r,) = routes_of(doc)
    headers = [(h.name, h.WhichOneof("header_match_specifier")) for h in r.match.headers]
    assert headers == [
        (":method", "string_match"),
        ("x-exact", "string_match"),
        ("x-regex", "string_match"),
        ("x-present", "present_match"),
        ("x-absent", "present_match"),
    ]
    by_name = {h.name: h for h in r.match.headers}
    assert by_name[":method"].string_match.exact == "PUT"
    assert by_name["x-exact"].string_match.exact == "yes"
    assert by_name["x-regex"].string_match.safe_regex.regex == "^v[0-9]+$"
    assert by_name["x-present"].present_match is True
    assert by_name["x-absent"].present_match is False
    query = {q.name: q.string_match for q in r.match.query_parameters}
    assert query["page"].exact == "2"
    assert query["sort"].safe_regex.regex == "^(asc|desc)$"


def test_weighted_backends_become_weighted_clusters() -> None:
    doc = route(
        """    - matches:
      - path: {match: PREFIX, value: /}
      backends:
      - {weight: 3, destination: {kuma.io/service: backend}}
      - {weight: 1, destination: {kuma.io/service: other}}
      - {weight: 2, destination: {kuma.io/service: backend, version: v1}}
      - {weight: 0, destination: {kuma.io/service: other}}
"""
    )
    (r,) = routes_of(doc)
    v1 = cluster_name({"kuma.io/service": "backend", "version": "v1"})
    assert clusters_of(r) == sorted([(BACKEND, 3), (OTHER, 1), (v1, 2)])
    assert r.route.cluster_not_found_response_code == r.route.INTERNAL_SERVER_ERROR


def test_a_lone_backend_weighs_one() -> None:
    (r,) = routes_of(route(rule("path: {match: PREFIX, value: /}")))
    assert clusters_of(r) == [(BACKEND, 1)]


def test_an_unknown_backend_answers_500() -> None:
    """No Dataplane serves `ghost`: its share goes to a cluster that never exists, and Envoy answers 500."""
    (r,) = routes_of(route(rule("path: {match: PREFIX, value: /}", backend="ghost")))
    assert clusters_of(r) == [(UNRESOLVED_BACKEND, 1)]
    assert r.route.cluster_not_found_response_code == r.route.INTERNAL_SERVER_ERROR


def test_a_virtual_host_without_routes_answers_404_with_kumas_body() -> None:
    (r,) = routes_of()
    assert path_of(r) == ("prefix", "/")
    assert r.direct_response.status == 404
    assert (
        r.direct_response.body.inline_string
        == NO_ROUTE_BODY
        == ("This is a Kuma MeshGateway. No routes match this MeshGateway!\n")
    )


@pytest.mark.parametrize(
    ("redirect", "port", "scheme", "host", "code"),
    [
        ("{statusCode: 301}", 8080, "", "", "MOVED_PERMANENTLY"),
        ("{scheme: https, hostname: secure.example.com, port: 8443, statusCode: 302}", 8443, "https",
         "secure.example.com", "FOUND"),
        ("{statusCode: 303}", 8080, "", "", "SEE_OTHER"),
        ("{statusCode: 307}", 8080, "", "", "TEMPORARY_REDIRECT"),
        ("{statusCode: 308}", 8080, "", "", "PERMANENT_REDIRECT"),
    ],
)  # fmt: skip
def test_redirect_keeps_the_listener_port_and_strips_the_query(
    redirect: str, port: int, scheme: str, host: str, code: str
) -> None:
    doc = route(rule("path: {match: EXACT, value: /old}", backend="", filters=f"      - redirect: {redirect}"))
    (r,) = routes_of(doc)
    assert r.WhichOneof("action") == "redirect"
    assert r.redirect.port_redirect == port
    assert r.redirect.strip_query is True
    assert r.redirect.scheme_redirect == scheme
    assert r.redirect.host_redirect == host
    assert rc.RedirectAction.RedirectResponseCode.Name(r.redirect.response_code) == code


def test_redirect_prefix_path_rewrite_splits_like_the_match() -> None:
    filters = "      - redirect: {statusCode: 302, path: {replacePrefixMatch: /new}}"
    doc = route(rule("path: {match: PREFIX, value: /old}", backend="", filters=filters))
    exact, prefix = routes_of(doc)
    assert path_of(exact) == ("path", "/old")
    assert exact.redirect.regex_rewrite.substitution == "/new"
    assert exact.redirect.regex_rewrite.pattern.regex == ".*"
    assert path_of(prefix) == ("prefix", "/old/")
    assert prefix.redirect.prefix_rewrite == "/new/"


@pytest.mark.parametrize(
    ("replace", "exact_full", "prefix_rewrite"),
    [("/v2", "/v2", "/v2/"), ("/v2/", "/v2", "/v2/"), ("/", "/", "/")],
)
def test_rewrite_prefix_keeps_whole_segments(replace: str, exact_full: str, prefix_rewrite: str) -> None:
    """`/api` -> `/v2`: /api/x becomes /v2/x (never /v2x), and /api becomes /v2."""
    filters = f"      - rewrite: {{replacePrefixMatch: '{replace}'}}"
    exact, prefix = routes_of(route(rule("path: {match: PREFIX, value: /api}", filters=filters)))
    assert path_of(exact) == ("path", "/api")
    assert exact.route.regex_rewrite.substitution == exact_full
    assert exact.route.prefix_rewrite == ""
    assert path_of(prefix) == ("prefix", "/api/")
    assert prefix.route.prefix_rewrite == prefix_rewrite


def test_rewrite_prefix_root_gets_an_exact_twin() -> None:
    filters = "      - rewrite: {replacePrefixMatch: /app}"
    exact, prefix = routes_of(route(rule("path: {match: PREFIX, value: /}", filters=filters)))
    assert (path_of(exact), exact.route.regex_rewrite.substitution) == (("path", "/"), "/app")
    assert (path_of(prefix), prefix.route.prefix_rewrite) == (("prefix", "/"), "/app/")


def test_rewrite_full_and_host_to_backend() -> None:
    filters = "      - rewrite: {replaceFull: /index.html, hostToBackendHostname: true}"
    (r,) = routes_of(route(rule("path: {match: EXACT, value: /home}", filters=filters)))
    assert r.route.regex_rewrite.pattern.regex == ".*"
    assert r.route.regex_rewrite.substitution == "/index.html"
    assert r.route.auto_host_rewrite.value is True


@pytest.mark.parametrize(
    ("percentage", "numerator", "denominator"),
    [("50", 50, "HUNDRED"), ("0.5", 50, "TEN_THOUSAND"), ("0.001", 10, "MILLION"), ("100", 100, "HUNDRED")],
)
def test_mirror_sends_a_share_to_another_cluster(percentage: str, numerator: int, denominator: str) -> None:
    filters = f"      - mirror: {{percentage: {percentage}, backend: {{destination: {{kuma.io/service: other}}}}}}"
    (r,) = routes_of(route(rule("path: {match: EXACT, value: /m}", filters=filters)))
    (policy,) = r.route.request_mirror_policies
    assert policy.cluster == OTHER
    fraction = policy.runtime_fraction.default_value
    assert (fraction.numerator, fraction.DenominatorType.Name(fraction.denominator)) == (numerator, denominator)


def test_mirror_without_percentage_mirrors_nothing_as_in_kuma() -> None:
    filters = "      - mirror: {backend: {destination: {kuma.io/service: other}}}"
    (r,) = routes_of(route(rule("path: {match: EXACT, value: /m}", filters=filters)))
    assert list(r.route.request_mirror_policies) == []


def test_fractional_percent_picks_the_coarsest_exact_denominator() -> None:
    assert fractional_percent(12.34).denominator == fractional_percent(12.34).TEN_THOUSAND
    assert fractional_percent(12.34).numerator == 1234


def test_request_and_response_header_filters() -> None:
    filters = """      - requestHeader:
          set: [{name: x-set, value: '1'}, {name: Host, value: rewritten.example.com}]
          add: [{name: x-add, value: '2'}]
          remove: [x-drop]
      - responseHeader:
          set: [{name: x-resp-set, value: a}]
          add: [{name: x-resp-add, value: b}]
          remove: [server]"""
    (r,) = routes_of(route(rule("path: {match: EXACT, value: /h}", filters=filters)))
    add = {h.header.key: (h.header.value, APPEND.Name(h.append_action)) for h in r.request_headers_to_add}
    assert add == {
        "x-set": ("1", "OVERWRITE_IF_EXISTS_OR_ADD"),
        "x-add": ("2", "APPEND_IF_EXISTS_OR_ADD"),
    }
    assert r.route.host_rewrite_literal == "rewritten.example.com"
    assert list(r.request_headers_to_remove) == ["x-drop"]
    resp = {h.header.key: (h.header.value, APPEND.Name(h.append_action)) for h in r.response_headers_to_add}
    assert resp == {"x-resp-set": ("a", "OVERWRITE_IF_EXISTS_OR_ADD"), "x-resp-add": ("b", "APPEND_IF_EXISTS_OR_ADD")}
    assert list(r.response_headers_to_remove) == ["server"]


def test_route_configuration_ignores_the_port_in_host_and_tolerates_missing_clusters() -> None:
    resources = load(WORLD)
    proxy = resources[0]
    snap = generate(
        proxy, MeshContext.build(proxy.meta.mesh, gateways=[resources[1]], dataplanes=resources, zone="zone-1")
    )
    config: Any = snap[ROUTE]["edge:HTTP:8080:*"]
    assert config.ignore_port_in_host_matching is True
    assert config.validate_clusters.value is False
