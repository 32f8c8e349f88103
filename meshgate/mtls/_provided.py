"""Kuma's `provided` CA backend: a mesh CA whose certificate and key the user keeps in data sources.

Kuma 2.7 (`pkg/plugins/ca/provided/manager.go`): the backend's `conf` is `{cert: <DataSource>, key:
<DataSource>}` (`secret`, `inline`, `inlineString` or `file`); the manager loads both and checks the pair with
`ca_cert_validator.go`, whose violations (field, message) `validate_provided_ca` returns word for word. Data
plane certificates are then signed by that CA exactly as by a builtin one. `file` sources are read by the
control plane in Kuma; meshgate's zone does no file I/O for a mesh's CA, so they are reported as unsupported.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from meshgate.mtls._ca import CertificateAuthority, MtlsError, cert_fingerprint

__all__ = ["PROVIDED", "load_provided_ca", "provided_ca_data", "validate_provided_ca"]

PROVIDED = "provided"


def _source(doc: Any, field: str, secrets: Mapping[str, bytes]) -> bytes:
    """One data source of the backend's conf (JSON form of Kuma's `DataSource`), resolved."""
    if not isinstance(doc, dict) or not doc:
        raise MtlsError(f"{field}: has to be defined")
    if "secret" in doc:
        name = str(doc["secret"])
        if name not in secrets:
            # Kuma's datasource loader: the Secret is looked up in the mesh.
            raise MtlsError(f'{field}: could not load data: Resource not found: type="Secret" name="{name}"')
        return secrets[name]
    if "inlineString" in doc:
        return str(doc["inlineString"]).encode()
    if "inline" in doc:
        try:
            return base64.b64decode(str(doc["inline"]), validate=True)
        except (binascii.Error, ValueError):
            raise MtlsError(f"{field}: inline is not valid base64") from None
    if "file" in doc:
        raise MtlsError(f"{field}: a file data source is not supported by meshgate's zone (use a secret)")
    raise MtlsError(f"{field}: data source has to be chosen. Available sources: secret, file, inline")


def provided_ca_data(conf: Mapping[str, Any], secrets: Mapping[str, bytes]) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a provided backend's `conf`; MtlsError names the field that failed."""
    return _source(conf.get("cert"), "cert", secrets), _source(conf.get("key"), "key", secrets)


def validate_provided_ca(cert_pem: bytes, key_pem: bytes) -> list[tuple[str, str]]:
    """Kuma's `validateCaCert`: (field, message) violations, empty for a usable signing pair."""
    try:
        certs = x509.load_pem_x509_certificates(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        return [("cert", f"not a valid TLS key pair: {exc}")]
    if not certs or certs[0].public_key() != key.public_key():
        return [("cert", "not a valid TLS key pair: tls: private key does not match public key")]
    out: list[tuple[str, str]] = []
    for i, cert in enumerate(certs):
        path = f"cert[{i}]"
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            out.append((path, "basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)"))
        try:
            usage: x509.KeyUsage | None = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is None or not usage.key_cert_sign:
            out.append((path, "key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)"))
        if usage is not None and usage.key_agreement:
            out.append(
                (
                    path,
                    "key usage extension 'keyAgreement' must NOT be set "
                    "(see X509-SVID: Appendix A. X.509 Field Reference)",
                )
            )
    return out


def load_provided_ca(cert_pem: bytes, key_pem: bytes) -> CertificateAuthority:
    """The CA of a provided backend; MtlsError lists Kuma's violations when the pair cannot sign."""
    violations = validate_provided_ca(cert_pem, key_pem)
    if violations:
        raise MtlsError("; ".join(f"{field}: {message}" for field, message in violations))
    cert = x509.load_pem_x509_certificates(cert_pem)[0]
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise MtlsError(f"CA key must be an EC or RSA key, not {type(key).__name__}")
    return CertificateAuthority(cert_pem, key_pem, cert, key, cert_fingerprint(cert))
