"""`gateway_listeners` (GET /meshes/{mesh}/meshgateways/{name}/listeners, the GUI's gateway page): per serving
Dataplane, the listeners and the routes bound to each hostname, as the zone's xDS generation binds them."""

from __future__ import annotations

from meshgate.rest.inspect import gateway_listeners
from meshgate.testing.factory import (
    backend,
    gateway,
    gateway_dataplane,
    http_route,
    listener,
    resource,
)


def test_each_serving_dataplane_lists_its_listeners_with_the_routes_bound_per_hostname() -> None:
    """A route binds to the listener whose merged tags its selector matches, and only to that one."""
    edge = resource(
        gateway("edge", listeners=[listener(8080, tags={"port": "http"}), listener(9090, tags={"port": "other"})])
    )
    routes = [
        resource(http_route("api", selectors=[{"kuma.io/service": "edge", "port": "http"}], backends=[backend("b")])),
        resource(http_route("elsewhere", service="other-gateway")),
    ]
    dataplanes = [
        resource(gateway_dataplane("edge-1", labels={"kuma.io/zone": "zone-1"})),
        resource(gateway_dataplane("other-1", "other-gateway")),
    ]
    body = gateway_listeners(edge, dataplanes, routes, local_zone="here")
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["dataplane"] == {"mesh": "default", "name": "edge-1", "displayName": "edge-1"}
    assert item["zone"] == "zone-1"
    by_port = {entry["port"]: entry for entry in item["listeners"]}
    assert by_port[8080]["protocol"] == "HTTP"
    assert by_port[8080]["hostnames"] == [{"hostname": "*", "routes": [{"name": "api", "displayName": "api"}]}]
    assert by_port[9090]["hostnames"] == [{"hostname": "*", "routes": []}]
    assert "unserved" not in body


def test_a_dataplane_without_a_zone_label_is_in_the_local_zone() -> None:
    edge = resource(gateway("edge"))
    body = gateway_listeners(edge, [resource(gateway_dataplane("edge-1"))], [], local_zone="zone-7")
    assert body["items"][0]["zone"] == "zone-7"


def test_an_unserved_gateway_is_bound_against_its_selector_tags() -> None:
    """No Dataplane serves it yet: what a Dataplane with the selector's tags would serve."""
    edge = resource(gateway("edge", listeners=[listener(8080)]))
    routes = [resource(http_route("web"))]
    body = gateway_listeners(edge, [], routes)
    assert body == {
        "total": 0,
        "items": [],
        "unserved": {
            "listeners": [
                {
                    "name": "edge:HTTP:8080",
                    "port": 8080,
                    "protocol": "HTTP",
                    "crossMesh": False,
                    "hostnames": [{"hostname": "*", "routes": [{"name": "web", "displayName": "web"}]}],
                }
            ],
            "problems": [],
        },
    }
