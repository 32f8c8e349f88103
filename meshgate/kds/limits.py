"""What a KDS peer may send before it is a peer we stop listening to, with no I/O.

Kuma trusts its peers' messages to be well-formed. The global cannot: a KDS port faces every zone, and a
zone's messages are held in memory and echoed into logs, NACKs and errors. So a message is checked for shape
before any state machine sees it, and everything a peer wrote that we repeat is clipped to `ECHO_LIMIT`.

Error tree::

    ProtocolError (meshgate.kds.sender)
     └── MalformedMessage    a message no honest peer sends (unknown kind, oversized name or version, an
                             Any that is not a decodable KumaResource); the adapter answers INVALID_ARGUMENT
"""

from __future__ import annotations

from collections.abc import Container
from typing import Final

from envoy.service.discovery.v3 import discovery_pb2

from meshgate.kds.sender import ProtocolError

__all__ = [
    "ECHO_LIMIT",
    "MAX_NONCE_LENGTH",
    "MAX_VERSION_LENGTH",
    "MAX_WIRE_NAME_LENGTH",
    "MalformedMessage",
    "check_request",
    "check_response",
    "clip",
]

# How much of a peer's text we repeat (in an error, a log line, a NACK): enough to recognise it, never enough
# for a peer to make our logs or answers as large as its messages.
ECHO_LIMIT: Final = 128
# A wire name is `<name>.<mesh>`; each part is at most 253 characters (Kuma's name rules), plus the dot.
MAX_WIRE_NAME_LENGTH: Final = 253 + 1 + 253
# Our versions are 20 hex characters and Kuma's 64 (sha256): 128 leaves room for any sane hash.
MAX_VERSION_LENGTH: Final = 128
MAX_NONCE_LENGTH: Final = 128


class MalformedMessage(ProtocolError):
    """A message no honest peer sends. Its text is bounded: every peer value in it went through `clip`."""


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, marked when cut (so nobody mistakes it for the whole value)."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def _kind(type_url: str, kinds: Container[str]) -> None:
    if type_url not in kinds:
        raise MalformedMessage(f"type_url {clip(type_url)!r} is not a kind of this stream")


def _name(name: str, what: str) -> None:
    if len(name) > MAX_WIRE_NAME_LENGTH:
        raise MalformedMessage(f"{what} {clip(name)!r} is longer than {MAX_WIRE_NAME_LENGTH} characters")


def _version(version: str, name: str) -> None:
    if len(version) > MAX_VERSION_LENGTH:
        raise MalformedMessage(f"version of {clip(name)!r} is longer than {MAX_VERSION_LENGTH} characters")


def _nonce(nonce: str) -> None:
    if len(nonce) > MAX_NONCE_LENGTH:
        raise MalformedMessage(f"nonce {clip(nonce)!r} is longer than {MAX_NONCE_LENGTH} characters")


def check_request(req: discovery_pb2.DeltaDiscoveryRequest, kinds: Container[str]) -> None:
    """Raises MalformedMessage unless `req` (a subscribe, ACK or NACK from a peer) is of a kind in `kinds`
    and every name, version and nonce in it is of a plausible length."""
    _kind(req.type_url, kinds)
    _nonce(req.response_nonce)
    for name in req.resource_names_subscribe:
        _name(name, "subscribed name")
    for name in req.resource_names_unsubscribe:
        _name(name, "unsubscribed name")
    for name, version in req.initial_resource_versions.items():
        _name(name, "initial version's name")
        _version(version, name)


def check_response(resp: discovery_pb2.DeltaDiscoveryResponse, kinds: Container[str]) -> None:
    """Raises MalformedMessage unless `resp` (resources from a peer) is of a kind in `kinds` and every name,
    version and nonce in it is of a plausible length. Whether each resource decodes is the Receiver's check
    (`strict=True` makes an undecodable one a MalformedMessage too)."""
    _kind(resp.type_url, kinds)
    _nonce(resp.nonce)
    for wire in resp.resources:
        _name(wire.name, "resource name")
        _version(wire.version, wire.name)
    for name in resp.removed_resources:
        _name(name, "removed name")
