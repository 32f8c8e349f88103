"""Peers that speak KDS the way Kuma 2.7 does, for interoperability tests against real meshgate processes.

The kind lists are Kuma v2.7.29's own: a zone subscribes on GlobalToZoneSync to every kind with
`GlobalToZoneSelector` (pkg/kds/zone/components.go:121), a global asks a zone on ZoneToGlobalSync for every
kind with `ZoneToGlobalFlag` (pkg/kds/global/components.go:179-182); the 14 `Mesh*` policies carry both flags
(e.g. pkg/plugins/policies/meshtimeout/api/v1alpha1/zz_generated.resource.go:138). Requests are built as
pkg/kds/v2/client/stream.go:198-301 builds them: `node` with id and metadata on the first request per kind,
`node{id}` on ACKs and NACKs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import anyio
import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from meshgate.api.mesh.v1alpha1 import kds_pb2_grpc
from meshgate.kds.envelope import to_wire
from meshgate.kds.naming import hashed_name  # Kuma's pkg/kds/hash, checked against its vectors (test_kds_core)
from meshgate.resources.model import Resource

__all__ = [
    "KUMA_GLOBAL_TO_ZONE_KINDS",
    "KUMA_POLICIES",
    "KUMA_ZONE_FEATURES_METADATA",
    "KUMA_ZONE_TO_GLOBAL_KINDS",
    "FakeKumaGlobal",
    "kuma_ack",
    "kuma_global_resource",
    "kuma_node",
    "kuma_subscribe",
    "kuma_zone_resource",
]

KUMA_POLICIES = (
    "MeshAccessLog",
    "MeshCircuitBreaker",
    "MeshFaultInjection",
    "MeshHealthCheck",
    "MeshHTTPRoute",
    "MeshLoadBalancingStrategy",
    "MeshMetric",
    "MeshProxyPatch",
    "MeshRateLimit",
    "MeshRetry",
    "MeshTCPRoute",
    "MeshTimeout",
    "MeshTrace",
    "MeshTrafficPermission",
)
KUMA_GLOBAL_TO_ZONE_KINDS = (
    "CircuitBreaker",
    "ExternalService",
    "FaultInjection",
    "HealthCheck",
    "Mesh",
    "MeshGateway",
    "MeshGatewayRoute",
    "ProxyTemplate",
    "RateLimit",
    "Retry",
    "ServiceInsight",
    "Timeout",
    "TrafficLog",
    "TrafficPermission",
    "TrafficRoute",
    "TrafficTrace",
    "VirtualOutbound",
    "ZoneIngress",
    "MeshService",
    "Config",
    "Secret",
    "GlobalSecret",
    *KUMA_POLICIES,
)
KUMA_ZONE_TO_GLOBAL_KINDS = (
    "Dataplane",
    "DataplaneInsight",
    "MeshGateway",
    "ZoneIngress",
    "ZoneIngressInsight",
    "ZoneEgress",
    "ZoneEgressInsight",
    "MeshService",
    *KUMA_POLICIES,
)
# A Kuma zone's call metadata: the `features` key repeated, one value each (pkg/kds/mux/client.go:100-105).
KUMA_ZONE_FEATURES_METADATA = (
    ("kds-version", "v3"),
    ("features", "zone-ping-health"),
    ("features", "hash-suffix"),
)


def _kuma_named(r: Resource, name: str, labels: dict[str, str]) -> Resource:
    """pkg/kds/util/meta.go WithName: the display name label keeps the old name unless already set."""
    labels.setdefault("kuma.io/display-name", r.meta.name)
    return r.with_meta(name=name, labels=labels)


def kuma_zone_resource(r: Resource, zone: str, *, hash_suffix: bool = True) -> discovery_pb2.Resource:
    """`r` as a Kuma 2.7 zone sends it up (pkg/kds/context/context.go:94-103, zoneMappers): labelled
    `kuma.io/origin: zone` and `kuma.io/zone`, renamed `hash.HashedName(mesh, displayName, zone, namespace)`.
    `hash_suffix=False`: a zone older than 2.6, which sends the name as it is."""
    labels = {**r.meta.labels, "kuma.io/origin": "zone", "kuma.io/zone": zone}
    if not hash_suffix:
        return to_wire(r.with_meta(labels=labels))
    display = r.meta.labels.get("kuma.io/display-name") or r.meta.name
    namespace = labels.get("k8s.kuma.io/namespace", "")
    return to_wire(_kuma_named(r, hashed_name(r.meta.mesh, display, zone, namespace), labels))


def kuma_global_resource(r: Resource) -> discovery_pb2.Resource:
    """`r` as a Kuma 2.7 global sends it to a zone with `hash-suffix` (context.go:70-91, globalMappers):
    labelled `kuma.io/origin: global`, and a mesh-scoped kind other than Secret renamed
    `hash.HashedName(mesh, displayName)`."""
    labels = {**r.meta.labels, "kuma.io/origin": "global"}
    if not r.meta.mesh or r.kind == "Secret":
        return to_wire(r.with_meta(labels=labels))
    display = r.meta.labels.get("kuma.io/display-name") or r.meta.name
    return to_wire(_kuma_named(r, hashed_name(r.meta.mesh, display), labels))


def kuma_node(node_id: str, control_plane_id: str, config: str = "") -> base_pb2.Node:
    """node of a first request per kind (pkg/kds/v2/client/stream.go:211-228)."""
    node = base_pb2.Node(id=node_id)
    md = node.metadata.fields
    md["version"].struct_value.update({"kumaCp": {"version": "2.7.29", "gitTag": "2.7.29"}})
    md["config"].string_value = config
    md["control-plane-id"].string_value = control_plane_id
    md["features"].list_value.extend(["zone-token", "hash-suffix"])
    return node


def kuma_subscribe(kind: str, node: base_pb2.Node) -> discovery_pb2.DeltaDiscoveryRequest:
    return discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=kind, resource_names_subscribe=["*"])


def kuma_ack(resp: discovery_pb2.DeltaDiscoveryResponse, node_id: str) -> discovery_pb2.DeltaDiscoveryRequest:
    """pkg/kds/v2/client/stream.go:271-277: the nonce, the kind and node{id}."""
    return discovery_pb2.DeltaDiscoveryRequest(
        node=base_pb2.Node(id=node_id), type_url=resp.type_url, response_nonce=resp.nonce
    )


@dataclass
class FakeKumaGlobal(kds_pb2_grpc.KDSSyncServiceServicer):  # type: ignore[misc]
    """A global serving KDSSyncService as Kuma 2.7's does, in-process (GlobalKDSService is not served: a zone
    gets UNIMPLEMENTED for health checks and config dumps, as from a global without them).

    GlobalToZoneSync: each subscription gets an empty first response (or `seed`'s resources for its kind),
    and ACKs are recorded. ZoneToGlobalSync: subscribes to the 22 zone-to-global kinds and ACKs every
    response. `end_at_once` ends every call as soon as it opens (a global that keeps failing)."""

    seed: dict[str, Sequence[discovery_pb2.Resource]] = field(default_factory=dict)
    end_at_once: bool = False
    attempts: list[float] = field(default_factory=list)  # anyio.current_time() of each GlobalToZoneSync call
    call_metadata: list[tuple[tuple[str, str], ...]] = field(default_factory=list)
    requests: list[discovery_pb2.DeltaDiscoveryRequest] = field(default_factory=list)  # on GlobalToZoneSync
    responses: list[discovery_pb2.DeltaDiscoveryResponse] = field(default_factory=list)  # on ZoneToGlobalSync

    async def GlobalToZoneSync(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        self.attempts.append(anyio.current_time())
        self.call_metadata.append(tuple((str(k), str(v)) for k, v in context.invocation_metadata() or ()))
        if self.end_at_once:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this global ends every session")
        nonce = 0
        async for req in request_iterator:
            self.requests.append(req)
            if not req.response_nonce:
                nonce += 1
                await context.write(
                    discovery_pb2.DeltaDiscoveryResponse(
                        type_url=req.type_url, nonce=str(nonce), resources=list(self.seed.get(req.type_url, ()))
                    )
                )

    async def ZoneToGlobalSync(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryResponse],
        context: grpc.aio.ServicerContext,  # type: ignore[type-arg]
    ) -> None:
        if self.end_at_once:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "this global ends every session")
        zone = dict(context.invocation_metadata() or ()).get("client-id", "")
        # pkg/kds/global/components.go:179: the global's stream names the zone as node id.
        node = kuma_node(str(zone), "global-instance")
        for kind in KUMA_ZONE_TO_GLOBAL_KINDS:
            await context.write(kuma_subscribe(kind, node))
        async for resp in request_iterator:
            self.responses.append(resp)
            await context.write(kuma_ack(resp, str(zone)))
