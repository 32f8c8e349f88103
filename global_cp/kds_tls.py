"""KDS over TLS by default: the global's own CA and server certificate, made on first start.

Unless `--kds-tls-cert-file`/`--kds-tls-key-file` are given (an operator's PKI), the global serves KDS with a
certificate signed by a CA of its own (EC P-256, as Kuma's `kumactl install control-plane` generates one):

- The CA is one resource of the global-internal kind `KDSCertificateAuthority` (name `kds-ca`, spec a
  `google.protobuf.BytesValue` holding `{"cert": PEM, "key": PEM}` as JSON). Like the zone token signing key
  (global_cp/tokens.py) the kind is deliberately not in `meshgate.resources.registry`, so it is never synced to
  zones nor served by the REST API. Replicas sharing a Redis store race to create it; the loser gets
  AlreadyExistsError and reads the winner's, so every replica's certificate chains to the one CA that zones
  trust. It is never replaced: a new CA would cut off every zone until it is handed the new one.
- The server certificate is issued at each start, by each replica, from that CA: its names are per replica
  (`server_names`: localhost, 127.0.0.1, ::1, the host name, the bind address when specific, and every
  `--kds-tls-san`), so a restart with another `--kds-tls-san` takes effect with no state to clean up.
- The CA certificate (public) is written to `<data-dir>/kds-ca.crt` and its path logged, for zones'
  `--kds-ca-cert-file`.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf.wrappers_pb2 import BytesValue

from meshgate.observability.process import StartupError
from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.resources.network import is_dns_name
from meshgate.store.protocol import AlreadyExistsError, NotFoundError, ResourceStore

__all__ = [
    "CA_FILE_NAME",
    "CA_KIND",
    "CA_NAME",
    "KdsAuthority",
    "KdsCertificates",
    "generate_authority",
    "issue_server_certificate",
    "server_names",
]

log = structlog.get_logger("meshgate.global.kds_tls")

CA_KIND = "KDSCertificateAuthority"
CA_NAME = "kds-ca"
CA_FILE_NAME = "kds-ca.crt"
SAN_FLAG = "--kds-tls-san"
# Ten years, as Kuma's and the mesh CAs (meshgate.mtls): the CA is handed to zones once.
_CA_VALIDITY = timedelta(days=3650)
# The server certificate is re-issued at every start; a year outlives any sane uptime, and it never outlives
# its CA.
_SERVER_VALIDITY = timedelta(days=365)
# Valid from a little in the past: a zone whose clock runs behind still accepts a fresh certificate.
_SKEW = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class KdsAuthority:
    cert_pem: bytes
    key_pem: bytes

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey), type(key)
        return key


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


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


def generate_authority(now: datetime | None = None) -> KdsAuthority:
    """A new self-signed KDS CA (EC P-256, ten years)."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = (now or datetime.now(UTC)) - _SKEW
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "meshgate"),
            x509.NameAttribute(NameOID.COMMON_NAME, "meshgate KDS CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + _CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KdsAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def server_names(bind_address: str, extra: Iterable[str] = (), hostname: str | None = None) -> list[str]:
    """The names the KDS server certificate carries, deduplicated in order. StartupError names a bad
    `--kds-tls-san`."""
    names = ["localhost", "127.0.0.1", "::1", hostname if hostname is not None else socket.gethostname()]
    if bind_address not in ("", "0.0.0.0", "::"):
        names.append(bind_address)
    for name in extra:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            if not is_dns_name(name.removeprefix("*.")):
                raise StartupError(f"{SAN_FLAG} {name!r}: not an IP address nor a DNS name") from None
        names.append(name)
    return list(dict.fromkeys(n for n in names if n))


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def issue_server_certificate(
    ca: KdsAuthority, names: Sequence[str], now: datetime | None = None
) -> tuple[bytes, bytes]:
    """(certificate chain PEM, key PEM) of a KDS server certificate for `names`, signed by `ca`."""
    key = ec.generate_private_key(ec.SECP256R1())
    authority = ca.certificate
    start = (now or datetime.now(UTC)) - _SKEW
    end = min(start + _SERVER_VALIDITY, authority.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:64])]))
        .issuer_name(authority.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    chain = cert.public_bytes(serialization.Encoding.PEM) + ca.cert_pem
    return chain, _key_pem(key)


def _decode(resource: Resource) -> KdsAuthority:
    spec = resource.spec
    assert isinstance(spec, BytesValue), type(spec)
    doc = json.loads(spec.value)
    return KdsAuthority(doc["cert"].encode(), doc["key"].encode())


class KdsCertificates:
    """The global's KDS CA, read from the store or created there, and the CA file for zones."""

    def __init__(self, store: ResourceStore, data_dir: Path) -> None:
        self._store = store
        self.ca_file = data_dir / CA_FILE_NAME

    async def authority(self) -> KdsAuthority:
        key = ResourceKey(CA_KIND, "", CA_NAME)
        try:
            return _decode(await self._store.get(key))
        except NotFoundError:
            pass
        ca = await anyio.to_thread.run_sync(generate_authority)
        doc = json.dumps({"cert": ca.cert_pem.decode(), "key": ca.key_pem.decode()}).encode()
        try:
            await self._store.create(Resource(CA_KIND, Meta(name=CA_NAME), BytesValue(value=doc)))
        except AlreadyExistsError:
            # Another replica on the shared store created it first: its CA is the one zones trust.
            log.info("kds.tls.ca_lost_race")
            return _decode(await self._store.get(key))
        log.info("kds.tls.ca_created", name=CA_NAME)
        return ca

    def write_ca_file(self, ca: KdsAuthority) -> None:
        """Writes the CA certificate (public) atomically, so a zone never reads half of it."""
        self.ca_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.ca_file.with_suffix(".crt.tmp")
        tmp.write_bytes(ca.cert_pem)
        os.replace(tmp, self.ca_file)

    async def server_pem(self, names: Sequence[str]) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) for this replica's KDS server, after writing the CA file."""
        ca = await self.authority()
        self.write_ca_file(ca)
        return issue_server_certificate(ca, names)
