"""A private CA and one TLS server certificate it signs, as PEM. Pure: no I/O, no store.

Used where a control plane must serve TLS before anyone has given it a certificate (Kuma generates its own
for the DP server and KDS the same way): the CA certificate is what clients are told to trust, the server
certificate names every address clients may dial (its SANs).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA_VALIDITY", "SERVER_VALIDITY", "ServerPki", "generate_server_pki", "normalize_sans", "reissue_server"]

CA_VALIDITY = timedelta(days=3650)
# Long enough that an operator never meets an expiry in practice, short enough that a leaked key ages out;
# `meshgate.pki.ensure_server_pki` re-issues it from the same CA well before the end, so clients keep trusting.
SERVER_VALIDITY = timedelta(days=365)
# Certificates start a little in the past: a client whose clock runs behind still accepts a fresh one.
_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class ServerPki:
    ca_cert_pem: bytes
    ca_key_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    sans: tuple[str, ...]

    @property
    def not_after(self) -> datetime:
        return x509.load_pem_x509_certificate(self.cert_pem).not_valid_after_utc


def normalize_sans(names: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated; IP addresses in canonical form; the wildcard bind addresses dropped (no client
    dials 0.0.0.0 or ::, and a certificate naming them proves nothing)."""
    out: set[str] = set()
    for raw in names:
        name = raw.strip().strip("[]")
        if not name:
            continue
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            out.add(name.lower())
            continue
        if not ip.is_unspecified:
            out.add(str(ip))
    return tuple(sorted(out))


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _server_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, common_name: str, sans: Sequence[str], now: datetime
) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + SERVER_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in sans]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def generate_server_pki(common_name: str, sans: Iterable[str], *, now: datetime | None = None) -> ServerPki:
    """A new CA (`<common_name> CA`) and a server certificate for `sans` (at least one name)."""
    names = normalize_sans(sans)
    if not names:
        raise ValueError("a server certificate needs at least one subject alternative name")
    at = now or datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(at - _SKEW)
        .not_valid_after(at + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_pem, key_pem = _server_cert(ca_cert, ca_key, common_name, names, at)
    return ServerPki(ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key), cert_pem, key_pem, names)


def reissue_server(pki: ServerPki, common_name: str, sans: Iterable[str], *, now: datetime | None = None) -> ServerPki:
    """A new server certificate for `sans` from the same CA: clients that trust the CA keep trusting."""
    names = normalize_sans(sans)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert_pem)
    ca_key = serialization.load_pem_private_key(pki.ca_key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the stored CA key is not an EC key")
    cert_pem, key_pem = _server_cert(ca_cert, ca_key, common_name, names, now or datetime.now(UTC))
    return ServerPki(pki.ca_cert_pem, pki.ca_key_pem, cert_pem, key_pem, names)
