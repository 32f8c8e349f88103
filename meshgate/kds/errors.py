"""The errors of the sans-IO KDS core, in one tree (the adapters map them to gRPC statuses)::

ProtocolError          the peer broke the protocol (stale nonce, duplicate subscription, ...):
 │                     the adapter ends the stream with FAILED_PRECONDITION; the delta engine's own
 │                     (meshgate.delta.state), re-exported here
 └── MalformedMessage  a message no honest peer sends (an absurd kind name, more unknown kinds than
                       `meshgate.kds.limits.MAX_UNKNOWN_KINDS`, an oversized name or version, an Any that
                       is not a decodable KumaResource): INVALID_ARGUMENT
"""

from __future__ import annotations

from meshgate.delta.state import ProtocolError

__all__ = ["MalformedMessage", "ProtocolError"]


class MalformedMessage(ProtocolError):
    """A message no honest peer sends. Its text is bounded: every peer value in it went through `clip`."""
