"""A private CA, and the TLS server certificates it signs, as PEM. Pure: no I/O, no store.

Used where a control plane must serve TLS before anyone has given it a certificate (Kuma generates its own
for the DP server and KDS the same way): the CA certificate is what clients are told to trust, the server
certificate names every address clients may dial (its SANs). Both are EC P-256.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA_VALIDITY",
    "SERVER_VALIDITY",
    "Authority",
    "ServerCertificate",
    "generate_authority",
    "issue_server",
    "normalize_sans",
]

# Ten years, as Kuma's and the mesh CAs (meshgate.mtls): a CA is handed to clients once.
CA_VALIDITY = timedelta(days=3650)
# Server certificates are issued at every start of the process serving them; a year outlives any uptime.
SERVER_VALIDITY = timedelta(days=365)
# Certificates start a little in the past: a client whose clock runs behind still accepts a fresh one.
_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Authority:
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"a generated CA key must be EC, got {type(key).__name__}")
        return key


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    chain_pem: bytes  # the server certificate, then its CA
    key_pem: bytes
    sans: tuple[str, ...]


def normalize_sans(names: Iterable[str]) -> tuple[str, ...]:
    """De-duplicated, first occurrence first; IP addresses in canonical form, DNS names lower-cased; the
    wildcard bind addresses dropped (no client dials 0.0.0.0 or ::, and a certificate naming them proves
    nothing)."""
    out: dict[str, None] = {}
    for raw in names:
        name = raw.strip().strip("[]")
        if not name:
            continue
        try:
            ip = ipaddress.ip_address(name)
        except ValueError:
            out[name.lower()] = None
            continue
        if not ip.is_unspecified:
            out[str(ip)] = None
    return tuple(out)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def generate_authority(common_name: str, *, now: datetime | None = None) -> Authority:
    """A new self-signed CA named `common_name`."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.now(UTC)) - _SKEW
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server(authority: Authority, sans: Iterable[str], *, now: datetime | None = None) -> ServerCertificate:
    """A server certificate for `sans` (at least one name; the first is also its common name), signed by
    `authority`, never outliving it."""
    names = normalize_sans(sans)
    if not names:
        raise ValueError("a server certificate needs at least one subject alternative name")
    key = ec.generate_private_key(ec.SECP256R1())
    ca_cert, ca_key = authority.certificate, authority.key
    start = (now or datetime.now(UTC)) - _SKEW
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + SERVER_VALIDITY, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + authority.cert_pem
    return ServerCertificate(chain, _key_pem(key), names)
