"""A mesh's builtin certificate authority: generated on the global, read back from its Secrets everywhere."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

__all__ = [
    "CA_VALIDITY",
    "CLOCK_SKEW",
    "CertificateAuthority",
    "MtlsError",
    "builtin_ca_secret_names",
    "cert_fingerprint",
    "enabled_backend",
    "enabled_builtin_backend",
    "generate_ca",
    "load_ca",
]

CA_VALIDITY = timedelta(days=3650)
# Certificates start a little in the past: a peer whose clock runs behind still accepts a fresh one.
CLOCK_SKEW = timedelta(minutes=5)
_BUILTIN = "builtin"


class MtlsError(ValueError):
    """PEM that cannot serve as a mesh CA; the message says why."""


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """A CA as PEM, with its parsed forms. Build it with `generate_ca` or `load_ca`, which check it."""

    cert_pem: bytes
    key_pem: bytes
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey  # builtin: EC; provided: whatever the user brought
    # SHA-256 of the DER certificate, hex: names this CA in caches, so a new CA never reuses old leaves.
    fingerprint: str


def spiffe_mesh(mesh: str) -> str:
    return f"spiffe://{mesh}"


def builtin_ca_secret_names(mesh: str, backend: str) -> tuple[str, str]:
    """(certificate Secret, key Secret) of a builtin backend, named as Kuma names them."""
    return f"{mesh}.ca-builtin-cert-{backend}", f"{mesh}.ca-builtin-key-{backend}"


def enabled_backend(mesh_spec: Any) -> Any | None:
    """The Mesh's enabled mTLS backend (a `CertificateAuthorityBackend`), or None: mTLS is off."""
    mtls = mesh_spec.mtls
    if not mesh_spec.HasField("mtls") or not mtls.enabledBackend:
        return None
    for backend in mtls.backends:
        if backend.name == mtls.enabledBackend:
            return backend
    return None


def enabled_builtin_backend(mesh_spec: Any) -> str | None:
    """The name of the Mesh's enabled mTLS backend when it is `builtin`, else None (no mTLS, or provided)."""
    backend = enabled_backend(mesh_spec)
    return str(backend.name) if backend is not None and backend.type == _BUILTIN else None


def _now(now: datetime | None) -> datetime:
    return now if now is not None else datetime.now(UTC)


def cert_fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _read_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise MtlsError(f"CA key is not a readable unencrypted PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise MtlsError(f"CA key must be an EC key, not {type(key).__name__}")
    return key


def generate_ca(mesh: str, *, key_pem: bytes | None = None, now: datetime | None = None) -> CertificateAuthority:
    """A self-signed CA for `mesh`: URI SAN `spiffe://<mesh>`, CN the mesh name, valid for 10 years.

    `key_pem`: sign with this EC key instead of a new P-256 one (a CA whose certificate Secret was lost while
    its key Secret survived gets a certificate for the same key, so leaves already issued stay valid).
    The CN is the mesh name rather than the SPIFFE id because a CN stops at 64 characters."""
    key = _read_key(key_pem) if key_pem is not None else ec.generate_private_key(ec.SECP256R1())
    start = _now(now) - CLOCK_SKEW
    name = x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshgate"), x509.NameAttribute(NameOID.COMMON_NAME, mesh)]
    )
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_mesh(mesh))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(
        cert.public_bytes(serialization.Encoding.PEM), _key_pem(key), cert, key, cert_fingerprint(cert)
    )


def load_ca(cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
    """A CA from its Secrets' bytes; raises MtlsError unless the certificate is a CA signed by its own key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise MtlsError(f"CA certificate is not a readable PEM certificate: {exc}") from None
    key = _read_key(key_pem)
    if cert.public_key() != key.public_key():
        raise MtlsError("CA key does not belong to the CA certificate")
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise MtlsError("CA certificate has no basicConstraints") from None
    if not constraints.ca:
        raise MtlsError("CA certificate is not a CA (basicConstraints CA:FALSE)")
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        raise MtlsError("CA certificate is not self-signed") from None
    return CertificateAuthority(cert_pem, key_pem, cert, key, cert_fingerprint(cert))
