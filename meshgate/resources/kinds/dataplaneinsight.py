"""DataplaneInsight: what a zone observed of one Dataplane's proxy, its xDS subscriptions (Kuma 2.7
`mesh.v1alpha1.DataplaneInsight`).

Mesh-scoped, named as its Dataplane. Written by the zone the proxy connects to (`zone_cp/dataplane_insights.py`,
Kuma's DataplaneInsightSink) and removed with its Dataplane; KDS carries it up to the global only (Kuma's proto
options `kds.send_to_global: true`; `KDSFlags: ZoneToGlobalFlag`), where `dataplanes/_overview` serves it as
`dataplaneInsight`. Read-only over the API on both sides (`ws.read_only`), at `/meshes/{mesh}/dataplane-insights`
(Kuma's `WsPath`). A zone names it for the global as it names the Dataplane (`<name>-<hash(mesh, name, zone,
namespace)>`, with `kuma.io/display-name`), so on the global the insight and its Dataplane share one name.

Rules are Kuma's protoc-gen-validate ones on DiscoverySubscription: `id` and `controlPlaneInstanceId` non-empty,
`connectTime` and `status` present.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.dataplane_insight_pb2 import DataplaneInsight
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, DataplaneInsight, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    for i, sub in enumerate(spec.subscriptions):
        path = Path("subscriptions").index(i)
        if not sub.id:
            out.add(path.field("id"), "must not be empty")
        if not sub.control_plane_instance_id:
            out.add(path.field("controlPlaneInstanceId"), "must not be empty")
        if not sub.HasField("connect_time"):
            out.add(path.field("connectTime"), "must be set")
        if not sub.HasField("status"):
            out.add(path.field("status"), "must be set")


DESCRIPTOR = KindDescriptor(
    name=kinds.DATAPLANE_INSIGHT,
    singular="dataplane-insight",
    plural="dataplane-insights",
    spec_type=DataplaneInsight,
    scope=Scope.MESH,
    sync=SyncDirection.ZONE_TO_GLOBAL,
    validate=validate,
    # Kuma's `ReadOnly: true`: only the zone's xDS server writes one, never a user.
    writable_on_global=False,
    writable_on_zone=False,
    aliases=("dataplaneinsight", "dataplaneinsights"),
)
