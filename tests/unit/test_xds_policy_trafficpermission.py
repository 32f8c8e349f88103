"""TrafficPermission's gate (interim gateway-side enforcement) on generated messages."""

from __future__ import annotations

from typing import Any

from envoy.config.listener.v3 import listener_pb2

from meshgate.testing import factory
from meshgate.xds import MeshContext, generate
from meshgate.xds.policies.denial import FORBIDDEN_PREFIX, RBAC_FILTER
from meshgate.xds.policies.trafficpermission import NO_PERMISSION
from meshgate.xds.snapshot import LISTENER, ROUTE, Snapshot


def _snapshot(mesh: dict[str, Any], *permissions: dict[str, Any]) -> Snapshot:
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=factory.resource(mesh),
        gateways=[factory.resource(factory.gateway("edge"))],
        routes=[factory.resource(factory.http_route())],
        dataplanes=[factory.resource(factory.dataplane("backend-1", "backend"))],
        policies={"TrafficPermission": [factory.resource(p) for p in permissions]},
    )
    return generate(factory.resource(factory.gateway_dataplane("edge-1")), ctx)


def test_with_mtls_and_no_permission_the_backend_is_denied_and_reported() -> None:
    snap = _snapshot(factory.mtls_mesh())
    assert FORBIDDEN_PREFIX + "backend" in str(next(iter(snap.resources[ROUTE].values())))
    listener = next(iter(snap.resources[LISTENER].values()))
    assert isinstance(listener, listener_pb2.Listener)
    assert RBAC_FILTER in str(listener.filter_chains[0].filters[0].typed_config)
    (denied,) = snap.policies.denied
    assert (denied.kind, dict(denied.backend)["kuma.io/service"], denied.reason) == (
        "TrafficPermission",
        "backend",
        NO_PERMISSION,
    )


def test_a_permitted_backend_and_a_mesh_without_mtls_change_nothing() -> None:
    plain = _snapshot(factory.mesh())
    assert plain.policies.denied == ()
    permitted = _snapshot(factory.mtls_mesh(), factory.traffic_permission(source="edge", destination="backend"))
    assert permitted.policies.denied == ()
    assert permitted.resources == plain.resources


def test_the_most_specific_destination_is_selected_and_its_sources_decide() -> None:
    snap = _snapshot(
        factory.mtls_mesh(),
        factory.traffic_permission("everyone", source="*", destination="*"),
        factory.traffic_permission("only-others", source="someone-else", destination="backend"),
    )
    (denied,) = snap.policies.denied
    assert "only-others" in denied.reason
