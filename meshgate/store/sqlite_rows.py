"""How `SqliteStore` lays a resource into a row and reads it back. No I/O.

Specs of any message type are stored as their full type name plus their deterministic serialization;
reading resolves the class from the default descriptor pool, so the module defining the spec type must have
been imported (the resource kinds do that). Labels are compact JSON with sorted keys.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

from meshgate.resources.model import Meta, Resource, ResourceKey
from meshgate.store.protocol import StoreError

__all__ = ["Row", "decode", "encode"]

# The encoded, mutable part of a resource: labels JSON, spec type name, spec bytes.
Row = tuple[str, str, bytes]


def encode(resource: Resource, labels_json: dict[tuple[tuple[str, str], ...], str] | None = None) -> Row:
    """`labels_json`, when given, remembers the JSON of each distinct set of labels: a batch of thousands (a
    KDS full sync) mostly repeats a few, and JSON encoding costs more than the lookup."""
    spec = resource.spec
    labels = resource.meta.labels
    if labels_json is None:
        encoded = _labels_json(labels)
    else:
        items = tuple(labels.items())
        encoded = labels_json.get(items) or labels_json.setdefault(items, _labels_json(labels))
    return encoded, spec.DESCRIPTOR.full_name, spec.SerializeToString(deterministic=True)


def _labels_json(labels: Mapping[str, str]) -> str:
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode(row: Sequence[Any]) -> Resource:
    kind, mesh, name, version, labels, spec_type, spec, creation_time, modification_time = row
    try:
        message = _message_class(spec_type).FromString(spec)
    except DecodeError as exc:
        raise StoreError(f"{ResourceKey(kind, mesh, name)}: stored {spec_type} spec does not decode") from exc
    decoded_labels: Mapping[str, str] = json.loads(labels)
    meta = Meta(
        name=name,
        mesh=mesh,
        version=str(version),
        labels=decoded_labels,
        creation_time=datetime.fromisoformat(creation_time),
        modification_time=datetime.fromisoformat(modification_time),
    )
    return Resource(kind=kind, meta=meta, spec=message)


@functools.cache
def _message_class(type_name: str) -> type[Message]:
    # functools.cache keeps only successes: a type whose module is imported later resolves then.
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        raise StoreError(
            f"stored spec type {type_name!r} is unknown to this process; import the module that defines it"
        ) from None
    return message_factory.GetMessageClass(descriptor)
