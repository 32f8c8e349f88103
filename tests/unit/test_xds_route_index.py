"""RouteIndex is an optimization: generating with it must give exactly what scanning every route gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from meshgate.xds import MeshContext, generate
from meshgate.xds.gateway import RouteIndex

SERVICES = ["edge-a", "edge-b", "*"]


def gateway(name: str, service: str, port: int) -> Resource:
    listeners = [factory.listener(port, hostname="*", tags={"port": str(port)})]
    return resource(factory.gateway(name, service=service, listeners=listeners))


def route(i: int, selectors: list[dict[str, str]]) -> Resource:
    # decode, not load: also routes a validator would refuse (no kuma.io/service), so the index's fallback
    # for selectors without a service is exercised too.
    return resource(factory.http_route(f"r{i}", selectors=selectors, prefix=f"/p{i}"), check=False)


def proxy(service: str) -> Resource:
    return resource(factory.gateway_dataplane(f"{service}-1", service, address="127.0.0.1"))


selector = st.dictionaries(
    st.sampled_from(["kuma.io/service", "port", "team"]),
    st.sampled_from([*SERVICES, "8080", "9090", "x"]),
    min_size=1,
    max_size=3,
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(selector, min_size=1, max_size=3), min_size=1, max_size=12))
def test_generation_is_the_same_with_and_without_the_index(route_selectors: list[list[dict[str, str]]]) -> None:
    gateways = [gateway("gw-a", "edge-a", 8080), gateway("gw-b", "edge-b", 9090)]
    routes = [route(i, s) for i, s in enumerate(route_selectors)]
    for service in ("edge-a", "edge-b"):
        p = proxy(service)
        scanning = MeshContext.build(p.meta.mesh, gateways=gateways, routes=routes, zone="z", index_routes=False)
        indexing = MeshContext.build(p.meta.mesh, gateways=gateways, routes=routes, zone="z")
        assert scanning.route_index is None
        assert isinstance(indexing.route_index, RouteIndex)
        plain = generate(p, scanning)
        indexed = generate(p, indexing)
        for type_url in plain:
            assert plain.versions(type_url) == indexed.versions(type_url)
        assert plain.problems == indexed.problems
