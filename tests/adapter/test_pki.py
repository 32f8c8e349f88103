"""meshgate.pki: a generated CA and server certificate, kept in a store, made once even by racing replicas."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import anyio
from cryptography import x509

from meshgate.pki import default_sans, ensure_server_pki, generate_server_pki, normalize_sans
from meshgate.resources.model import ResourceKey
from meshgate.store.memory import MemoryStore

KEY = ResourceKey("DpServerCertificate", "", "dp-server")


def _sans(pem: bytes) -> set[str]:
    ext = x509.load_pem_x509_certificate(pem).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    dns = set(ext.value.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)}
    return dns | ips


def test_server_certificate_is_signed_by_the_ca_and_names_every_san() -> None:
    pki = generate_server_pki("zone xDS", ["localhost", "127.0.0.1", "::1", "0.0.0.0", "Zone.Example"])
    assert pki.sans == ("127.0.0.1", "::1", "localhost", "zone.example")  # wildcard address dropped
    cert = x509.load_pem_x509_certificate(pki.cert_pem)
    ca = x509.load_pem_x509_certificate(pki.ca_cert_pem)
    cert.verify_directly_issued_by(ca)
    assert _sans(pki.cert_pem) == set(pki.sans)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_default_sans_cover_loopback_host_and_bind_address() -> None:
    sans = default_sans("10.1.2.3", ["zone.internal"])
    assert {"localhost", "127.0.0.1", "::1", "10.1.2.3", "zone.internal"} <= set(sans)
    assert "0.0.0.0" not in default_sans("0.0.0.0")
    assert normalize_sans(["[::1]"]) == (str(ipaddress.ip_address("::1")),)


async def test_racing_replicas_share_one_ca() -> None:
    store = MemoryStore()
    results = []

    async def one() -> None:
        results.append(await ensure_server_pki(store, KEY, "zone xDS", ["localhost"]))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(one)
    assert len({r.ca_cert_pem for r in results}) == 1
    stored = await ensure_server_pki(store, KEY, "zone xDS", ["localhost"])
    assert stored.ca_cert_pem == results[0].ca_cert_pem
    assert stored.cert_pem in {r.cert_pem for r in results}


async def test_a_new_san_or_a_near_expiry_reissues_from_the_same_ca() -> None:
    store = MemoryStore()
    first = await ensure_server_pki(store, KEY, "zone xDS", ["localhost"])
    wider = await ensure_server_pki(store, KEY, "zone xDS", ["localhost", "10.0.0.7"])
    assert wider.ca_cert_pem == first.ca_cert_pem
    assert wider.cert_pem != first.cert_pem
    assert {"localhost", "10.0.0.7"} <= _sans(wider.cert_pem)
    later = datetime.now(UTC) + timedelta(days=350)
    renewed = await ensure_server_pki(store, KEY, "zone xDS", ["localhost"], now=later)
    assert renewed.ca_cert_pem == first.ca_cert_pem
    assert renewed.not_after > wider.not_after
    # Unchanged needs: the stored one, as is.
    assert (await ensure_server_pki(store, KEY, "zone xDS", ["localhost"], now=later)).cert_pem == renewed.cert_pem
