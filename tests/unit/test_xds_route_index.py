"""RouteIndex is an optimization: generating with it must give exactly what scanning every route gives."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.xds import generate
from meshgate.xds.gateway import RouteIndex

SERVICES = ["edge-a", "edge-b", "*"]


def gateway(name: str, service: str, port: int) -> Resource:
    return codec.load(
        {
            "type": "MeshGateway",
            "mesh": "default",
            "name": name,
            "selectors": [{"match": {"kuma.io/service": service}}],
            "conf": {"listeners": [{"port": port, "protocol": "HTTP", "hostname": "*", "tags": {"port": str(port)}}]},
        }
    )


def route(i: int, selectors: list[dict[str, str]]) -> Resource:
    # decode, not load: also routes a validator would refuse (no kuma.io/service), so the index's fallback
    # for selectors without a service is exercised too.
    return codec.decode(
        {
            "type": "MeshGatewayRoute",
            "mesh": "default",
            "name": f"r{i}",
            "selectors": [{"match": m} for m in selectors],
            "conf": {
                "http": {
                    "rules": [
                        {
                            "matches": [{"path": {"match": "PREFIX", "value": f"/p{i}"}}],
                            "backends": [{"destination": {"kuma.io/service": "backend"}}],
                        }
                    ]
                }
            },
        }
    )


def proxy(service: str) -> Resource:
    doc: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": "default",
        "name": f"{service}-1",
        "networking": {"address": "127.0.0.1", "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": service}}},
    }
    return codec.load(doc)


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
    index = RouteIndex(routes)
    for service in ("edge-a", "edge-b"):
        p = proxy(service)
        plain = generate(p, gateways=gateways, routes=routes, zone="z")
        indexed = generate(p, gateways=gateways, routes=routes, zone="z", route_index=index)
        for type_url in plain:
            assert plain.versions(type_url) == indexed.versions(type_url)
        assert plain.problems == indexed.problems
