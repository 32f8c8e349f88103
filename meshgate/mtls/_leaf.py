"""Leaf certificates for a (mesh, service) identity, signed by the mesh CA, and their cache."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshgate.mtls._ca import CLOCK_SKEW, CertificateAuthority

__all__ = ["LEAF_VALIDITY", "Leaf", "LeafCache", "issue_leaf", "spiffe_id"]

# Kuma's default data plane certificate lifetime is 24 h (`dpCert.rotation.expiration`).
LEAF_VALIDITY = timedelta(hours=24)
# One leaf per (mesh, service, CA, DNS SANs) a zone serves; far above any real zone's count, and an evicted
# leaf costs one signature.
_CACHE_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Leaf:
    cert_pem: bytes  # the leaf only; the CA certificate travels as trust, not in the chain
    key_pem: bytes
    not_before: datetime
    not_after: datetime


def spiffe_id(mesh: str, service: str) -> str:
    return f"spiffe://{mesh}/{service}"


def issue_leaf(
    ca: CertificateAuthority,
    mesh: str,
    service: str,
    dns_sans: Sequence[str] = (),
    *,
    now: datetime | None = None,
    validity: timedelta = LEAF_VALIDITY,
    uris: Sequence[str] = (),
) -> Leaf:
    """A new P-256 key and a certificate for it, signed by `ca`: SAN URI `spiffe://<mesh>/<service>`, then
    `uris` (a sidecar's other identities: Kuma's workload certificate carries one SPIFFE id per inbound service
    and a `kuma://<tag>/<value>` per inbound tag) and `dns_sans`, for both server and client authentication.
    The subject is empty, as in Kuma (a service name may exceed a CN's 64 characters), so the SAN extension is
    critical (RFC 5280, 4.2.1.6)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now if now is not None else datetime.now(UTC)) - CLOCK_SKEW
    end = min(start + CLOCK_SKEW + validity, ca.certificate.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(mesh, service))]
    sans.extend(x509.UniformResourceIdentifier(uri) for uri in uris if uri != spiffe_id(mesh, service))
    sans.extend(x509.DNSName(name) for name in dns_sans)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return Leaf(cert.public_bytes(serialization.Encoding.PEM), key_pem, start, end)


class LeafCache:
    """Leaves by (mesh, service, CA fingerprint, DNS SANs, other URI SANs): the same PEM until half its life is gone.

    Returning the same bytes keeps a regenerated xDS snapshot byte-equal, so the delta server sends nothing;
    re-issuing at half-life rotates certificates well before they expire (Kuma rotates at 4/5 of the life).
    Bounded, least recently used first out. Not thread-safe: one owner (a zone's xDS loop) uses it.
    """

    def __init__(self, *, validity: timedelta = LEAF_VALIDITY, size: int = _CACHE_SIZE) -> None:
        self._validity = validity
        self._size = size
        self._leaves: OrderedDict[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], Leaf] = OrderedDict()

    def __len__(self) -> int:
        return len(self._leaves)

    def leaf(
        self,
        ca: CertificateAuthority,
        mesh: str,
        service: str,
        dns_sans: Sequence[str] = (),
        *,
        now: datetime | None = None,
        uris: Sequence[str] = (),
    ) -> Leaf:
        at = now if now is not None else datetime.now(UTC)
        key = (mesh, service, ca.fingerprint, tuple(dns_sans), tuple(uris))
        found = self._leaves.get(key)
        if found is not None and at < found.not_before + (found.not_after - found.not_before) / 2:
            self._leaves.move_to_end(key)
            return found
        fresh = issue_leaf(ca, mesh, service, dns_sans, now=at, validity=self._validity, uris=uris)
        self._leaves[key] = fresh
        self._leaves.move_to_end(key)
        while len(self._leaves) > self._size:
            self._leaves.popitem(last=False)
        return fresh
