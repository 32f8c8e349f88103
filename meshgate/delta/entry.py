"""One resource as a delta stream offers it, and the one content hash every version is.

A version is the hash of the resource's deterministic serialization, so two processes holding the same
content compute the same version: a reconnecting peer sends the versions it holds
(`initial_resource_versions`) and gets only what changed. KDS hashes its envelope with `meta.version`
cleared (meshgate.kds.envelope); xDS hashes the Envoy message itself (meshgate.xds.snapshot).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

__all__ = ["Entry", "content_hash"]


def content_hash(message: Message) -> str:
    """Hash of the message's deterministic serialization: equal content, equal version, across processes.

    20 hex digits (blake2b, 10 bytes): the versions every meshgate and Kuma peer already holds are these, so
    the function never changes."""
    return hashlib.blake2b(message.SerializeToString(deterministic=True), digest_size=10).hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    name: str  # wire name: "<name>.<mesh>" for KDS, the Envoy resource name for xDS
    version: str  # content hash
    wire: discovery_pb2.Resource
    size: int  # serialized size of `wire`, for message splitting
    # The zone a relayed zone-origin resource came from, which must not get it back; "" for everything else.
    zone: str = ""

    @classmethod
    def of(cls, wire: discovery_pb2.Resource, zone: str = "") -> Entry:
        return cls(wire.name, wire.version, wire, wire.ByteSize(), zone)

    @classmethod
    def pack(cls, name: str, message: Message) -> Entry:
        """`message` as a wire resource named `name`, versioned by its content hash."""
        packed = any_pb2.Any()
        packed.Pack(message, deterministic=True)
        return cls.of(discovery_pb2.Resource(name=name, version=content_hash(message), resource=packed))
