"""The policy seam (issue 13, Deliver 3): a policy module shapes generated config through `MeshContext.policies`.

The policy kinds are test-only here (a KindDescriptor with a Struct spec, as Kuma's Universal YAML writes a
Timeout), so the seam is proven independently of the real kinds: a Timeout's `conf.connectTimeout` changes the
connect timeout of the clusters it matches and of no other, a TrafficRoute is reported as ignored, and route
and listener hooks see the matches `matching` computes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2
from google.protobuf import struct_pb2

from meshgate.resources import registry
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.model import Meta, Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from meshgate.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, MeshContext, Snapshot, generate
from meshgate.xds.clusters import CONNECT_TIMEOUT_SECONDS, cluster_name
from meshgate.xds.context import BASE_KINDS, context_kinds, policy_kinds, watched_kinds
from meshgate.xds.policies import (
    REGISTRY,
    Applied,
    Ignored,
    Match,
    PolicyModule,
    Target,
    timeout,
)
from meshgate.xds.policies.module import IGNORED_BY_KUMA, UNSUPPORTED

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FAKE_TIMEOUT = KindDescriptor(
    name="Timeout",
    singular="timeout",
    plural="timeouts",
    spec_type=struct_pb2.Struct,
    scope=Scope.MESH,
    sync=SyncDirection.GLOBAL_TO_ZONE,
    validate=lambda _: [],
    policy=True,
)
A = {"kuma.io/service": "a"}
B = {"kuma.io/service": "b"}


def policy(
    kind: str,
    name: str,
    *,
    sources: Sequence[Mapping[str, str]] = ({"kuma.io/service": "*"},),
    destinations: Sequence[Mapping[str, str]] = ({"kuma.io/service": "*"},),
    conf: Mapping[str, Any] | None = None,
    age: int = 0,
) -> Resource:
    spec = struct_pb2.Struct()
    spec.update(
        {
            "sources": [{"match": dict(s)} for s in sources],
            "destinations": [{"match": dict(d)} for d in destinations],
            "conf": dict(conf or {}),
        }
    )
    return Resource(kind, Meta(name=name, mesh="default", creation_time=T0 + timedelta(minutes=age)), spec)


PROXY = resource(factory.gateway_dataplane("edge-1", "edge", address="192.168.0.1"))
GATEWAYS = [resource(factory.gateway("edge", service="edge"))]
ROUTES = [
    resource(factory.http_route("split", prefix="/", backends=[factory.backend("a", 1), factory.backend("b", 1)])),
    resource(factory.http_route("only-b", prefix="/b", backends=[factory.backend("b")])),
]
DATAPLANES = [
    PROXY,
    resource(factory.dataplane("a-1", "a", address="10.0.0.1")),
    resource(factory.dataplane("b-1", "b", address="10.0.0.2")),
]


def snapshot(policies: Mapping[str, Sequence[Resource]] | None = None, **context: Any) -> Snapshot:
    ctx = MeshContext.build(
        "default", zone="zone-1", gateways=GATEWAYS, routes=ROUTES, dataplanes=DATAPLANES, policies=policies, **context
    )
    return generate(PROXY, ctx)


def wire(snap: Snapshot, type_url: str) -> dict[str, bytes]:
    return {name: m.SerializeToString(deterministic=True) for name, m in snap[type_url].items()}


def weighted_clusters(snap: Snapshot, path: str) -> list[str]:
    config: Any = snap[ROUTE]["edge:HTTP:8080:*"]
    (vh,) = config.virtual_hosts
    route = next(r for r in vh.routes if r.match.prefix == path or r.match.path == path)
    return [c.name for c in route.route.weighted_clusters.clusters]


# --- the kinds the zone watches -----------------------------------------------------------------------------


def test_a_registered_policy_kind_is_watched_and_read_without_other_wiring() -> None:
    base = tuple(d for d in registry.KINDS if not d.policy)
    kinds = (*base, FAKE_TIMEOUT)
    assert policy_kinds(kinds) == ("Timeout",)
    # ExternalService is not a policy but generation reads it too (a route backend may name one).
    assert context_kinds(kinds) == ("ExternalService",)
    assert watched_kinds(kinds) == frozenset({*BASE_KINDS, "Timeout", "ExternalService"})
    # Not a policy, or not sent to zones, or not mesh-scoped: not read as one.
    for other in (
        KindDescriptor(
            "Other", "other", "others", struct_pb2.Struct, Scope.MESH, SyncDirection.GLOBAL_TO_ZONE, lambda _: []
        ),
        KindDescriptor(
            "Up", "up", "ups", struct_pb2.Struct, Scope.MESH, SyncDirection.ZONE_TO_GLOBAL, lambda _: [], policy=True
        ),
        KindDescriptor(
            "Glob",
            "glob",
            "globs",
            struct_pb2.Struct,
            Scope.GLOBAL,
            SyncDirection.GLOBAL_TO_ZONE,
            lambda _: [],
            policy=True,
        ),
    ):
        assert policy_kinds((*base, other)) == ()


def test_kumas_source_destination_policies_are_read_by_the_zone_and_external_service_is_not() -> None:
    assert set(policy_kinds(registry.KINDS)) == {
        "Timeout",
        "Retry",
        "CircuitBreaker",
        "HealthCheck",
        "RateLimit",
        "FaultInjection",
        "TrafficPermission",
        "TrafficLog",
        "TrafficTrace",
        "ProxyTemplate",
        "TrafficRoute",
        "VirtualOutbound",
    }


def test_the_base_kinds_are_what_the_zone_watched_before_policies() -> None:
    assert watched_kinds(registry.KINDS) >= {"Mesh", "Secret", "MeshGateway", "MeshGatewayRoute", "Dataplane"}


# --- one policy, end to end ---------------------------------------------------------------------------------


def test_a_timeout_changes_the_connect_timeout_of_the_matching_backends_clusters_only() -> None:
    plain = snapshot()
    to_a = policy("Timeout", "slow-a", destinations=[A], conf={"connectTimeout": "2.500s"})
    shaped = snapshot({"Timeout": [to_a]})

    a_plain, b_plain = cluster_name(A), cluster_name(B)
    assert set(plain[CLUSTER]) == {a_plain, b_plain}
    # b's cluster, endpoints and the route to b alone are untouched, byte for byte.
    (a_shaped,) = set(shaped[CLUSTER]) - {b_plain}
    assert a_shaped != a_plain  # a cluster a policy shapes has a name of its own
    assert a_shaped.startswith("a-")
    assert wire(shaped, CLUSTER)[b_plain] == wire(plain, CLUSTER)[b_plain]
    assert wire(shaped, ENDPOINT)[b_plain] == wire(plain, ENDPOINT)[b_plain]
    assert wire(shaped, LISTENER) == wire(plain, LISTENER)
    assert weighted_clusters(shaped, "/b/") == [b_plain]
    assert weighted_clusters(shaped, "/") == [a_shaped, b_plain]

    cluster: Any = shaped[CLUSTER][a_shaped]
    assert cluster.connect_timeout.ToMilliseconds() == 2500
    assert plain[CLUSTER][a_plain].connect_timeout.seconds == CONNECT_TIMEOUT_SECONDS  # type: ignore[attr-defined]
    # Everything else about the cluster is as before: only the name and the timeout differ.
    cluster.name = a_plain
    cluster.connect_timeout.FromSeconds(CONNECT_TIMEOUT_SECONDS)
    assert cluster.SerializeToString(deterministic=True) == wire(plain, CLUSTER)[a_plain]
    assert shaped[ENDPOINT][a_shaped].endpoints == plain[ENDPOINT][a_plain].endpoints  # type: ignore[attr-defined]

    (applied,) = (a for a in shaped.policies.applied if a.target == Target.CLUSTER)
    assert (applied.kind, applied.target, applied.name) == ("Timeout", Target.CLUSTER, a_shaped)
    assert applied.match.winner is to_a
    # It wins the route to a too (no requestTimeout, so the route is unchanged), not the route to b only.
    routes = {(a.target, a.name) for a in shaped.policies.applied if a.target == Target.ROUTE}
    assert routes == {(Target.ROUTE, "edge:HTTP:8080:*/*/split")}
    assert wire(shaped, ROUTE) != wire(plain, ROUTE)  # only the split's cluster name differs
    assert shaped.policies.ignored == ()


def test_without_policies_the_snapshot_is_what_it_was() -> None:
    plain = snapshot()
    unmatched = policy("Timeout", "elsewhere", sources=[{"kuma.io/service": "not-edge"}], conf={"connectTimeout": "1s"})
    for snap in (snapshot({}), snapshot({"Timeout": [unmatched]})):
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            assert wire(snap, type_url) == wire(plain, type_url)
        assert snap.policies.applied == ()


def test_the_most_specific_timeout_shapes_each_cluster() -> None:
    everywhere = policy("Timeout", "everywhere", conf={"connectTimeout": "1s"}, age=9)
    for_b = policy("Timeout", "for-b", destinations=[B], conf={"connectTimeout": "3s"})
    snap = snapshot({"Timeout": [everywhere, for_b]})
    on_clusters = [a for a in snap.policies.applied if a.target == Target.CLUSTER]
    by_winner = {a.match.winner.meta.name: snap[CLUSTER][a.name] for a in on_clusters}
    assert {name: c.connect_timeout.seconds for name, c in by_winner.items()} == {"everywhere": 1, "for-b": 3}  # type: ignore[attr-defined]
    applied_b = next(a for a in on_clusters if a.match.winner is for_b)
    assert [(lo.policy.meta.name, lo.reason) for lo in applied_b.match.losers] == [
        ("everywhere", "less specific than the winner")
    ]


def test_a_kind_the_gateway_ignores_is_reported_and_changes_nothing() -> None:
    plain = snapshot()
    route = policy("TrafficRoute", "route-all")
    unknown = policy("NoSuchPolicy", "mystery")
    snap = snapshot({"TrafficRoute": [route], "NoSuchPolicy": [unknown]})
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        assert wire(snap, type_url) == wire(plain, type_url)
    assert snap.policies.ignored == (
        Ignored("NoSuchPolicy", ("mystery",), UNSUPPORTED),
        Ignored("TrafficRoute", ("route-all",), IGNORED_BY_KUMA),
    )
    assert REGISTRY.get("TrafficRoute") is not None
    assert REGISTRY.get("VirtualOutbound") is not None


# --- the route and listener hooks ---------------------------------------------------------------------------


def _route_hook(match: Match, route: route_components_pb2.Route) -> None:
    route.route.timeout.FromSeconds(int(match.winner.meta.name.rsplit("-", 1)[1]))


def _listener_hook(match: Match, listener: listener_pb2.Listener) -> None:
    listener.stat_prefix = match.winner.meta.name


def test_route_and_listener_hooks_get_the_split_route_winner() -> None:
    modules = REGISTRY.with_module(PolicyModule("RouteThing", route=_route_hook, listener=_listener_hook))
    # `for-a` is the oldest and most specific for a; `wildcard-7` is the only one for b. The split route goes to
    # the wildcard, the route to b alone too; the listener (all backends) as the split route.
    for_a = policy("RouteThing", "for-a-3", destinations=[A], age=0)
    wildcard = policy("RouteThing", "wildcard-7", age=5)
    snap = snapshot({"RouteThing": [for_a, wildcard]}, modules=modules)
    config: Any = snap[ROUTE]["edge:HTTP:8080:*"]
    timeouts = {r.match.prefix or r.match.path: r.route.timeout.seconds for r in config.virtual_hosts[0].routes}
    assert timeouts == {"/b/": 7, "/b": 7, "/": 7}
    listener: Any = snap[LISTENER]["edge:HTTP:8080"]
    assert listener.stat_prefix == "wildcard-7"
    targets = {(a.target, a.name) for a in snap.policies.applied}
    assert (Target.LISTENER, "edge:HTTP:8080") in targets
    assert (Target.ROUTE, "edge:HTTP:8080:*/*/split") in targets
    assert all(isinstance(a, Applied) for a in snap.policies.applied)


def test_timeout_module_is_registered_for_clusters_and_routes() -> None:
    module = REGISTRY.get("Timeout")
    assert module is timeout.MODULE
    assert module.targets == frozenset({Target.CLUSTER, Target.ROUTE})


def test_a_real_timeout_resource_shapes_its_cluster_as_the_struct_one_does() -> None:
    """The kind's own protobuf spec (meshgate/resources/kinds/timeout.py), as a zone stores it after KDS."""
    real = resource(factory.timeout("slow-a", destination="a", conf={"connectTimeout": "2.500s"}))
    shaped = snapshot({"Timeout": [real]})
    (a_shaped,) = set(shaped[CLUSTER]) - {cluster_name(B)}
    cluster: Any = shaped[CLUSTER][a_shaped]
    assert cluster.connect_timeout.ToMilliseconds() == 2500
    assert cluster_name(A) not in shaped[CLUSTER]
