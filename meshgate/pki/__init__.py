"""Generated PKI for a control plane's own TLS ports: a private CA and a server certificate, made once,
kept in the store (an internal kind), re-issued from the same CA when SANs change or expiry nears.

    generate_server_pki(cn, sans)                -> ServerPki (pure)
    reissue_server(pki, cn, sans)                -> ServerPki, same CA (pure)
    await ensure_server_pki(store, key, cn, sans) -> ServerPki (generate once, race-safe create)
    default_sans(bind_address, extra)            -> localhost, 127.0.0.1, ::1, host name, bind address, extra
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

from meshgate.pki._issue import ServerPki, generate_server_pki, normalize_sans, reissue_server
from meshgate.pki._stored import ensure_server_pki

__all__ = ["ServerPki", "default_sans", "ensure_server_pki", "generate_server_pki", "normalize_sans", "reissue_server"]


def default_sans(bind_address: str, extra: Iterable[str] = ()) -> tuple[str, ...]:
    return normalize_sans(("localhost", "127.0.0.1", "::1", socket.gethostname(), bind_address, *extra))
