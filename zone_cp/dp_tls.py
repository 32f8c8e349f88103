"""TLS for the zone's xDS port (Kuma's DP server): a certificate from flags, or one the zone made itself.

    --dp-server-tls-cert-file/--dp-server-tls-key-file   served as given (Kuma: KUMA_DP_SERVER_TLS_CERT_FILE)
    neither                                              a CA generated on first start and kept in the store
                                                         as `DpServerCertificateAuthority/dp-server-ca` (an
                                                         internal kind: never synced nor served), and a server
                                                         certificate from it at every start, SANs localhost,
                                                         127.0.0.1, ::1, the host name, the bind address and
                                                         every --dp-server-tls-san
    --no-dp-server-tls                                   plaintext (logged as a WARNING)

Either way the CA that clients must trust is written to `<data-dir>/xds-ca.crt` (with given files: the
certificate chain itself, which is what a client can trust without knowing its CA), for `meshgate-dp
--ca-cert-file` and for the zone's own gateway instances.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import anyio
import grpc
import structlog

from meshgate.observability.process import StartupError
from meshgate.pki import default_sans, ensure_authority, issue_server, write_ca_file
from meshgate.resources.model import ResourceKey
from meshgate.store.protocol import ResourceStore
from meshgate.transport.tls import server_credentials

__all__ = ["CA_FILE_NAME", "CA_KEY", "XdsTls", "xds_tls"]

log = structlog.get_logger(__name__)

CA_FILE_NAME: Final = "xds-ca.crt"
CA_KEY: Final = ResourceKey("DpServerCertificateAuthority", "", "dp-server-ca")
CERT_FLAG: Final = "--dp-server-tls-cert-file"
KEY_FLAG: Final = "--dp-server-tls-key-file"


class XdsTls:
    def __init__(self, credentials: grpc.ServerCredentials | None, ca_file: Path | None) -> None:
        self.credentials = credentials  # None: plaintext
        self.ca_file = ca_file


def _write_ca(data_dir: Path, pem: bytes) -> Path:
    return write_ca_file(data_dir / CA_FILE_NAME, pem)


async def xds_tls(
    store: ResourceStore,
    *,
    enabled: bool,
    cert_file: Path | None,
    key_file: Path | None,
    bind_address: str,
    extra_sans: tuple[str, ...],
    data_dir: Path,
) -> XdsTls:
    if not enabled:
        if cert_file or key_file:
            raise StartupError(f"--no-dp-server-tls cannot be combined with {CERT_FLAG}/{KEY_FLAG}")
        log.warning(
            "xds.tls.disabled",
            reason="--no-dp-server-tls: proxies' tokens and certificates cross the network in the clear",
        )
        return XdsTls(None, None)
    if cert_file is not None or key_file is not None:
        creds = server_credentials(cert_file, key_file, cert_flag=CERT_FLAG, key_flag=KEY_FLAG, what="xDS")
        assert cert_file is not None
        chain = await anyio.Path(cert_file).read_bytes()
        return XdsTls(creds, _write_ca(data_dir, chain))
    ca = await ensure_authority(store, CA_KEY, "meshgate zone xDS CA")
    server = issue_server(ca, default_sans(bind_address, extra_sans))
    ca_file = _write_ca(data_dir, ca.cert_pem)
    log.info("xds.tls.enabled", generated=True, sans=list(server.sans), ca_file=str(ca_file))
    return XdsTls(grpc.ssl_server_credentials([(server.key_pem, server.chain_pem)]), ca_file)
