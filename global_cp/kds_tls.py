"""KDS over TLS by default: the global's own CA and server certificate, made on first start.

Unless `--kds-tls-cert-file`/`--kds-tls-key-file` are given (an operator's PKI), the global serves KDS with a
certificate signed by a CA of its own (EC P-256, as Kuma's `kumactl install control-plane` generates one):

- The CA is one resource of the global-internal kind `KDSCertificateAuthority` (name `kds-ca`), made once by
  `meshgate.pki.ensure_authority`: never synced to zones nor served by the REST API, shared by replicas on one
  Redis store (every replica's certificate chains to the one CA that zones trust), never replaced (a new CA
  would cut off every zone until it is handed the new one).
- The server certificate is issued at each start, by each replica, from that CA: its names are per replica
  (`server_names`: localhost, 127.0.0.1, ::1, the host name, the bind address when specific, and every
  `--kds-tls-san`), so a restart with another `--kds-tls-san` takes effect with no state to clean up.
- The CA certificate (public) is written to `<data-dir>/kds-ca.crt` and its path logged, for zones'
  `--kds-ca-cert-file`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path

import structlog

from meshgate.observability.process import StartupError
from meshgate.pki import Authority, ensure_authority, issue_server, write_ca_file
from meshgate.resources.model import ResourceKey
from meshgate.resources.network import is_dns_name
from meshgate.store.protocol import ResourceStore

__all__ = ["CA_FILE_NAME", "CA_KIND", "CA_NAME", "KdsCertificates", "server_names"]

log = structlog.get_logger(__name__)

CA_KIND = "KDSCertificateAuthority"
CA_NAME = "kds-ca"
CA_FILE_NAME = "kds-ca.crt"
SAN_FLAG = "--kds-tls-san"


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


class KdsCertificates:
    """The global's KDS CA, read from the store or created there, and the CA file for zones."""

    def __init__(self, store: ResourceStore, data_dir: Path) -> None:
        self._store = store
        self.ca_file = data_dir / CA_FILE_NAME

    async def authority(self) -> Authority:
        return await ensure_authority(self._store, ResourceKey(CA_KIND, "", CA_NAME), "meshgate KDS CA")

    async def server_pem(self, names: Sequence[str]) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM) for this replica's KDS server, after writing the CA file."""
        ca = await self.authority()
        write_ca_file(self.ca_file, ca.cert_pem)
        server = issue_server(ca, names)
        return server.chain_pem, server.key_pem
