"""Route binding and virtual hosts (meshgate.xds.gateway, meshgate.xds.hostnames); gateway selection is in
test_resources_selectors.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.xds import bind
from meshgate.xds.hostnames import by_exactness, containers, contains


def load(text: str) -> list[Resource]:
    return [codec.decode(doc) for doc in codec.load_documents(text)]


def one(text: str) -> Resource:
    (resource,) = load(text)
    return resource


DATAPLANE = one("""
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags: {kuma.io/service: edge, env: prod}
""")


def gateway(name: str, selectors: str, *, created: int = 0, listeners: str = "", tags: str = "{}") -> Resource:
    listeners = listeners or "  - {port: 8080, protocol: HTTP}"
    doc = one(f"""
type: MeshGateway
mesh: default
name: {name}
selectors: {selectors}
tags: {tags}
conf:
  listeners:
{listeners}
""")
    return doc.with_meta(creation_time=datetime(2024, 1, 1, 0, 0, created, tzinfo=UTC))


def http_route(name: str, selector: str, hostnames: str = "[]") -> Resource:
    return one(f"""
type: MeshGatewayRoute
mesh: default
name: {name}
selectors: [{{match: {selector}}}]
conf:
  http:
    hostnames: {hostnames}
    rules:
    - matches: [{{path: {{match: PREFIX, value: /}}}}]
      backends: [{{destination: {{kuma.io/service: backend}}}}]
""")


def tcp_route(name: str, selector: str) -> Resource:
    return one(f"""
type: MeshGatewayRoute
mesh: default
name: {name}
selectors: [{{match: {selector}}}]
conf:
  tcp:
    rules:
    - backends: [{{destination: {{kuma.io/service: backend}}}}]
""")


def test_routes_bind_by_merged_tags_listener_last() -> None:
    """Merged tags are dataplane gateway tags, then gateway tags, then listener tags (last wins)."""
    gw = gateway(
        "edge",
        "[{match: {kuma.io/service: edge}}]",
        tags="{env: staging, team: a}",
        listeners="  - {port: 8080, protocol: HTTP, tags: {team: b}}",
    )
    routes = [
        http_route("dp-tag", "{kuma.io/service: edge}"),
        http_route("gw-overrides-dp", "{env: staging}"),
        http_route("dp-value-lost", "{env: prod}"),
        http_route("listener-wins", "{team: b}"),
        http_route("gateway-value-lost", "{team: a}"),
        tcp_route("tcp-on-http", "{kuma.io/service: edge}"),
    ]
    binding = bind(DATAPLANE, gw, routes)
    ((vhost,),) = [g.virtual_hosts for lb in binding.listeners for g in lb.groups]
    assert [r.meta.name for r in vhost.routes] == ["dp-tag", "gw-overrides-dp", "listener-wins"]


def test_protocols_http_routes_to_http_https_and_tcp_routes_to_tcp_tls() -> None:
    listeners = """  - {port: 80, protocol: HTTP}
  - {port: 90, protocol: TCP}"""
    gw = gateway("edge", "[{match: {kuma.io/service: edge}}]", listeners=listeners)
    binding = bind(
        DATAPLANE, gw, [http_route("h", "{kuma.io/service: edge}"), tcp_route("t", "{kuma.io/service: edge}")]
    )
    bound = {
        lb.name: [r.meta.name for g in lb.groups for vh in g.virtual_hosts for r in vh.routes]
        for lb in binding.listeners
    }
    assert bound == {"edge:HTTP:80": ["h"], "edge:TCP:90": ["t"]}


def test_listeners_sharing_a_port_merge_into_one() -> None:
    listeners = """  - {port: 8080, protocol: HTTP, hostname: foo.example.com}
  - {port: 8080, protocol: HTTP, hostname: bar.example.com}
  - {port: 8080, protocol: HTTP}
  - {port: 9090, protocol: HTTP}"""
    gw = gateway("edge", "[{match: {kuma.io/service: edge}}]", listeners=listeners)
    binding = bind(DATAPLANE, gw, [])
    assert [(lb.name, lb.port) for lb in binding.listeners] == [("edge:HTTP:8080", 8080), ("edge:HTTP:9090", 9090)]
    (group,) = binding.listeners[0].groups
    assert group.hostname == "*"
    assert [vh.hostname for vh in group.virtual_hosts] == ["foo.example.com", "bar.example.com", "*"]


def test_https_listeners_sharing_a_port_are_one_group_per_hostname() -> None:
    tls = "tls: {mode: TERMINATE, certificates: [{inlineString: x}]}"
    listeners = f"""  - {{port: 8443, protocol: HTTPS, hostname: '*.example.com', {tls}}}
  - {{port: 8443, protocol: HTTPS, hostname: api.example.com, {tls}}}
  - {{port: 8443, protocol: HTTPS, {tls}}}"""
    gw = gateway("edge", "[{match: {kuma.io/service: edge}}]", listeners=listeners)
    (lb,) = bind(DATAPLANE, gw, []).listeners
    assert [g.hostname for g in lb.groups] == ["api.example.com", "*.example.com", "*"]


def test_conflicting_protocols_on_a_port_are_reported() -> None:
    listeners = """  - {port: 8080, protocol: HTTP}
  - {port: 8080, protocol: TCP}"""
    gw = gateway("edge", "[{match: {kuma.io/service: edge}}]", listeners=listeners)
    binding = bind(DATAPLANE, gw, [])
    assert [lb.protocol for lb in binding.listeners] == [4]  # HTTP, the first one
    assert binding.problems == ("listener on port 8080: protocol TCP conflicts with HTTP; skipped",)


def hosts(listeners: str, *routes: Resource) -> dict[str, list[str]]:
    gw = gateway("edge", "[{match: {kuma.io/service: edge}}]", listeners=listeners)
    (lb,) = bind(DATAPLANE, gw, routes).listeners
    return {vh.hostname: [r.meta.name for r in vh.routes] for g in lb.groups for vh in g.virtual_hosts}


def test_route_hostnames_narrow_a_wildcard_listener() -> None:
    """On a `*` listener, each route hostname is its own virtual host; routes without hostnames go everywhere."""
    sel = "{kuma.io/service: edge}"
    found = hosts(
        "  - {port: 8080, protocol: HTTP}",
        http_route("all", sel),
        http_route("a", sel, "[a.example.com]"),
        http_route("wild", sel, "['*.example.com']"),
    )
    assert found == {
        "a.example.com": ["a", "all", "wild"],
        "*.example.com": ["all", "wild"],
        "*": ["all"],
    }


def test_route_hostnames_narrow_a_suffix_wildcard_listener() -> None:
    sel = "{kuma.io/service: edge}"
    found = hosts(
        "  - {port: 8080, protocol: HTTP, hostname: '*.example.com'}",
        http_route("a", sel, "[a.example.com]"),
        http_route("broader", sel, "['*.com']"),
        http_route("elsewhere", sel, "[a.example.org]"),
    )
    assert found == {"a.example.com": ["a", "broader"], "*.example.com": ["broader"]}


def test_an_exact_listener_takes_only_routes_naming_it() -> None:
    sel = "{kuma.io/service: edge}"
    found = hosts(
        "  - {port: 8080, protocol: HTTP, hostname: foo.example.com}",
        http_route("foo", sel, "[foo.example.com]"),
        http_route("bar", sel, "[bar.example.com]"),
        http_route("any", sel),
        http_route("wild", sel, "['*.example.com']"),
    )
    assert found == {"foo.example.com": ["any", "foo", "wild"]}


@pytest.mark.parametrize(
    ("outer", "inner", "expected"),
    [
        ("*", "a.b", True),
        ("", "*.a.b", True),
        ("*.a.b", "x.a.b", True),
        ("*.a.b", "y.x.a.b", True),
        ("*.a.b", "*.x.a.b", True),
        ("*.a.b", "a.b", False),
        ("*.a.b", "*", False),
        ("a.b", "a.b", True),
        ("a.b", "a.x.b", False),
        ("x.a.b", "*.a.b", False),
    ],
)
def test_hostname_containment(outer: str, inner: str, expected: bool) -> None:
    assert contains(outer, inner) is expected


def test_hostnames_by_exactness() -> None:
    assert by_exactness(["*", "*.b.c", "z.c", "*.a.b.c", "", "a.c"]) == ["a.c", "z.c", "*.a.b.c", "*.b.c", "*", "*"]


def test_hostname_less_routes_stay_on_their_own_listener() -> None:
    """A route bound to the `*` listener only reaches another listener's host when it names that host."""
    listeners = """  - {port: 8080, protocol: HTTP, tags: {team: b}}
  - {port: 8080, protocol: HTTP, hostname: foo.example.com, tags: {team: a}}"""
    found = hosts(
        listeners,
        http_route("star-only", "{team: b}"),
        http_route("names-foo", "{team: b}", "[foo.example.com]"),
        http_route("foo-own", "{team: a}"),
    )
    assert found == {"foo.example.com": ["foo-own", "names-foo"], "*": ["star-only"]}


def test_cross_mesh_listeners_are_bound_and_marked_for_mtls() -> None:
    listeners = """  - {port: 8080, protocol: HTTP, crossMesh: true}
  - {port: 9090, protocol: HTTP}"""
    gw = gateway("edge", "[{match: {kuma.io/service: edge}}]", listeners=listeners)
    binding = bind(DATAPLANE, gw, [])
    assert [(lb.port, lb.cross_mesh) for lb in binding.listeners] == [(8080, True), (9090, False)]
    assert binding.problems == ()


@pytest.mark.parametrize(
    "hostname",
    ["a.b.c", "*.b.c", "*", "", "x.y", "*.y", "a"],
)
def test_containers_are_exactly_the_containing_wildcards_and_itself(hostname: str) -> None:
    universe = {"a.b.c", "*.b.c", "*.c", "*", "x.y", "*.y", "a", "*.a.b.c", "b.c"}
    assert {h for h in universe if contains(h, hostname)} <= set(containers(hostname))
    assert all(contains(h, hostname) for h in containers(hostname))
