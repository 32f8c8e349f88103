"""The pure builders behind kumactl's paths: DataplaneOverview and its filters, a proxy's DataplaneInsight from
the ADS core, and the Dataplanes a MeshGateway selects (Kuma v2.7.29's shapes and rules)."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from multidict import MultiDict

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.rest.errors import ApiError
from meshgate.rest.inspect import gateway_dataplanes
from meshgate.rest.overviews import Annotation, DataplaneFilter, dataplane_overview
from meshgate.testing import factory
from meshgate.testing.factory import SERVICE_TAG, resource
from meshgate.xds.ads import CLUSTER, LISTENER, AdsStream, ProxyId, Snapshot
from meshgate.xds.ads_registry import ProxyRegistry, dataplane_insight
from tests.rest_support import gateway

T0 = 1_767_268_800.0  # 2026-01-01T12:00:00Z


def dp(name: str, *, gateway_type: str | None = None, tags: dict[str, str] | None = None, **labels: str) -> Resource:
    more = dict(tags or {SERVICE_TAG: name})
    service = more.pop(SERVICE_TAG)
    if gateway_type is None:
        return resource(factory.dataplane(name, service, address="127.0.0.1", tags=more, labels=labels))
    return resource(
        factory.gateway_dataplane(name, service, address="127.0.0.1", type=gateway_type, tags=more, labels=labels)
    )


def test_overview_is_the_dataplanes_meta_then_its_spec_then_the_insight() -> None:
    """DataplaneOverview's REST form: meta, `dataplane` (the spec), `dataplaneInsight` only when known."""
    resource = dp("edge-1", gateway_type="BUILTIN", tags={"kuma.io/service": "edge"}, **{"kuma.io/zone": "zone-1"})
    bare = dataplane_overview(resource)
    assert bare == {
        "type": "DataplaneOverview",
        "mesh": "default",
        "name": "edge-1",
        "labels": {"kuma.io/zone": "zone-1"},
        "dataplane": {
            "networking": {
                "address": "127.0.0.1",
                "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge"}},
            }
        },
    }
    insight = {"subscriptions": [{"id": "1"}]}
    full = dataplane_overview(resource, Annotation(insight, {"zone": "zone-1", "type": "not Kuma's"}))
    assert full["dataplaneInsight"] == insight
    assert full["zone"] == "zone-1"
    assert full["type"] == "DataplaneOverview"  # a process's extras never replace Kuma's fields
    assert list(full)[-1] == "zone"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # The cases of Kuma's dataplane_overview_endpoints_test.go, on a similar set of Dataplanes.
        ({}, {"backend-1", "gateway-builtin", "gateway-delegated", "web"}),
        ({"gateway": "true"}, {"gateway-builtin", "gateway-delegated"}),
        ({"gateway": "TRUE"}, {"gateway-builtin", "gateway-delegated"}),
        ({"gateway": "builtin"}, {"gateway-builtin"}),
        ({"gateway": "delegated"}, {"gateway-delegated"}),
        ({"gateway": "false"}, {"backend-1", "web"}),
        ({"tag": ["kuma.io/service:backend"]}, {"backend-1"}),
        ({"tag": ["kuma.io/service:ck"]}, {"backend-1"}),  # a substring of the value
        ({"tag": ["kuma.io/service:backend", "version:v1"]}, {"backend-1"}),
        ({"tag": ["kuma.io/service:backend", "version:v2"]}, set()),
        ({"tag": ["tagcolumn:tag:v"]}, {"backend-1"}),  # only the first ":" separates
        ({"tag": ["kuma.io/service:*"]}, {"backend-1", "gateway-builtin", "gateway-delegated", "web"}),
        ({"tag": ["no-colon"]}, {"backend-1", "gateway-builtin", "gateway-delegated", "web"}),  # ignored
        ({"tag": ["kuma.io/service:gateway"]}, {"gateway-builtin", "gateway-delegated"}),  # gateway tags count too
        ({"name": "tew"}, {"gateway-builtin", "gateway-delegated"}),
        ({"zone": "zone-2"}, {"web"}),
        ({"zone": "zone-1"}, {"backend-1", "gateway-builtin", "gateway-delegated"}),  # unlabelled: local
    ],
)
def test_filters_are_kumas_plus_zone(query: dict[str, Any], expected: set[str]) -> None:
    dataplanes = [
        dp("backend-1", tags={"kuma.io/service": "backend", "version": "v1", "tagcolumn": "tag:v1"}),
        dp("gateway-builtin", gateway_type="BUILTIN", tags={"kuma.io/service": "gateway"}),
        dp("gateway-delegated", gateway_type="DELEGATED", tags={"kuma.io/service": "gateway"}),
        dp("web", tags={"kuma.io/service": "web"}, **{"kuma.io/zone": "zone-2"}),
    ]
    params: MultiDict[str] = MultiDict()
    for key, value in query.items():
        for v in value if isinstance(value, list) else [value]:
            params.add(key, v)
    wanted = DataplaneFilter.parse(params)
    assert {d.meta.name for d in dataplanes if wanted.matches(d, local_zone="zone-1")} == expected


def test_a_bad_gateway_mode_or_an_empty_zone_is_a_400_naming_the_field() -> None:
    with pytest.raises(ApiError) as caught:
        DataplaneFilter.parse(MultiDict({"gateway": "Maybe"}))
    assert caught.value.status == 400
    assert caught.value.title == "Could not retrieve resources"
    assert [(p.field, p.reason) for p in caught.value.invalid_parameters] == [
        ("gateway", "should use `true`, `false`, 'builtin' or 'delegated' instead of maybe")
    ]
    with pytest.raises(ApiError) as caught:
        DataplaneFilter.parse(MultiDict({"zone": ""}))
    assert caught.value.status == 400


def _request(type_url: str, nonce: str = "", error: str = "") -> discovery_pb2.DeltaDiscoveryRequest:
    req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=nonce)
    if error:
        req.error_detail.message = error
    return req


def test_a_proxys_streams_become_kumas_discovery_subscriptions() -> None:
    """Each stream the registry remembers (the open ones and the last one) is a DiscoverySubscription, oldest
    first; counters are strings; cds, eds, lds and rds have their own, `total` sums every type; a closed
    stream has a disconnectTime; lastUpdateTime is the last request or response."""
    registry = ProxyRegistry()
    proxy = ProxyId("default", "edge-1")
    first = registry.open(AdsStream(proxy), "ipv4:127.0.0.1:1", T0)
    registry.close(first, T0 + 5, "reset")
    record = registry.get(proxy)
    assert record is not None
    zeros = {"responsesSent": "0", "responsesAcknowledged": "0", "responsesRejected": "0"}
    assert dataplane_insight(record, "zone-cp-1") == {
        "subscriptions": [
            {
                "id": first.uid,
                "controlPlaneInstanceId": "zone-cp-1",
                "connectTime": "2026-01-01T12:00:00Z",
                "disconnectTime": "2026-01-01T12:00:05Z",
                "status": {"total": zeros, "cds": zeros, "eds": zeros, "lds": zeros, "rds": zeros},
            }
        ]
    }

    stream = AdsStream(proxy)
    second = registry.open(stream, "ipv4:127.0.0.1:2", T0 + 10)
    overlapping = registry.open(AdsStream(proxy), "ipv4:127.0.0.1:3", T0 + 11)
    empty = Snapshot.of({})
    stream.receive(_request(CLUSTER), T0 + 10)
    (cds,) = stream.next_responses(empty, T0 + 11)
    stream.receive(_request(CLUSTER, nonce=cds.nonce), T0 + 12)
    stream.receive(_request(LISTENER), T0 + 12)
    (lds,) = stream.next_responses(empty, T0 + 12)
    stream.receive(_request(LISTENER, nonce=lds.nonce, error="bad listener"), T0 + 12.5)

    current, newest = dataplane_insight(record, "zone-cp-1")["subscriptions"]
    assert [current["id"], newest["id"]] == [second.uid, overlapping.uid]
    assert "disconnectTime" not in current
    assert current["connectTime"] == "2026-01-01T12:00:10Z"
    status = current["status"]
    assert status["lastUpdateTime"] == "2026-01-01T12:00:12.5Z"
    assert status["total"] == {"responsesSent": "2", "responsesAcknowledged": "1", "responsesRejected": "1"}
    assert status["cds"] == {"responsesSent": "1", "responsesAcknowledged": "1", "responsesRejected": "0"}
    assert status["lds"] == {"responsesSent": "1", "responsesAcknowledged": "0", "responsesRejected": "1"}
    assert status["eds"] == status["rds"] == zeros
    assert "lastUpdateTime" not in newest["status"]  # nothing exchanged on it yet


def test_gateway_dataplanes_are_the_builtin_ones_its_selectors_match() -> None:
    """Kuma's testdata inspect_gateway_dataplanes.json: of gateway-1 (its gateway), othergateway-1 and redis-1,
    only gateway-1; a delegated gateway Dataplane with matching tags is not a MeshGateway's."""
    edge = codec.load(gateway("gateway") | {"selectors": [{"match": {"kuma.io/service": "gateway"}}]})
    dataplanes = [
        dp("gateway-1", gateway_type="BUILTIN", tags={"kuma.io/service": "gateway"}),
        dp("othergateway-1", gateway_type="BUILTIN", tags={"kuma.io/service": "othergateway"}),
        dp("redis-1", tags={"kuma.io/service": "redis"}),
        dp("delegated-1", gateway_type="DELEGATED", tags={"kuma.io/service": "gateway"}),
    ]
    assert gateway_dataplanes(edge, dataplanes) == {
        "total": 1,
        "items": [{"dataplane": {"mesh": "default", "name": "gateway-1"}}],
    }
    wildcard = codec.load(gateway("any") | {"selectors": [{"match": {"kuma.io/service": "*"}}]})
    assert gateway_dataplanes(wildcard, dataplanes)["total"] == 2
    assert gateway_dataplanes(edge, []) == {"total": 0, "items": []}
