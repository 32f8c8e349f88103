"""The shared resource factory: every builder's document is valid as built, and its Resource view round-trips."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from meshgate.resources import codec, registry
from meshgate.resources.errors import ValidationError
from meshgate.testing import factory
from meshgate.testing.factory import resource

DOCS = {
    "mesh": factory.mesh("m", labels={"team": "a"}),
    "mtls_mesh": factory.mtls_mesh("m"),
    "gateway": factory.gateway("edge", listeners=[factory.listener(8443, "HTTP", hostname="a.example.com")]),
    "http_route": factory.http_route("web", hostnames=["a.example.com"], backends=[factory.backend("b", weight=2)]),
    "tcp_route": factory.tcp_route("db", backends=[factory.backend("db", version="v1")]),
    "dataplane": factory.dataplane("web-1", "web", "api", tags={"version": "v1"}),
    "gateway_dataplane": factory.gateway_dataplane("edge-1", type="DELEGATED"),
    "secret": factory.secret("s", b"\x00bytes"),
    "gateway_instance": factory.gateway_instance("edge", replicas=2),
    "zone_ingress": factory.zone_ingress(advertised_address="203.0.113.1", advertised_port=10001),
    **{kind: build() for kind, build in factory.POLICY_BUILDERS.items()},
    "timeout to one service": factory.timeout("t", source="web", destination="backend"),
    "external service with TLS": factory.external_service(
        "es", address="api.example.com:443", tls={"enabled": True, "serverName": "api.example.com"}
    ),
}


@pytest.mark.parametrize("name", sorted(DOCS))
def test_each_document_is_valid_and_its_resource_encodes_back(name: str) -> None:
    doc: dict[str, Any] = DOCS[name]
    loaded = resource(doc)
    assert codec.validate(loaded) == []
    assert codec.encode(loaded) == codec.encode(codec.decode(doc))
    assert (loaded.kind, loaded.meta.name) == (doc["type"], doc["name"])


def test_dataplane_inbounds_take_consecutive_ports_and_the_extra_tags() -> None:
    inbound = factory.dataplane("d", "a", "b", port=9000, tags={"v": "1"})["networking"]["inbound"]
    assert inbound == [
        {"port": 9000, "tags": {"kuma.io/service": "a", "v": "1"}},
        {"port": 9001, "tags": {"kuma.io/service": "b", "v": "1"}},
    ]


def test_an_empty_listener_list_stays_empty_and_check_false_skips_validation() -> None:
    doc = factory.gateway("g", listeners=[])
    assert doc["conf"]["listeners"] == []
    with pytest.raises(ValidationError):
        resource(doc)
    assert resource(doc, check=False).meta.name == "g"


def test_created_sets_the_creation_time() -> None:
    when = datetime(2024, 1, 1, tzinfo=UTC)
    assert resource(factory.mesh(), created=when).meta.creation_time == when


def test_there_is_one_policy_builder_per_policy_kind() -> None:
    assert [build()["type"] for build in factory.POLICY_BUILDERS.values()] == list(factory.POLICY_BUILDERS)
    assert set(factory.POLICY_BUILDERS) <= {d.name for d in registry.KINDS}
