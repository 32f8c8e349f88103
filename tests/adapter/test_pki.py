"""meshgate.pki: a generated CA kept in a store (made once even by racing replicas), and the server
certificates each process issues from it, shared by the global's KDS port and a zone's xDS port."""

from __future__ import annotations

import ipaddress

import anyio
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

import meshgate.resources  # noqa: F401  (import order: resources before store, which import each other)
from meshgate.pki import default_sans, ensure_authority, generate_authority, issue_server, normalize_sans
from meshgate.resources import registry
from meshgate.resources.model import ResourceKey
from meshgate.store.memory import MemoryStore
from zone_cp.dp_tls import CA_KEY

KEY = ResourceKey("TestCertificateAuthority", "", "test-ca")


def _sans(chain_pem: bytes) -> set[str]:
    leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    ext = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {*ext.get_values_for_type(x509.DNSName), *map(str, ext.get_values_for_type(x509.IPAddress))}


def test_sans_are_normalised_in_order_without_wildcard_addresses() -> None:
    assert normalize_sans(["Zone.Example", "localhost", "0.0.0.0", "::", "[::1]", "localhost", ""]) == (
        "zone.example",
        "localhost",
        "::1",
    )
    assert default_sans("0.0.0.0", ["kds.test"], hostname="h") == ("localhost", "127.0.0.1", "::1", "h", "kds.test")


def test_a_server_certificate_is_signed_by_its_ca_names_every_san_and_never_outlives_it() -> None:
    ca = generate_authority("test CA")
    server = issue_server(ca, ["localhost", "127.0.0.1", "10.0.0.7", "zone.example"])
    leaf, *rest = x509.load_pem_x509_certificates(server.chain_pem)
    assert [c.fingerprint(leaf.signature_hash_algorithm) for c in rest] == [  # type: ignore[arg-type]
        ca.certificate.fingerprint(leaf.signature_hash_algorithm)  # type: ignore[arg-type]
    ]
    leaf.verify_directly_issued_by(ca.certificate)
    assert _sans(server.chain_pem) == {"localhost", "127.0.0.1", "10.0.0.7", "zone.example"}
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert leaf.not_valid_after_utc <= ca.certificate.not_valid_after_utc
    assert ipaddress.ip_address("10.0.0.7") in leaf.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.IPAddress)


async def test_replicas_racing_to_create_the_ca_agree_and_a_restart_reads_it_back() -> None:
    store = MemoryStore()
    results = []

    async def start() -> None:
        results.append(await ensure_authority(store, KEY, "test CA"))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(start)
    assert len({r.cert_pem for r in results}) == 1
    assert (await store.list(KEY.kind)).total == 1
    assert (await ensure_authority(store, KEY, "test CA")).cert_pem == results[0].cert_pem


def test_the_zone_xds_ca_is_an_internal_kind_never_synced_nor_served() -> None:
    assert CA_KEY.kind not in {d.name for d in registry.KINDS}
