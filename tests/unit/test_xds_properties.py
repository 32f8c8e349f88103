"""Properties of `generate` over random gateways, routes and Dataplanes.

- Deterministic: the same resources in any order give byte-equal snapshots with equal versions.
- Closed: every route configuration a listener names is in the snapshot, and so is every cluster a route or a
  TCP proxy names, except the deliberate `UNRESOLVED_BACKEND`; every EDS cluster has its endpoints.
- Valid: every message survives a round trip through `Any` (see `assert_valid` in test_xds_generate).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.api.mesh.v1alpha1.gateway_route_pb2 import MeshGatewayRoute
from meshgate.api.mesh.v1alpha1.http_method_pb2 import HttpMethod
from meshgate.resources.model import Meta, Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from meshgate.xds import MeshContext, generate
from tests.unit.test_xds_generate import assert_valid

SERVICES = ["backend", "db", "ghost"]
HOSTS = ["", "*", "a.example.com", "b.example.com", "*.example.com"]
_Http = MeshGatewayRoute.HttpRoute

services = st.sampled_from(SERVICES)
hostnames = st.sampled_from(HOSTS)
paths = st.sampled_from(["/", "/api", "/api/", "/a/b", "/x"])


@st.composite
def destinations(draw: st.DrawFn) -> dict[str, str]:
    tags = {"kuma.io/service": draw(services)}
    if draw(st.booleans()):
        tags["kuma.io/zone"] = draw(st.sampled_from(["zone-1", "zone-2"]))
    if draw(st.booleans()):
        tags["version"] = draw(st.sampled_from(["v1", "v2"]))
    return tags


@st.composite
def backends(draw: st.DrawFn) -> list[Any]:
    return [
        MeshGatewayRoute.Backend(weight=draw(st.integers(0, 5)), destination=draw(destinations()))
        for _ in range(draw(st.integers(1, 3)))
    ]


@st.composite
def matches(draw: st.DrawFn) -> Any:
    match = _Http.Match()
    kind = draw(st.sampled_from(["none", "EXACT", "PREFIX", "REGEX"]))
    if kind == "REGEX":
        match.path.match = _Http.Match.Path.REGEX
        match.path.value = draw(st.sampled_from(["^/r$", "^/v[0-9]+/.*"]))
    elif kind != "none":
        match.path.match = _Http.Match.Path.MatchType.Value(kind)
        match.path.value = draw(paths)
    if draw(st.booleans()):
        match.method = draw(st.sampled_from([HttpMethod.GET, HttpMethod.POST]))
    for name in draw(st.lists(st.sampled_from(["x-a", "x-b"]), max_size=2, unique=True)):
        match.headers.add(name=name, value="v", match=draw(st.integers(0, 3)))
    for name in draw(st.lists(st.sampled_from(["q", "r"]), max_size=2, unique=True)):
        match.query_parameters.add(name=name, value="1", match=draw(st.integers(0, 1)))
    return match


@st.composite
def http_rules(draw: st.DrawFn) -> Any:
    rule = _Http.Rule(matches=draw(st.lists(matches(), min_size=1, max_size=3)))
    if draw(st.integers(0, 4)) == 0:
        redirect = rule.filters.add().redirect
        redirect.status_code = draw(st.sampled_from([301, 302, 307]))
        redirect.port = draw(st.sampled_from([0, 8443]))
        if draw(st.booleans()):
            redirect.path.replace_prefix_match = draw(paths)
        return rule
    rule.backends.extend(draw(backends()))
    if draw(st.booleans()):
        rule.filters.add().rewrite.replace_prefix_match = draw(paths)
    if draw(st.booleans()):
        mirror = rule.filters.add().mirror
        mirror.backend.destination.update(draw(destinations()))
        mirror.percentage.value = draw(st.sampled_from([0.5, 10.0, 100.0]))
    if draw(st.booleans()):
        rule.filters.add().request_header.set.add(name="x-set", value="1")
    return rule


@st.composite
def gateway_routes(draw: st.DrawFn, index: int) -> Resource:
    spec = MeshGatewayRoute()
    spec.selectors.add().match.update(
        draw(st.sampled_from([{"kuma.io/service": "edge"}, {"team": "a"}, {"team": "b"}]))
    )
    if draw(st.booleans()):
        spec.conf.http.hostnames.extend(draw(st.lists(hostnames.filter(bool), max_size=2, unique=True)))
        spec.conf.http.rules.extend(draw(st.lists(http_rules(), min_size=1, max_size=3)))
    else:
        spec.conf.tcp.rules.add().backends.extend(draw(backends()))
    return Resource("MeshGatewayRoute", Meta(name=f"route-{index}", mesh="default"), spec)


@st.composite
def gateways(draw: st.DrawFn) -> Resource:
    spec = MeshGateway()
    spec.selectors.add().match["kuma.io/service"] = "edge"
    for port in draw(st.lists(st.sampled_from([8080, 8443, 9000]), min_size=1, max_size=3)):
        # One protocol per port, as validation insists; hostnames may repeat only where they merge.
        protocol = {8080: MeshGateway.Listener.HTTP, 8443: MeshGateway.Listener.TLS, 9000: MeshGateway.Listener.TCP}[
            port
        ]
        listener = spec.conf.listeners.add(port=port, protocol=protocol, hostname=draw(hostnames))
        listener.tags["team"] = draw(st.sampled_from(["a", "b"]))
        if protocol == MeshGateway.Listener.TLS:
            listener.tls.mode = MeshGateway.TLS.PASSTHROUGH
        if draw(st.booleans()):
            listener.resources.connection_limit = draw(st.integers(1, 100))
    return Resource("MeshGateway", Meta(name="edge", mesh="default"), spec)


def dataplane(name: str, service: str, address: str, zone: str | None, version: str) -> Resource:
    labels = {"kuma.io/zone": zone} if zone else {}
    doc = factory.dataplane(name, service, address=address, port=8000, tags={"version": version}, labels=labels)
    return resource(doc)


PROXY = resource(factory.gateway_dataplane("gw-1", "edge", address="192.168.0.1"))
ENDPOINTS = [
    dataplane("b1", "backend", "10.0.0.1", None, "v1"),
    dataplane("b2", "backend", "10.0.0.2", "zone-2", "v2"),
    dataplane("d1", "db", "10.0.0.3", None, "v1"),
]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[list[Resource], list[Resource]]:
    count = draw(st.integers(0, 4))
    return [draw(gateways())], [draw(gateway_routes(i)) for i in range(count)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), shuffle=st.randoms(use_true_random=False))
def test_generation_is_deterministic_closed_and_valid(
    world: tuple[list[Resource], list[Resource]], shuffle: Any
) -> None:
    gws, routes = world
    first = generate(
        PROXY, MeshContext.build("default", gateways=gws, routes=routes, dataplanes=ENDPOINTS, zone="zone-1")
    )
    routes_shuffled, endpoints_shuffled = list(routes), list(ENDPOINTS)
    shuffle.shuffle(routes_shuffled)
    shuffle.shuffle(endpoints_shuffled)
    ctx = MeshContext.build(
        "default", gateways=gws, routes=routes_shuffled, dataplanes=endpoints_shuffled, zone="zone-1"
    )
    second = generate(PROXY, ctx)
    for type_url in first:
        assert first.versions(type_url) == second.versions(type_url)
        assert {n: m.SerializeToString(deterministic=True) for n, m in first[type_url].items()} == {
            n: m.SerializeToString(deterministic=True) for n, m in second[type_url].items()
        }
    assert first.problems == second.problems
    assert_valid(first)


def test_delegated_generation_is_deterministic_and_closed() -> None:
    spec = Dataplane()
    spec.networking.address = "192.168.0.2"
    spec.networking.gateway.tags["kuma.io/service"] = "kong"
    for port, service in [(10001, "backend"), (10002, "db"), (10003, "ghost")]:
        spec.networking.outbound.add(port=port, tags={"kuma.io/service": service})
    proxy = Resource("Dataplane", Meta(name="kong", mesh="default"), spec)
    first = generate(proxy, MeshContext.build("default", dataplanes=ENDPOINTS, zone="zone-1"))
    second = generate(proxy, MeshContext.build("default", dataplanes=list(reversed(ENDPOINTS)), zone="zone-1"))
    assert all(first.versions(t) == second.versions(t) for t in first)
    assert len(first.listeners) == 3
    assert_valid(first)
