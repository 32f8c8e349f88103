"""KDS, Kuma's Discovery Service between the global and its zones, as pure code (no I/O).

`sender.py` is the delta engine (meshgate/delta) configured for KDS; `receiver.py` applies what a peer
sends; `envelope.py` is the KumaResource wire form; `node.py` the `node` every request carries;
`ownership.py` who sends, names, accepts and may write what, in both directions; `limits.py` what a peer
may make this side hold. The gRPC adapters that run them live in meshgate/transport.

Errors::

    ProtocolError              the peer broke the protocol (meshgate.delta): fatal for the stream
     └── MalformedMessage      a message no honest peer sends; its text is bounded
    EnvelopeError              one wire resource that cannot be decoded: NACKed by name, the rest applies
"""

from __future__ import annotations

from meshgate.kds.envelope import KUMA_RESOURCE_TYPE_URL, EnvelopeError, from_wire, to_wire
from meshgate.kds.errors import MalformedMessage, ProtocolError
from meshgate.kds.limits import DEFAULT_MAX_MSG_SIZE
from meshgate.kds.naming import wire_name
from meshgate.kds.receiver import Receiver
from meshgate.kds.sender import Sender

__all__ = [
    "DEFAULT_MAX_MSG_SIZE",
    "KUMA_RESOURCE_TYPE_URL",
    "EnvelopeError",
    "MalformedMessage",
    "ProtocolError",
    "Receiver",
    "Sender",
    "from_wire",
    "to_wire",
    "wire_name",
]
