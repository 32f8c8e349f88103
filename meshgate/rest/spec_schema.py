"""JSON Schema for a protobuf spec, as Kuma users write it: proto3 JSON mapping, camelCase field names.

Derived from the message descriptors, never written by hand, so the OpenAPI document cannot drift from the
kinds. Every message becomes one named component (its proto full name), so recursive messages are fine.
"""

from __future__ import annotations

from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from meshgate.resources.descriptor import KindDescriptor

__all__ = ["JsonSchema", "message_properties", "message_ref", "spec_descriptor"]

JsonSchema = dict[str, Any]

_REF_PREFIX = "#/components/schemas/"

# proto3 JSON renders 64-bit integers as strings and accepts both forms.
_INT64: JsonSchema = {"type": ["integer", "string"], "format": "int64"}

_SCALARS: dict[int, JsonSchema] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_FIXED32: {"type": "integer", "minimum": 0},
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_UINT64: _INT64,
    FieldDescriptor.TYPE_FIXED64: _INT64,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "contentEncoding": "base64"},
}

# Well-known types have their own JSON forms (https://protobuf.dev/programming-guides/proto3/#json).
_WELL_KNOWN: dict[str, JsonSchema] = {
    "google.protobuf.Duration": {"type": "string", "description": "a duration such as 10s, 1h or 200ms"},
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Struct": {"type": "object"},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array"},
    "google.protobuf.Any": {"type": "object"},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "contentEncoding": "base64"},
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32"},
    "google.protobuf.UInt32Value": {"type": "integer", "minimum": 0},
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _INT64,
}


def spec_descriptor(kind: KindDescriptor) -> Descriptor:
    # The stubs type DESCRIPTOR as the pure-Python or the upb descriptor; both have the same interface.
    return cast(Descriptor, kind.spec_type.DESCRIPTOR)


def message_ref(message: Descriptor, components: dict[str, JsonSchema]) -> JsonSchema:
    """A schema for `message`, adding it (and every message it uses) to `components`."""
    well_known = _WELL_KNOWN.get(message.full_name)
    if well_known is not None:
        return dict(well_known)
    name = message.full_name
    if name not in components:
        components[name] = {}  # placeholder first: a message may contain itself
        components[name] = {"type": "object", "properties": message_properties(message, components)}
    return {"$ref": _REF_PREFIX + name}


def message_properties(message: Descriptor, components: dict[str, JsonSchema]) -> dict[str, JsonSchema]:
    """The JSON properties of `message`, keyed by camelCase JSON name, in field-number order."""
    return {f.json_name: _field_schema(f, components) for f in sorted(message.fields, key=lambda f: f.number)}


def _single_schema(field: FieldDescriptor, components: dict[str, JsonSchema]) -> JsonSchema:
    if field.enum_type is not None:
        return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
    if field.message_type is not None:
        return message_ref(field.message_type, components)
    return dict(_SCALARS[field.type])


def _field_schema(field: FieldDescriptor, components: dict[str, JsonSchema]) -> JsonSchema:
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        value = message.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _single_schema(value, components)}
    single = _single_schema(field, components)
    if field.is_repeated:
        return {"type": "array", "items": single}
    return single
