"""The KumaResource envelope and content-hash versions.

A resource travels as `Resource{name="<name>.<mesh>", version=<hash>, resource=Any(KumaResource)}`.
The version hashes the envelope *without* `meta.version` (the sender's store version), so two control
planes holding the same content compute the same version: that is what lets a reconnecting zone send
`initial_resource_versions` computed from its own store and receive only what changed.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from meshgate.api.mesh.v1alpha1 import kds_pb2
from meshgate.delta.entry import content_hash
from meshgate.kds.limits import clip
from meshgate.kds.naming import wire_name
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.model import Resource, built

__all__ = [
    "KUMA_RESOURCE_TYPE_URL",
    "EnvelopeError",
    "content_version",
    "from_wire",
    "to_envelope",
    "to_wire",
]

KUMA_RESOURCE_TYPE_URL = "type.googleapis.com/kuma.mesh.v1alpha1.KumaResource"


class EnvelopeError(Exception):
    """A wire resource that cannot be decoded: wrong envelope type, wrong spec type, bad bytes."""


def to_envelope(resource: Resource, labels: Mapping[str, str] | None = None) -> kds_pb2.KumaResource:
    env = kds_pb2.KumaResource()
    env.meta.name = resource.meta.name
    env.meta.mesh = resource.meta.mesh
    env.meta.labels.update(resource.meta.labels if labels is None else labels)
    # Deterministic: a map field (tags, labels) would otherwise serialize in insertion order, so two control
    # planes holding the same content would compute different versions and a resuming zone would be sent
    # everything again.
    env.spec.Pack(resource.spec, deterministic=True)
    return env


def content_version(envelope: kds_pb2.KumaResource) -> str:
    """The engine's content hash (meshgate.delta.entry) of the envelope with meta.version cleared."""
    if envelope.meta.version:
        envelope = kds_pb2.KumaResource.FromString(envelope.SerializeToString(deterministic=True))
        envelope.meta.version = ""
    return content_hash(envelope)


def to_wire(resource: Resource, labels: Mapping[str, str] | None = None) -> discovery_pb2.Resource:
    # `meta.version` stays "", as Kuma sends it (pkg/kds/util/resource.go, ToEnvoyResources): the sender's store
    # version means nothing to the receiver, whose store assigns its own.
    env = to_envelope(resource, labels)
    version = content_version(env)
    out = discovery_pb2.Resource(name=wire_name(resource.meta.name, resource.meta.mesh), version=version)
    out.resource.Pack(env, deterministic=True)
    return out


def from_wire(descriptor: KindDescriptor, wire: discovery_pb2.Resource) -> Resource:
    """Decodes one wire resource of `descriptor`'s kind. Raises EnvelopeError; never validates the spec."""
    packed: any_pb2.Any = wire.resource
    # The name and type URLs are the peer's: clipped, since this message goes back to it and into logs. Only
    # on the error paths: this runs once per resource of a full sync.
    if packed.type_url != KUMA_RESOURCE_TYPE_URL:
        raise EnvelopeError(f"resource {clip(wire.name)!r}: expected a KumaResource, got {clip(packed.type_url)!r}")
    # Parse the payloads directly (type URLs checked by hand): Any.Unpack re-resolves descriptors on
    # every call, which made decoding ~4x slower than parsing on a 10k-resource initial sync.
    try:
        env = kds_pb2.KumaResource.FromString(packed.value)
    except DecodeError as exc:
        raise EnvelopeError(f"resource {clip(wire.name)!r}: undecodable KumaResource: {exc}") from exc
    spec_any = env.spec
    if spec_any.type_url != descriptor.spec_type_url:
        raise EnvelopeError(
            f"resource {clip(wire.name)!r}: spec type {clip(spec_any.type_url)!r} is not {descriptor.spec_type_url!r}"
        )
    try:
        spec = descriptor.spec_type.FromString(spec_any.value)
    except DecodeError as exc:
        raise EnvelopeError(f"resource {clip(wire.name)!r}: undecodable {descriptor.name} spec: {exc}") from exc
    meta = env.meta
    meta_name, meta_mesh = meta.name, meta.mesh
    if wire.name != f"{meta_name}.{meta_mesh}":
        raise EnvelopeError(
            f"resource {clip(wire.name)!r}: name does not match its meta ({clip(f'{meta_name}.{meta_mesh}')})"
        )
    # A comprehension, not dict(): protobuf's map reaches dict() through the Mapping ABC's keys() view.
    labels = meta.labels
    return built(descriptor.name, spec, meta_name, meta_mesh, "", {k: labels[k] for k in labels}, None, None)
