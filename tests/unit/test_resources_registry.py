"""The kind registry: lookups by name and alias, and the sync lists derived from descriptors."""

from __future__ import annotations

import pytest

from meshgate.resources import registry
from meshgate.resources.descriptor import KindDescriptor, SyncDirection
from meshgate.resources.errors import UnknownKindError


def names(descriptors: tuple[KindDescriptor, ...]) -> list[str]:
    return [d.name for d in descriptors]


def test_kinds_in_dependency_order() -> None:
    assert names(registry.KINDS) == [
        "Mesh",
        "Secret",
        "MeshGateway",
        "MeshGatewayRoute",
        "Dataplane",
        "Zone",
        "MeshGatewayInstance",
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
        "ExternalService",
        "TrafficRoute",
        "VirtualOutbound",
        "ZoneIngress",
        "ZoneEgress",
        "DataplaneInsight",
    ]


def test_sync_lists_are_derived_and_put_mesh_first() -> None:
    assert names(registry.kinds_sent_to_zone()) == [
        "Mesh",
        "Secret",
        "MeshGateway",
        "MeshGatewayRoute",
        "Dataplane",
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
        "ExternalService",
        "TrafficRoute",
        "VirtualOutbound",
        "ZoneIngress",
    ]
    assert names(registry.kinds_sent_to_global()) == [
        "MeshGateway",
        "Dataplane",
        "ZoneIngress",
        "ZoneEgress",
        "DataplaneInsight",
    ]
    for descriptor in registry.KINDS:
        down = (SyncDirection.BOTH, SyncDirection.GLOBAL_TO_ZONE, SyncDirection.ZONE_TO_ALL)
        assert (descriptor in registry.kinds_sent_to_zone()) == (descriptor.sync in down)


@pytest.mark.parametrize(
    ("alias", "kind"),
    [
        ("Mesh", "Mesh"),
        ("mesh", "Mesh"),
        ("meshes", "Mesh"),
        ("MESHES", "Mesh"),
        ("MeshGateway", "MeshGateway"),
        ("meshgateway", "MeshGateway"),
        ("meshgateways", "MeshGateway"),
        ("meshgatewayroute", "MeshGatewayRoute"),
        ("meshgatewayroutes", "MeshGatewayRoute"),
        ("MeshGatewayRoute", "MeshGatewayRoute"),
        ("dataplane", "Dataplane"),
        ("dataplanes", "Dataplane"),
        ("DataPlane", "Dataplane"),
        ("meshgatewayinstances", "MeshGatewayInstance"),
        # Kuma's REST path segments and kumactl's names for the policies
        ("timeouts", "Timeout"),
        ("retries", "Retry"),
        ("circuit-breakers", "CircuitBreaker"),
        ("health-checks", "HealthCheck"),
        ("rate-limits", "RateLimit"),
        ("fault-injections", "FaultInjection"),
        ("traffic-permissions", "TrafficPermission"),
        ("traffic-logs", "TrafficLog"),
        ("traffic-traces", "TrafficTrace"),
        ("proxytemplates", "ProxyTemplate"),
        ("external-services", "ExternalService"),
        ("traffic-routes", "TrafficRoute"),
        ("virtual-outbounds", "VirtualOutbound"),
        ("traffic-route", "TrafficRoute"),
        ("circuitbreaker", "CircuitBreaker"),
        # Kuma's REST path segment (`/zone-ingresses`) and kumactl's names
        ("zone-ingresses", "ZoneIngress"),
        ("zone-ingress", "ZoneIngress"),
        ("zoneingress", "ZoneIngress"),
    ],
)
def test_lookup(alias: str, kind: str) -> None:
    assert registry.lookup(alias).name == kind


def test_get_is_exact() -> None:
    assert registry.get("MeshGateway").plural == "meshgateways"
    with pytest.raises(UnknownKindError) as caught:
        registry.get("meshgateway")
    assert caught.value.kind == "meshgateway"


@pytest.mark.parametrize("alias", ["gateway", "", "meshgatewayinstance-", "zoneinsights"])
def test_unknown_alias(alias: str) -> None:
    with pytest.raises(UnknownKindError):
        registry.lookup(alias)


def test_descriptors_carry_their_kuma_type_urls() -> None:
    assert [d.spec_type_url.rpartition("/")[2] for d in registry.KINDS] == [
        "kuma.mesh.v1alpha1.Mesh",
        "kuma.system.v1alpha1.Secret",
        "kuma.mesh.v1alpha1.MeshGateway",
        "kuma.mesh.v1alpha1.MeshGatewayRoute",
        "kuma.mesh.v1alpha1.Dataplane",
        "kuma.system.v1alpha1.Zone",
        "kuma.mesh.v1alpha1.MeshGatewayInstance",  # meshgate's own message: Kuma has only the Kubernetes CRD
        "kuma.mesh.v1alpha1.Timeout",
        "kuma.mesh.v1alpha1.Retry",
        "kuma.mesh.v1alpha1.CircuitBreaker",
        "kuma.mesh.v1alpha1.HealthCheck",
        "kuma.mesh.v1alpha1.RateLimit",
        "kuma.mesh.v1alpha1.FaultInjection",
        "kuma.mesh.v1alpha1.TrafficPermission",
        "kuma.mesh.v1alpha1.TrafficLog",
        "kuma.mesh.v1alpha1.TrafficTrace",
        "kuma.mesh.v1alpha1.ProxyTemplate",
        "kuma.mesh.v1alpha1.ExternalService",
        "kuma.mesh.v1alpha1.TrafficRoute",
        "kuma.mesh.v1alpha1.VirtualOutbound",
        "kuma.mesh.v1alpha1.ZoneIngress",
        "kuma.mesh.v1alpha1.ZoneEgress",
        "kuma.mesh.v1alpha1.DataplaneInsight",
    ]
