"""MeshGatewayInstance on Universal zones: gateway capacity that the zone runs itself.

Kuma 2.7 has MeshGatewayInstance only on Kubernetes, as a CRD that becomes a Deployment and a Service. meshgate
also accepts it on a Universal zone, where the zone runs and supervises `replicas` builtin gateway data planes as
child processes (zone_cp/provisioning.py). The Universal form mirrors the CRD's spec (the field names and
semantics of meshgate/k8s/instance.py):

    type: MeshGatewayInstance
    mesh: default
    name: edge
    replicas: 2                 # default 1; 0 keeps the instance with no proxies
    serviceType: LoadBalancer   # LoadBalancer (default), ClusterIP or NodePort: informational on Universal
    resources: {limits: {cpu: 500m}, requests: {memory: 64Mi}}   # optional, informational on Universal
    tags: {kuma.io/service: edge}   # the service tag defaults to the instance's name (`<name>`) on Universal

The service tag default differs from Kubernetes (`<name>_<namespace>_svc`) because a Universal instance has no
namespace: `<name>` is what a user would write in a MeshGateway selector.

The protobuf message is meshgate's own (`kuma.mesh.v1alpha1.MeshGatewayInstance`); the kind is never synced
(the zone that runs the proxies owns it), and the global refuses it (405), as Kuma says to create it in a zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from meshgate.api.mesh.v1alpha1.gateway_instance_pb2 import MeshGatewayInstance
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.quantity import QuantityError, canonical
from meshgate.resources.tags import TAG_SERVICE, check_tags

__all__ = ["DEFAULT_REPLICAS", "DESCRIPTOR", "ServiceType", "proxy_tags", "replicas", "validate"]

DEFAULT_REPLICAS = 1
_INT32_MAX = 2**31 - 1


class ServiceType(StrEnum):
    """`serviceType`, as the CRD's (the Kubernetes Service type of the instance)."""

    LOAD_BALANCER = "LoadBalancer"
    CLUSTER_IP = "ClusterIP"
    NODE_PORT = "NodePort"


def replicas(spec: Any) -> int:
    """`replicas`, defaulted: absent means 1."""
    return int(spec.replicas.value) if spec.HasField("replicas") else DEFAULT_REPLICAS


def proxy_tags(resource: Resource) -> dict[str, str]:
    """The tags every gateway Dataplane of the instance carries: `tags`, with `kuma.io/service` defaulted to
    the instance's name."""
    spec: Any = resource.spec
    tags = dict(spec.tags)
    tags.setdefault(TAG_SERVICE, resource.meta.name)
    return tags


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, MeshGatewayInstance, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    if spec.HasField("replicas") and spec.replicas.value < 0:
        out.add(Path("replicas"), "must be greater than or equal to 0")
    if spec.service_type:
        try:
            ServiceType(spec.service_type)
        except ValueError:
            allowed = ", ".join(t.value for t in ServiceType)
            out.add(Path("serviceType"), f"must be one of {allowed}")
    # As the Kubernetes controller does: the service tag is optional (defaulted), other tags follow Kuma's rules.
    check_tags(out, Path("tags"), dict(spec.tags))
    if spec.HasField("resources"):
        _check_quantities(out, Path("resources").field("limits"), spec.resources.limits)
        _check_quantities(out, Path("resources").field("requests"), spec.resources.requests)


def _check_quantities(out: Violations, path: Path, quantities: Mapping[str, str]) -> None:
    for name, quantity in sorted(quantities.items()):
        try:
            canonical(quantity)
        except QuantityError as exc:
            out.add(path.key(name), str(exc))


DESCRIPTOR = KindDescriptor(
    name=kinds.MESH_GATEWAY_INSTANCE,
    singular="meshgatewayinstance",
    plural="meshgatewayinstances",
    spec_type=MeshGatewayInstance,
    scope=Scope.MESH,
    sync=SyncDirection.NONE,  # owned by the zone that runs its proxies; never synced
    validate=validate,
    writable_on_global=False,  # "create it in a zone, never on the global": 405 there
    writable_on_zone=True,
)
