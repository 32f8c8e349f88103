"""KDS over TLS: the global's server credentials and a zone's channel credentials, as Kuma configures them.

Global: `--kds-tls-cert-file` and `--kds-tls-key-file` (Kuma: `KUMA_MULTIZONE_GLOBAL_KDS_TLS_CERT_FILE` and
`..._KEY_FILE`). Zone: a `grpcs://` global address, trusted roots from `--kds-ca-cert-file` (Kuma:
`KUMA_MULTIZONE_ZONE_KDS_ROOT_CA_FILE`), or `--kds-tls-skip-verify` (Kuma: `..._KDS_TLS_SKIP_VERIFY`).

Errors::

    StartupError (meshgate.observability.process)  a flag names a file that is missing, unreadable, or not PEM
                                                   of the right kind; the process prints one line and exits 1
    OSError
     └── CertificateFetchError                     skip-verify could not read the global's certificate: a
                                                   connection failure like any other, so the zone retries
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import anyio
import grpc
import structlog
from anyio.streams.tls import TLSAttribute
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from meshgate.observability.process import StartupError

__all__ = [
    "CertificateFetchError",
    "ClientTls",
    "certificate_names",
    "explain_tls_failure",
    "fetch_server_certificate",
    "server_credentials",
]

log = structlog.get_logger(__name__)

CERT_FLAG = "--kds-tls-cert-file"
KEY_FLAG = "--kds-tls-key-file"
CA_FLAG = "--kds-ca-cert-file"
SKIP_VERIFY_FLAG = "--kds-tls-skip-verify"

# A handshake that takes longer than this is a global that is not answering; the session retries with backoff.
FETCH_TIMEOUT = 10.0


class CertificateFetchError(OSError):
    """`--kds-tls-skip-verify` could not read the certificate the global presents."""


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise StartupError(f"{flag} {str(path)!r}: cannot read it: {exc.strerror or exc}") from exc


def _certificates(pem: bytes, path: Path, flag: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise StartupError(f"{flag} {str(path)!r}: not a PEM certificate: {exc}") from exc


def server_credentials(
    cert_file: Path | None,
    key_file: Path | None,
    *,
    cert_flag: str = CERT_FLAG,
    key_flag: str = KEY_FLAG,
    what: str = "KDS",
) -> grpc.ServerCredentials | None:
    """The KDS server's TLS credentials, or None (plaintext) when neither flag is set. The zone's xDS server
    uses it too, with its own flag names and `what`.

    Everything is read and parsed here, at startup, so that a wrong file fails the process naming its flag,
    instead of failing each zone's handshake later with a message only the zone sees.
    """
    if cert_file is None and key_file is None:
        return None
    if key_file is None:
        raise StartupError(f"{key_flag} is required with {cert_flag}: {what} over TLS needs both")
    if cert_file is None:
        raise StartupError(f"{cert_flag} is required with {key_flag}: {what} over TLS needs both")
    chain_pem = _read(cert_file, cert_flag)
    chain = _certificates(chain_pem, cert_file, cert_flag)
    key_pem = _read(key_file, key_flag)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # TypeError: the key is encrypted; gRPC has no way to ask for its password.
        raise StartupError(f"{key_flag} {str(key_file)!r}: not an unencrypted PEM private key: {exc}") from exc
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != chain[0].public_key().public_bytes(*spki):
        raise StartupError(
            f"{key_flag} {str(key_file)!r}: this key does not belong to the first certificate in {cert_flag}"
        )
    leaf = chain[0]
    if leaf.not_valid_after_utc < datetime.now(UTC):
        # Still served: zones that skip verification keep working, and the log says why the others fail.
        log.warning(
            f"{what.lower()}.tls.certificate_expired", cert_file=str(cert_file), not_after=str(leaf.not_valid_after_utc)
        )
    log.info(
        f"{what.lower()}.tls.enabled",
        cert_file=str(cert_file),
        names=certificate_names(leaf),
        not_after=leaf.not_valid_after_utc.isoformat(),
    )
    return grpc.ssl_server_credentials([(key_pem, chain_pem)])


def certificate_names(cert: x509.Certificate) -> list[str]:
    """The names a certificate is valid for: DNS, then IP subject alternative names, then its common name."""
    names: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        pass
    else:
        names.extend(san.get_values_for_type(x509.DNSName))
        names.extend(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    names.extend(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    return names


def _name_to_verify(cert: x509.Certificate, host: str) -> str | None:
    """A name gRPC will find in `cert`: the dialled host when the certificate has it, else its first name
    (a wildcard filled in, since gRPC matches a concrete host against it). None when it has no names."""
    names = certificate_names(cert)
    if host in names:
        return host
    for name in names:
        return "kds" + name[1:] if name.startswith("*.") else name
    return None


async def fetch_server_certificate(host: str, port: int) -> x509.Certificate:
    """The leaf certificate `host:port` presents, read in a TLS handshake that verifies nothing.

    The handshake runs on the event loop (anyio's TLS stream), so it is cancelled with the session and never
    holds a worker thread. It offers ALPN h2, as a gRPC client does.
    """
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the point of --kds-tls-skip-verify: read the certificate, trust it
    context.set_alpn_protocols(["h2"])
    der: bytes | None = None
    try:
        with anyio.fail_after(FETCH_TIMEOUT):
            stream = await anyio.connect_tcp(host, port, ssl_context=context, tls_standard_compatible=False)
            try:
                der = stream.extra(TLSAttribute.peer_certificate_binary)  # noqa: S610 (anyio, not Django)
            finally:
                await stream.aclose()
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (str(exc) or type(exc).__name__)
        raise CertificateFetchError(
            f"{SKIP_VERIFY_FLAG}: cannot read the certificate of {host}:{port}: {reason}"
        ) from exc
    if not der:
        raise CertificateFetchError(f"{SKIP_VERIFY_FLAG}: {host}:{port} presented no certificate")
    return x509.load_der_x509_certificate(der)


def _system_roots() -> bytes | None:
    """The system's trusted roots (OpenSSL's default CA file, or SSL_CERT_FILE), or None for gRPC's own bundle."""
    cafile = ssl.get_default_verify_paths().cafile
    if cafile is None:
        return None
    try:
        return Path(cafile).read_bytes()
    except OSError:
        return None


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How a zone verifies the global on `grpcs://` addresses. Build it with `load`."""

    # PEM roots; None means gRPC's bundled roots.
    roots: bytes | None = None
    skip_verify: bool = False

    @classmethod
    def load(cls, ca_cert_file: Path | None = None, skip_verify: bool = False) -> ClientTls:
        """Reads and checks `--kds-ca-cert-file` (raising StartupError naming it), or takes the system roots."""
        if skip_verify:
            if ca_cert_file is not None:
                log.warning("kds.tls.ca_ignored", reason=f"{SKIP_VERIFY_FLAG} trusts whatever the global presents")
            return cls(None, skip_verify=True)
        if ca_cert_file is None:
            return cls(_system_roots())
        pem = _read(ca_cert_file, CA_FLAG)
        _certificates(pem, ca_cert_file, CA_FLAG)
        return cls(pem)

    async def channel_credentials(self, host: str, port: int) -> tuple[grpc.ChannelCredentials, list[tuple[str, str]]]:
        """Credentials and extra channel options for one connection to `host:port`.

        gRPC Python cannot turn certificate verification off. So `skip_verify` fetches the certificate the
        global presents right now (`fetch_server_certificate`, with a handshake that verifies nothing), trusts
        exactly that certificate as the only root (gRPC accepts a trust anchor that is not self-signed), and
        sets `grpc.ssl_target_name_override` to a name from it, so the host-name check passes for any address.
        It is fetched again on every connect, so a renewed certificate is picked up. Only one thing is still
        checked: the validity dates of that certificate (an expired one is refused). Like Kuma's skip-verify,
        this protects against nothing but passive eavesdropping: use `--kds-ca-cert-file` in production.
        """
        if not self.skip_verify:
            return grpc.ssl_channel_credentials(root_certificates=self.roots), []
        cert = await fetch_server_certificate(host, port)
        pem = cert.public_bytes(serialization.Encoding.PEM)
        name = _name_to_verify(cert, host)
        options = [("grpc.ssl_target_name_override", name)] if name is not None else []
        return grpc.ssl_channel_credentials(root_certificates=pem), options


# What gRPC's TLS failures mean for a zone, by a marker in the error text; the first match wins.
_HINTS = (
    (
        "CERTIFICATE_VERIFY_FAILED",
        f"the global's certificate is not trusted by this zone: give its CA with {CA_FLAG}"
        f" (or {SKIP_VERIFY_FLAG} to test)",
    ),
    ("not in peer certificate", "the global's certificate does not name the host in --global-address"),
    ("WRONG_VERSION_NUMBER", "the global does not serve TLS on this port: use grpc:// or enable TLS on the global"),
)


def explain_tls_failure(error: str, *, tls: bool) -> str:
    """`error` with a hint appended when it is a TLS problem the zone's user can fix."""
    if not tls:
        # A plaintext client reaching a TLS server sees the server hang up during the handshake.
        if "Socket closed" in error:
            return f"{error} (if the global serves KDS over TLS, use grpcs://)"
        return error
    for marker, hint in _HINTS:
        if marker in error:
            return f"TLS: {hint}; {error}"
    return error
