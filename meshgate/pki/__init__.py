"""Generated PKI for a control plane's own TLS ports (KDS on the global, xDS on a zone): a private CA made
once and kept in the store, and a server certificate each process issues from it at start.

    generate_authority(common_name)               -> Authority (pure)
    issue_server(authority, sans)                 -> ServerCertificate (pure)
    await ensure_authority(store, key, cn)        -> Authority (generate once, race-safe create)
    default_sans(bind_address, extra)             -> localhost, 127.0.0.1, ::1, host name, bind address, extra
    write_ca_file(path, authority)                   the CA certificate (public) for clients, written atomically
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

from meshgate.pki._issue import Authority, ServerCertificate, generate_authority, issue_server, normalize_sans
from meshgate.pki._stored import ensure_authority

__all__ = [
    "Authority",
    "ServerCertificate",
    "default_sans",
    "ensure_authority",
    "generate_authority",
    "issue_server",
    "normalize_sans",
    "write_ca_file",
]


def default_sans(bind_address: str, extra: Iterable[str] = (), hostname: str | None = None) -> tuple[str, ...]:
    host = hostname if hostname is not None else socket.gethostname()
    return normalize_sans(("localhost", "127.0.0.1", "::1", host, bind_address, *extra))


def write_ca_file(path: Path, pem: bytes) -> Path:
    """Writes `pem` to `path` atomically, so a reader never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(pem)
    os.replace(tmp, path)
    return path
