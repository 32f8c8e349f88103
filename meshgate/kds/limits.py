"""What a KDS peer may send before it is a peer we stop listening to, with no I/O.

Kuma trusts its peers' messages to be well-formed. The global cannot: a KDS port faces every zone, and a
zone's messages are held in memory and echoed into logs, NACKs and errors. So a message is checked for shape
before any state machine sees it, and everything a peer wrote that we repeat is clipped to `ECHO_LIMIT`.

A kind this side does not serve is *not* garbage: a Kuma 2.7 zone subscribes to 36 kinds and a Kuma global
asks a zone for 22, and Kuma answers a kind it has nothing for with an empty response (its snapshot cache
serves any type). So an unknown kind is a normal subscription, within bounds: its name must look like a kind
(`MAX_KIND_LENGTH`, CamelCase), and one stream may name at most `MAX_UNKNOWN_KINDS` distinct unknown kinds.

Errors (meshgate.kds.errors)::

    ProtocolError
     └── MalformedMessage    a message no honest peer sends (an absurd kind name, more unknown kinds than
                             MAX_UNKNOWN_KINDS, an oversized name or version, an Any that is not a decodable
                             KumaResource); the adapter answers INVALID_ARGUMENT
"""

from __future__ import annotations

import re
from collections.abc import Collection, Container, Mapping
from typing import Final

from envoy.service.discovery.v3 import discovery_pb2

from meshgate.kds.errors import MalformedMessage

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_MSG_SIZE",
    "ECHO_LIMIT",
    "MAX_KIND_LENGTH",
    "MAX_NONCE_LENGTH",
    "MAX_UNKNOWN_KINDS",
    "MAX_VERSION_LENGTH",
    "MAX_WIRE_NAME_LENGTH",
    "MalformedMessage",
    "check_initial_versions",
    "check_request",
    "check_response",
    "check_unknown_kind",
    "clip",
    "payload_budget",
]

# The largest KDS message either side sends or accepts: Kuma's default (KUMA_MULTIZONE_GLOBAL_KDS_MAX_MSG_SIZE
# and KUMA_MULTIZONE_ZONE_KDS_MAX_MSG_SIZE, 10 MiB), `--kds-max-msg-size` on both processes. A Kuma zone takes
# the first response per kind as the whole state, so that response is never split below this size.
DEFAULT_MAX_MSG_SIZE: Final = 10 * 1024 * 1024
# Room in a message for what is not resources: type_url, nonce, version info, field tags.
_ENVELOPE_ROOM: Final = 64 * 1024


def payload_budget(max_msg_size: int) -> int:
    """Bytes of resources one response may carry under a `max_msg_size` message cap."""
    return max(1, max_msg_size - _ENVELOPE_ROOM)


# Kuma's 10 MiB message cap minus room for the response envelope: a Kuma peer reads the first response per
# kind as the whole state, so splitting below Kuma's own cap would make it delete and re-create the tail.
DEFAULT_MAX_BYTES: Final = payload_budget(DEFAULT_MAX_MSG_SIZE)


# How much of a peer's text we repeat (in an error, a log line, a NACK): enough to recognise it, never enough
# for a peer to make our logs or answers as large as its messages.
ECHO_LIMIT: Final = 128
# A wire name is `<name>.<mesh>`; each part is at most 253 characters (Kuma's name rules), plus the dot.
MAX_WIRE_NAME_LENGTH: Final = 253 + 1 + 253
# Our versions are 20 hex characters and Kuma's 64 (sha256): 128 leaves room for any sane hash.
MAX_VERSION_LENGTH: Final = 128
MAX_NONCE_LENGTH: Final = 128
# Kuma's kind names are Go type names, the longest in 2.7 "MeshLoadBalancingStrategy" (25 characters).
MAX_KIND_LENGTH: Final = 64
# Distinct kinds one stream may subscribe to (or send) that this side does not serve: Kuma 2.7's lists are
# 36 (GlobalToZoneSync) and 22 (ZoneToGlobalSync) kinds, of which meshgate serves a few; 64 leaves room for
# Kuma's next kinds, and each costs a few hundred bytes of state per stream.
MAX_UNKNOWN_KINDS: Final = 64
_KIND_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")


def clip(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, marked when cut (so nobody mistakes it for the whole value)."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


def _kind(type_url: str, kinds: Container[str]) -> None:
    """A kind of `kinds`, or at least a well-formed kind name (an unknown kind is a normal subscription)."""
    if type_url not in kinds and (len(type_url) > MAX_KIND_LENGTH or not _KIND_NAME.fullmatch(type_url)):
        raise MalformedMessage(
            f"type_url {clip(type_url)!r} is not a kind name (CamelCase, at most {MAX_KIND_LENGTH} characters)"
        )


def check_unknown_kind(type_url: str, unknown: Collection[str]) -> None:
    """Raises MalformedMessage unless `type_url`, a kind this side does not serve, may join the `unknown`
    kinds a stream already tracks: a well-formed kind name, and at most MAX_UNKNOWN_KINDS of them."""
    _kind(type_url, ())
    if type_url not in unknown and len(unknown) >= MAX_UNKNOWN_KINDS:
        raise MalformedMessage(
            f"kind {clip(type_url)!r} is one unknown kind too many: at most {MAX_UNKNOWN_KINDS} per stream"
        )


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
    """Raises MalformedMessage unless `req` (a subscribe, ACK or NACK from a peer) is of a kind in `kinds` or
    of a well-formed kind name (the Sender bounds how many unknown kinds a stream may name), and every name,
    version and nonce in it is of a plausible length. Its initial_resource_versions are the Sender's to check
    (`check_initial_versions`), once they are the dict it keeps."""
    _kind(req.type_url, kinds)
    _nonce(req.response_nonce)
    for name in req.resource_names_subscribe:
        _name(name, "subscribed name")
    for name in req.resource_names_unsubscribe:
        _name(name, "unsubscribed name")


def check_initial_versions(initial: Mapping[str, str]) -> None:
    """Raises MalformedMessage unless every name and version a subscription says the peer holds is of a
    plausible length. A resuming zone reports every name it holds (10k+): scanned by length in C first, name
    by name (for the error's text) only when one is too long."""
    if initial and (
        max(map(len, initial)) > MAX_WIRE_NAME_LENGTH or max(map(len, initial.values())) > MAX_VERSION_LENGTH
    ):
        for name, version in initial.items():
            _name(name, "initial version's name")
            _version(version, name)


def check_response(resp: discovery_pb2.DeltaDiscoveryResponse, kinds: Container[str]) -> None:
    """Raises MalformedMessage unless `resp` (resources from a peer) is of a kind in `kinds` or of a well-formed
    kind name (the Receiver bounds how many unknown kinds a stream may name), and every name,
    version and nonce in it is of a plausible length. Whether each resource decodes is the Receiver's check
    (`strict=True` makes an undecodable one a MalformedMessage too)."""
    _kind(resp.type_url, kinds)
    _nonce(resp.nonce)
    for wire in resp.resources:
        _name(wire.name, "resource name")
        _version(wire.version, wire.name)
    for name in resp.removed_resources:
        _name(name, "removed name")
