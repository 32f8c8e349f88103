"""ZoneIngress rules, Kuma 2.7.29's zone_ingress_validator_test.go cases, and its descriptor."""

from __future__ import annotations

import pytest

from meshgate.resources import codec, registry
from meshgate.resources.descriptor import Scope, SyncDirection
from meshgate.resources.errors import ValidationError


def violations(text: str) -> list[tuple[str, str]]:
    (doc,) = codec.load_documents(text)
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


HEADER = """
type: ZoneIngress
name: zi-1
"""

SERVICES = """
availableServices:
- tags:
    kuma.io/service: backend
    version: "1"
    region: us
- tags:
    kuma.io/service: web
    version: v2
    region: eu
"""

VALID = {
    "with advertised address and port": """
networking:
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  port: 10001
  advertisedPort: 1234
"""
    + SERVICES,
    "with advertised ipv6 address and port": """
networking:
  address: 192.168.0.1
  advertisedAddress: ::ffff:0a00:0001
  port: 10001
  advertisedPort: 1234
"""
    + SERVICES,
    # Valid: Kubernetes may not have reconciled the advertised address yet.
    "without advertised address and port": """
networking:
  address: 192.168.0.1
  port: 10001
availableServices: []
""",
    "with admin port equal to port but different network interfaces": """
networking:
  admin:
    port: 10001
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  port: 10001
  advertisedPort: 1234
"""
    + SERVICES,
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid(name: str) -> None:
    assert violations(HEADER + VALID[name]) == []


INVALID = {
    "no port defined": (
        """
networking:
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  advertisedPort: 1234
"""
        + SERVICES,
        [("networking.port", "port must be in the range [1, 65535]")],
    ),
    "invalid advertised address, port and available service": (
        """
networking:
  address: 192.168.0.1
  advertisedAddress: "!@#"
  port: 10001
  advertisedPort: 100000
availableServices:
- tags:
    kuma.io/service: backend
    version: "1"
    region: us
- tags:
    kuma.io/service: web
    version: v2
    region: eu
- tags:
    version: v2
    region: eu
- tags:
    kuma.io/service: ""
- tags:
    version: ""
""",
        [
            ("networking.advertisedAddress.address", "address has to be valid IP address or domain name"),
            ("networking.advertisedPort", "port must be in the range [1, 65535]"),
            ("availableService[2].tags", 'mandatory tag "kuma.io/service" is missing'),
            ('availableService[3].tags["kuma.io/service"]', "tag value must be non-empty"),
            ('availableService[4].tags["version"]', "tag value must be non-empty"),
            ("availableService[4].tags", 'mandatory tag "kuma.io/service" is missing'),
        ],
    ),
    "admin port equal to port": (
        """
networking:
  admin:
    port: 10001
  address: 127.0.0.1
  advertisedAddress: 10.0.0.1
  port: 10001
  advertisedPort: 1234
"""
        + SERVICES,
        [("networking.admin.port", "must differ from port")],
    ),
    "advertised port without address, and the reverse": (
        """
networking:
  address: 192.168.0.1
  port: 10001
  advertisedPort: 1234
""",
        [("networking.advertisedAddress", "has to be defined with advertisedPort")],
    ),
    "advertised address without port": (
        """
networking:
  address: 192.168.0.1
  port: 10001
  advertisedAddress: 10.0.0.1
""",
        [("networking.advertisedPort", "has to be defined with advertisedAddress")],
    ),
    "unspecified address": (
        """
networking:
  address: 0.0.0.0
  port: 10001
""",
        [("networking.address.address", "must not be 0.0.0.0 or ::")],
    ),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid(name: str) -> None:
    text, expected = INVALID[name]
    assert violations(HEADER + text) == expected


def test_mesh_is_refused_for_a_global_scoped_kind() -> None:
    with pytest.raises(ValidationError, match="ZoneIngress is not mesh-scoped"):
        violations(HEADER + "mesh: default\n" + VALID["without advertised address and port"])


def test_descriptor_is_kumas() -> None:
    d = registry.lookup("zone-ingresses")
    assert d.name == "ZoneIngress"
    assert d.plural == "zone-ingresses"  # Kuma's WsPath: the REST path /zone-ingresses
    assert d.scope is Scope.GLOBAL
    assert d.sync is SyncDirection.ZONE_TO_ALL
    assert (d.writable_on_global, d.writable_on_zone) == (False, True)
    assert d.spec_type_url == "type.googleapis.com/kuma.mesh.v1alpha1.ZoneIngress"
