"""A hand-made KDS client for end-to-end tests that play a zone (or an attacker) against a real global.

It dials the global the way a zone with the defaults does: TLS trusting the global's own CA, and (unless
told otherwise) a zone token the global issued, so a test sends exactly the messages it means to.
"""

from __future__ import annotations

import grpc

from tests.support.processes import CPProcess, issue_zone_token

__all__ = ["kds_channel", "kds_metadata"]


def kds_channel(g: CPProcess) -> grpc.aio.Channel:
    """A channel to `g`'s KDS port: TLS with its own CA when it serves TLS, plaintext otherwise."""
    target = f"127.0.0.1:{g.ports['kds']}"
    ca = g.kds_ca_file
    if ca is None:
        return grpc.aio.insecure_channel(target)
    return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=ca.read_bytes()))


async def kds_metadata(
    g: CPProcess, zone: str, *, instance: str = "test-peer", token: bool = True
) -> tuple[tuple[str, str], ...]:
    """Metadata of a KDS call as `zone` from `instance`, with a token `g` issued for `zone` when `token`."""
    out: list[tuple[str, str]] = [("client-id", zone), ("zone-instance-id", instance)]
    if token and g.kds_auth:
        out.append(("authorization", f"Bearer {await issue_zone_token(g, zone)}"))
    return tuple(out)
