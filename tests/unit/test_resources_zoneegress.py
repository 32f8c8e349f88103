"""ZoneEgress rules, Kuma 2.7.29's zone_egress_validator_test.go cases, and its descriptor."""

from __future__ import annotations

import pytest

from meshgate.kds import ownership
from meshgate.resources import codec, registry
from meshgate.resources.descriptor import Scope, SyncDirection
from meshgate.resources.errors import ValidationError
from meshgate.testing.factory import zone_egress


def violations(text: str) -> list[tuple[str, str]]:
    (doc,) = codec.load_documents(text)
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


HEADER = """
type: ZoneEgress
name: ze-1
"""

VALID = {
    "with address and port": """
networking:
  address: 192.168.0.1
  port: 10001
""",
    "with admin port equal to port but different network interfaces": """
networking:
  admin:
    port: 10001
  address: 192.168.0.1
  port: 10001
""",
}

INVALID = {
    "no port defined": (
        """
networking:
  address: 192.168.0.1
""",
        [("networking.port", "port must be in the range [1, 65535]")],
    ),
    "admin port equal to port": (
        """
networking:
  admin:
    port: 10001
  address: 127.0.0.1
  port: 10001
""",
        [("networking.admin.port", "must differ from port")],
    ),
    # Kuma's validateAddress appends `address` to the path it is given.
    "unspecified address": (
        """
networking:
  address: 0.0.0.0
  port: 10001
""",
        [("networking.address.address", "must not be 0.0.0.0 or ::")],
    ),
    "address neither IP nor DNS name": (
        """
networking:
  address: "not an address!"
  port: 10001
""",
        [("networking.address.address", "address has to be valid IP address or domain name")],
    ),
}


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid(name: str) -> None:
    assert violations(HEADER + VALID[name]) == []


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid(name: str) -> None:
    text, expected = INVALID[name]
    assert violations(HEADER + text) == expected


def test_mesh_is_refused_for_a_global_scoped_kind() -> None:
    with pytest.raises(ValidationError, match="ZoneEgress is not mesh-scoped"):
        violations(HEADER + "mesh: default\n" + VALID["with address and port"])


@pytest.mark.parametrize("alias", ["zoneegresses", "zoneegress", "zone-egress", "zone-egresses", "ZoneEgress"])
def test_descriptor_is_kumas(alias: str) -> None:
    d = registry.lookup(alias)
    assert d.name == "ZoneEgress"
    assert d.plural == "zoneegresses"  # Kuma's ws.plural: the REST path /zoneegresses
    assert d.scope is Scope.GLOBAL
    # Kuma's proto options: send_to_global true, send_to_zone false.
    assert d.sync is SyncDirection.ZONE_TO_GLOBAL
    assert d in registry.kinds_sent_to_global()
    assert d not in registry.kinds_sent_to_zone()
    assert (d.writable_on_global, d.writable_on_zone) == (False, True)
    assert d.spec_type_url == "type.googleapis.com/kuma.mesh.v1alpha1.ZoneEgress"


def test_global_sets_spec_zone_and_gives_it_back_cleared() -> None:
    """pkg/kds/global/components.go: `ze.Spec.Zone = clusterName`; the zone keeps it empty."""
    sent = ownership.to_global("zone-1", codec.decode(zone_egress("eg")))
    stored = ownership.stored_on_global("zone-1", sent, hash_suffix=True)
    assert stored.spec.zone == "zone-1"  # type: ignore[attr-defined]
    assert ownership.as_sent_by_zone("zone-1", stored, hash_suffix=True).spec.zone == ""  # type: ignore[attr-defined]
