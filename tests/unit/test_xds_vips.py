"""`generate(..., vips=...)`: `.mesh` VIP outbound listeners (issue 6 item 4; gateway.md, "DNS and VIPs").

A VIP outbound is routed exactly like a `networking.outbound` on the same address and port, so most checks
compare the two snapshots byte for byte; the rest cover what only VIPs have: collisions with explicit
outbounds, ambiguous duplicates, cross-mesh gateway names (always HTTP), builtin gateways (no VIPs) and
deterministic output whatever the order the zone passes them in.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2

from meshgate.xds import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    UNRESOLVED_BACKEND,
    MeshContext,
    Snapshot,
    VipOutbound,
    generate,
)
from meshgate.xds.clusters import cluster_name
from tests.unit.test_xds_generate import (
    BACKEND,
    DB,
    ENDPOINTS,
    GATEWAY_DP,
    assert_valid,
    filters,
    gateway,
    http_route,
    load,
)

GRPC = cluster_name({"kuma.io/service": "grpc-api"})


def delegated(outbounds: str = "") -> str:
    return f"""
type: Dataplane
mesh: default
name: kong-1
networking:
  address: 192.168.0.2
  gateway:
    type: DELEGATED
    tags: {{kuma.io/service: kong}}
  outbound: [{outbounds}]
"""


ORDINARY = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.9
  inbound:
  - port: 8080
    tags: {kuma.io/service: web, kuma.io/protocol: http}
"""

SERVICE_VIPS = (
    VipOutbound("127.1.0.1", 80, "backend"),
    VipOutbound("127.1.0.2", 80, "db"),
    VipOutbound("127.1.0.3", 80, "grpc-api"),
)


def run(proxy: str, vips: Sequence[VipOutbound] = (), *docs: str) -> Snapshot:
    resources = load("---".join([proxy, ENDPOINTS, *docs]))
    kinds: dict[str, list[Any]] = {}
    for r in resources:
        kinds.setdefault(r.kind, []).append(r)
    ctx = MeshContext.build(
        resources[0].meta.mesh,
        gateways=kinds.get("MeshGateway", []),
        routes=kinds.get("MeshGatewayRoute", []),
        dataplanes=kinds["Dataplane"],
        zone="zone-1",
        vips=vips,
    )
    snap = generate(resources[0], ctx)
    assert_valid(snap)
    return snap


def serialized(snap: Snapshot) -> dict[str, dict[str, bytes]]:
    return {t: {n: m.SerializeToString(deterministic=True) for n, m in snap[t].items()} for t in snap}


def bound(listener: Any) -> tuple[str, int]:
    return listener.address.socket_address.address, listener.address.socket_address.port_value


# --- listeners -------------------------------------------------------------------------------------------


def test_each_service_vip_gets_a_listener_on_vip_port() -> None:
    snap = run(delegated(), SERVICE_VIPS)
    assert set(snap[LISTENER]) == {"outbound:127.1.0.1:80", "outbound:127.1.0.2:80", "outbound:127.1.0.3:80"}
    for name, listener in snap[LISTENER].items():
        assert bound(listener) == (name.split(":")[1], 80)
        assert listener.traffic_direction == base_pb2.OUTBOUND  # type: ignore[attr-defined]
    assert snap.problems == ()


def test_http_vip_routes_over_rds_to_the_service_cluster() -> None:
    snap = run(delegated(), SERVICE_VIPS)
    hcm = filters(snap[LISTENER]["outbound:127.1.0.1:80"])["envoy.filters.network.http_connection_manager"]
    assert hcm.rds.route_config_name == "outbound:127.1.0.1:80"
    (vhost,) = snap[ROUTE]["outbound:127.1.0.1:80"].virtual_hosts  # type: ignore[attr-defined]
    assert list(vhost.domains) == ["*"], "any Host: the client sends the .mesh name"
    assert [c.name for c in vhost.routes[0].route.weighted_clusters.clusters] == [BACKEND]
    # Every zone's endpoints, the local zone first, as for an explicit outbound.
    assert [g.locality.zone for g in snap[ENDPOINT][BACKEND].endpoints] == ["zone-1", "zone-2"]  # type: ignore[attr-defined]


def test_grpc_vip_is_http_with_an_http2_cluster() -> None:
    snap = run(delegated(), SERVICE_VIPS)
    assert "envoy.filters.network.http_connection_manager" in filters(snap[LISTENER]["outbound:127.1.0.3:80"])
    assert snap[CLUSTER][GRPC].typed_extension_protocol_options  # type: ignore[attr-defined]


def test_tcp_vip_is_a_tcp_proxy_to_the_service_cluster() -> None:
    snap = run(delegated(), SERVICE_VIPS)
    tcp = filters(snap[LISTENER]["outbound:127.1.0.2:80"])["envoy.filters.network.tcp_proxy"]
    assert tcp.cluster == DB
    assert "outbound:127.1.0.2:80" not in snap[ROUTE]
    assert set(snap[CLUSTER]) == {BACKEND, DB, GRPC}


@pytest.mark.parametrize("vip", SERVICE_VIPS, ids=lambda v: v.service)
def test_a_vip_is_exactly_an_explicit_outbound_on_the_same_address(vip: VipOutbound) -> None:
    explicit = run(delegated(f"{{address: {vip.vip}, port: {vip.port}, tags: {{kuma.io/service: {vip.service}}}}}"))
    assert serialized(run(delegated(), [vip])) == serialized(explicit)


def test_vips_sit_beside_explicit_outbounds() -> None:
    snap = run(delegated("{port: 10001, tags: {kuma.io/service: backend}}"), SERVICE_VIPS[:2])
    assert set(snap[LISTENER]) == {"outbound:127.0.0.1:10001", "outbound:127.1.0.1:80", "outbound:127.1.0.2:80"}
    assert set(snap[CLUSTER]) == {BACKEND, DB}, "equal destinations share one cluster"
    assert snap.problems == ()


def test_an_ordinary_dataplane_gets_vip_listeners_and_no_inbound_listener() -> None:
    snap = run(ORDINARY, SERVICE_VIPS)
    assert set(snap[LISTENER]) == {"outbound:127.1.0.1:80", "outbound:127.1.0.2:80", "outbound:127.1.0.3:80"}


def test_a_builtin_gateway_ignores_vips() -> None:
    listeners = gateway("  - {port: 8080, protocol: HTTP}")
    with_vips = run(GATEWAY_DP, SERVICE_VIPS, listeners, http_route("r"))
    assert serialized(with_vips) == serialized(run(GATEWAY_DP, (), listeners, http_route("r")))
    assert set(with_vips[LISTENER]) == {"edge:HTTP:8080"}
    assert with_vips.problems == ()


def test_a_cross_mesh_gateway_name_listens_on_its_port_and_is_always_http() -> None:
    # db speaks tcp, yet a cross-mesh listener is HTTP (gateway.md, "Cross-mesh").
    snap = run(delegated(), [VipOutbound("127.1.0.9", 8080, "db", "gateway")])
    (listener,) = snap[LISTENER].values()
    assert bound(listener) == ("127.1.0.9", 8080)
    hcm = filters(listener)["envoy.filters.network.http_connection_manager"]
    assert hcm.rds.route_config_name == "outbound:127.1.0.9:8080"
    (vhost,) = snap[ROUTE]["outbound:127.1.0.9:8080"].virtual_hosts  # type: ignore[attr-defined]
    assert [c.name for c in vhost.routes[0].route.weighted_clusters.clusters] == [DB]


def test_a_vip_for_a_service_with_no_endpoints_has_no_cluster_and_no_problem() -> None:
    snap = run(delegated(), [VipOutbound("127.1.0.7", 80, "ghost")])
    tcp = filters(snap[LISTENER]["outbound:127.1.0.7:80"])["envoy.filters.network.tcp_proxy"]
    assert tcp.cluster == UNRESOLVED_BACKEND
    assert not snap[CLUSTER]
    assert snap.problems == ()


# --- collisions ------------------------------------------------------------------------------------------


def test_a_vip_on_an_explicit_outbounds_address_is_skipped_as_a_problem() -> None:
    snap = run(
        delegated("{port: 10001, tags: {kuma.io/service: backend}}"),
        [VipOutbound("127.0.0.1", 10001, "db"), VipOutbound("127.0.0.1", 10002, "db")],
    )
    assert set(snap[LISTENER]) == {"outbound:127.0.0.1:10001", "outbound:127.0.0.1:10002"}
    http = filters(snap[LISTENER]["outbound:127.0.0.1:10001"])
    assert "envoy.filters.network.http_connection_manager" in http, "the explicit outbound wins"
    assert snap.problems == (
        "outbound:127.0.0.1:10001: VIP outbound for 'db' collides with a networking.outbound; skipped",
    )


def test_an_explicit_outbound_on_a_dns_name_binds_the_wildcard_and_takes_the_port_on_every_vip() -> None:
    snap = run(
        delegated("{address: backend.example.com, port: 80, tags: {kuma.io/service: backend}}"),
        (*SERVICE_VIPS[:2], VipOutbound("127.1.0.2", 81, "db")),
    )
    assert set(snap[LISTENER]) == {"outbound:backend.example.com:80", "outbound:127.1.0.2:81"}
    assert snap.problems == (
        "outbound:127.1.0.1:80: VIP outbound for 'backend' collides with a networking.outbound; skipped",
        "outbound:127.1.0.2:80: VIP outbound for 'db' collides with a networking.outbound; skipped",
    )


def test_equal_vips_are_one_listener_and_disagreeing_ones_none() -> None:
    vips = [
        VipOutbound("127.1.0.1", 80, "backend"),
        VipOutbound("127.1.0.1", 80, "backend"),  # two names of one service (echo_x.mesh, echo.x.mesh)
        VipOutbound("127.1.0.2", 80, "db"),
        VipOutbound("127.1.0.2", 80, "backend", "gateway"),
    ]
    snap = run(delegated(), vips)
    assert set(snap[LISTENER]) == {"outbound:127.1.0.1:80"}
    assert snap.problems == (
        "outbound:127.1.0.2:80: VIP outbounds disagree on the destination (gateway 'backend', service 'db'); skipped",
    )


# --- determinism -----------------------------------------------------------------------------------------


def test_output_and_problems_do_not_depend_on_the_order_of_vips() -> None:
    vips = [VipOutbound(f"127.1.0.{i}", 80, ("backend", "db", "grpc-api", "ghost")[i % 4]) for i in range(1, 13)]
    vips += [VipOutbound("127.0.0.1", 10001, "db"), VipOutbound("127.1.0.5", 80, "backend", "gateway")]
    vips += [VipOutbound("127.1.0.9", 80, "other"), VipOutbound("127.1.0.10", 80, "other")]
    proxy = delegated("{port: 10001, tags: {kuma.io/service: backend}}")
    first = run(proxy, vips)
    rng = random.Random(6)
    for _ in range(5):
        shuffled = list(vips)
        rng.shuffle(shuffled)
        again = run(proxy, shuffled)
        assert serialized(again) == serialized(first)
        assert again.problems == first.problems
        assert all(again.versions(t) == first.versions(t) for t in first)
    # Numeric address order, not string order: .5 and .9 before .10.
    assert [p.split(":")[1] for p in first.problems] == ["127.0.0.1", "127.1.0.5", "127.1.0.9", "127.1.0.10"]
    assert len(first[LISTENER]) == 1 + 12 - 3


# --- VipOutbound -----------------------------------------------------------------------------------------


def test_vip_outbound_names_its_listener() -> None:
    vip = VipOutbound("127.1.0.1", 8080, "edge", "gateway")
    assert vip.listener_name == "outbound:127.1.0.1:8080"
    assert vip.kind == "gateway"
    assert VipOutbound("127.1.0.1", 80, "x").kind == "service"
    with pytest.raises(AttributeError):
        vip.port = 81  # type: ignore[misc]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("::1", 80, "x"), "IPv4"),
        (("echo.mesh", 80, "x"), "IPv4"),
        (("127.1.0.1", 0, "x"), "1..65535"),
        (("127.1.0.1", 65536, "x"), "1..65535"),
        (("127.1.0.1", True, "x"), "1..65535"),
        (("127.1.0.1", 80, ""), "empty"),
        (("127.1.0.1", 80, "x", "mesh"), "kind"),
    ],
)
def test_vip_outbound_rejects_what_no_allocator_produces(args: tuple[Any, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VipOutbound(*args)
