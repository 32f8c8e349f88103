"""DataplaneInsight: Kuma 2.7.29's wire form and REST form, its protoc-gen-validate rules, and its descriptor
(read-only, zone to global only, named on the global as its Dataplane)."""

from __future__ import annotations

from typing import Any

import pytest

from meshgate.api.mesh.v1alpha1.dataplane_insight_pb2 import DataplaneInsight
from meshgate.kds import ownership
from meshgate.resources import codec, registry
from meshgate.resources.descriptor import Scope, SyncDirection
from meshgate.resources.errors import ValidationError
from meshgate.resources.model import Meta, Resource

# A DataplaneInsight as Kuma's API serves it (protojson: camelCase, uint64 as strings).
KUMA_DOC: dict[str, Any] = {
    "type": "DataplaneInsight",
    "mesh": "default",
    "name": "web-1",
    "subscriptions": [
        {
            "id": "4bd0c1c4-5ac2-4a9e-9d4e-7ef1c3b2d001",
            "controlPlaneInstanceId": "zone-cp-1",
            "connectTime": "2026-01-01T12:00:00Z",
            "disconnectTime": "2026-01-01T12:05:00Z",
            "status": {
                "lastUpdateTime": "2026-01-01T12:04:59Z",
                "total": {"responsesSent": "4", "responsesAcknowledged": "4"},
                "cds": {"responsesSent": "1", "responsesAcknowledged": "1"},
            },
            "version": {
                "kumaDp": {"version": "2.7.29", "gitTag": "2.7.29", "kumaCpCompatible": True},
                "envoy": {"version": "1.29.2", "build": "abc", "kumaDpCompatible": True},
                "dependencies": {"coredns": "1.11.1"},
            },
            "generation": 3,
        }
    ],
    "mTLS": {
        "certificateExpirationTime": "2026-01-02T12:00:00Z",
        "lastCertificateRegeneration": "2026-01-01T12:00:00Z",
        "certificateRegenerations": 1,
        "issuedBackend": "ca-1",
        "supportedBackends": ["ca-1"],
    },
}


def test_kumas_document_round_trips_with_kumas_field_names() -> None:
    resource = codec.load(KUMA_DOC)
    assert isinstance(resource.spec, DataplaneInsight)
    assert resource.spec.subscriptions[0].control_plane_instance_id == "zone-cp-1"
    assert resource.spec.subscriptions[0].status.total.responses_sent == 4
    assert codec.encode(resource) == KUMA_DOC


def test_field_numbers_are_kumas() -> None:
    """api/mesh/v1alpha1/dataplane_insight.proto (v2.7.29): the wire form is Kuma's, so a Kuma zone's insight
    decodes here and ours there."""
    numbers = {f.name: f.number for f in DataplaneInsight.DESCRIPTOR.fields}
    assert numbers == {"subscriptions": 1, "mTLS": 2}
    sub = DataplaneInsight.DESCRIPTOR.fields_by_name["subscriptions"].message_type
    assert {f.name: f.number for f in sub.fields} == {
        "id": 1,
        "control_plane_instance_id": 2,
        "connect_time": 3,
        "disconnect_time": 4,
        "status": 5,
        "version": 6,
        "generation": 7,
    }
    status = sub.fields_by_name["status"].message_type
    assert [f.name for f in status.fields] == ["last_update_time", "total", "cds", "eds", "lds", "rds"]


def test_a_subscription_needs_what_kumas_validate_rules_require() -> None:
    doc = {"type": "DataplaneInsight", "mesh": "default", "name": "web-1", "subscriptions": [{"generation": 1}]}
    with pytest.raises(ValidationError) as caught:
        codec.load(doc)
    assert [(v.field, v.message) for v in caught.value.violations] == [
        ("subscriptions[0].id", "must not be empty"),
        ("subscriptions[0].controlPlaneInstanceId", "must not be empty"),
        ("subscriptions[0].connectTime", "must be set"),
        ("subscriptions[0].status", "must be set"),
    ]
    assert codec.load({"type": "DataplaneInsight", "mesh": "default", "name": "web-1"}).spec == DataplaneInsight()


def test_descriptor_is_kumas() -> None:
    """zz_generated.resources.go: ReadOnly, ScopeMesh, ZoneToGlobalFlag, WsPath dataplane-insights."""
    d = registry.get("DataplaneInsight")
    assert (d.plural, d.scope, d.sync) == ("dataplane-insights", Scope.MESH, SyncDirection.ZONE_TO_GLOBAL)
    assert (d.writable_on_global, d.writable_on_zone) == (False, False)
    assert d.sends_to_global()
    assert not d.sends_to_zone()
    assert registry.lookup("dataplane-insight") is registry.lookup("DataplaneInsights") is d
    assert d.spec_type_url == "type.googleapis.com/kuma.mesh.v1alpha1.DataplaneInsight"


def test_a_zone_names_an_insight_for_the_global_as_its_dataplane() -> None:
    """context.go's HashSuffixMapper hashes mesh, name, zone and namespace: a Dataplane and its insight share a
    name on the global, which is how the global's overview finds a Dataplane's insight."""
    insight = codec.load(KUMA_DOC)
    dataplane = Resource("Dataplane", Meta(name="web-1", mesh="default"), DataplaneInsight())
    sent = ownership.to_global("zone-1", insight)
    assert sent.meta.name == ownership.to_global("zone-1", dataplane).meta.name != "web-1"
    assert sent.meta.labels == {
        "kuma.io/origin": "zone",
        "kuma.io/zone": "zone-1",
        "kuma.io/display-name": "web-1",
    }
    assert ownership.global_accepts("zone-1", sent) is None
    assert not ownership.global_sends(ownership.stored_on_global("zone-1", sent, hash_suffix=True))
