"""A hand-made KDS client for end-to-end tests that play a zone (or an attacker) against a real global.

It dials the global the way a zone with the defaults does: TLS trusting the global's own CA, and (unless
told otherwise) a zone token the global issued, so a test sends exactly the messages it means to.
"""

from __future__ import annotations

import grpc

from meshgate.testing.processes import CPProcess, issue_zone_token
from meshgate.transport.kds_client import channel_options

__all__ = ["kds_channel", "kds_metadata"]


def kds_channel(g: CPProcess) -> grpc.aio.Channel:
    """A channel to `g`'s KDS port: TLS with its own CA when it serves TLS, plaintext otherwise."""
    target = f"127.0.0.1:{g.ports['kds']}"
    ca = g.kds_ca_file
    # A zone's message cap (Kuma's and ours: 10 MiB), not gRPC's default 4 MiB.
    options = channel_options()
    if ca is None:
        return grpc.aio.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    return grpc.aio.secure_channel(target, credentials, options=options)


async def kds_metadata(
    g: CPProcess, zone: str, *, instance: str = "test-peer", token: bool = True
) -> tuple[tuple[str, str], ...]:
    """Metadata of a KDS call as `zone` from `instance`, with a token `g` issued for `zone` when `token`."""
    out: list[tuple[str, str]] = [("client-id", zone), ("zone-instance-id", instance)]
    if token and g.kds_auth:
        out.append(("authorization", f"Bearer {await issue_zone_token(g, zone)}"))
    return tuple(out)
