"""Structural checks of a JSON/YAML document against a protobuf message descriptor, as protojson reads it.

`json_format.ParseDict` stops at the first problem and reports it without a path. This walker visits the whole
document first and reports every problem with a Kuma-style path (`conf.listeners[0].foo`): unknown
fields, wrong JSON types, enum names that do not exist, integers out of range, two members of one oneof,
malformed durations and base64. Only a document it accepts is handed to ParseDict (after `proto_json` rewrites
its durations), so what it accepts must be a subset of what ParseDict then accepts; the tests hold it to that.

A duration is read as Kuma's jsonpb reads it: Go's `time.ParseDuration` form (`1h`, `1m30s`, `200ms`) or
protobuf's (`3600s`), see `proto_json.read_duration`.

Field names may be written as the JSON (lowerCamelCase) name or the proto name, like protojson accepts. A JSON
`null` means "not set", except inside `google.protobuf.Value`.
"""

from __future__ import annotations

import binascii
import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.timestamp_pb2 import Timestamp

from meshgate.resources.duration import DurationError
from meshgate.resources.errors import Path, Violations
from meshgate.resources.proto_json import DURATION_EXAMPLE, read_duration

__all__ = ["check_fields", "check_message", "is_unknown_field", "json_kind", "unknown_field"]

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
# Longer than any 64-bit integer (20 digits and a sign) with room for leading zeros.
_MAX_INTEGER_TEXT = 32
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
_BASE64 = re.compile(r"[A-Za-z0-9+/\-_]*={0,2}")
_WRAPPERS = frozenset(
    f"google.protobuf.{name}"
    for name in (
        "DoubleValue",
        "FloatValue",
        "Int64Value",
        "UInt64Value",
        "Int32Value",
        "UInt32Value",
        "BoolValue",
        "StringValue",
        "BytesValue",
    )
)


def json_kind(value: object) -> str:
    """How a value reads in a message: "string", "number", "array"... (a Python type name if not JSON)."""
    match value:
        case bool():
            return "boolean"
        case int() | float():
            return "number"
        case str():
            return "string"
        case list() | tuple():
            return "array"
        case Mapping():
            return "object"
        case _:
            return type(value).__name__


def unknown_field(key: object) -> str:
    """The message for a key that names no field of its message."""
    return f"unknown field {_quote(key)}"


def is_unknown_field(message: str) -> bool:
    """Whether a message is `unknown_field`'s: the one problem Kuma's JSON reader ignores (it drops the key)."""
    return message.startswith('unknown field "')


def check_message(value: object, desc: Descriptor, path: Path, out: Violations) -> None:
    """Check `value` as the JSON form of a message of type `desc`."""
    special = _SPECIAL.get(desc.full_name)
    if special is not None:
        special(value, desc, path, out)
    elif desc.full_name in _WRAPPERS:
        _check_single(value, desc.fields_by_name["value"], path, out)
    elif not isinstance(value, Mapping):
        out.add(path, f"must be an object, not {json_kind(value)}")
    else:
        check_fields(value, desc, path, out)


def check_fields(doc: Mapping[Any, Any], desc: Descriptor, path: Path, out: Violations) -> None:
    """Check the keys of an object against the fields of `desc` (the caller has checked it is an object)."""
    by_key = _fields_by_key(desc)
    used: dict[int, str] = {}  # field number -> the key that set it
    oneofs: dict[str, str] = {}  # oneof name -> the key that set it
    for key, value in doc.items():
        found = by_key.get(key) if isinstance(key, str) else None
        field_path = path.field(str(key))
        if found is None:
            out.add(field_path, unknown_field(key))
            continue
        if found.number in used:
            out.add(field_path, f"duplicate field: already set as {_quote(used[found.number])}")
            continue
        used[found.number] = key
        if value is None:
            continue
        oneof = found.containing_oneof
        if oneof is not None:
            if oneof.name in oneofs:
                first = oneofs[oneof.name]
                out.add(field_path, f"oneof {_quote(oneof.name)} is already set by {_quote(first)}")
                continue
            oneofs[oneof.name] = key
        _check_field(value, found, field_path, out)


@functools.cache
def _fields_by_key(desc: Descriptor) -> Mapping[str, FieldDescriptor]:
    """A message's fields by proto name and JSON name. Cached: descriptors live as long as the process, and
    building this per object was a third of validating a bulk apply of 10k routes."""
    by_key: dict[str, FieldDescriptor] = {}
    for field in desc.fields:
        by_key[field.name] = field
        by_key[field.json_name] = field
    return by_key


def _quote(value: object) -> str:
    return f'"{value}"'


@functools.cache
def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _accepts_null(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.full_name == "google.protobuf.Value"


def _check_field(value: object, field: FieldDescriptor, path: Path, out: Violations) -> None:
    if _is_map(field):
        _check_map(value, field, path, out)
    elif field.is_repeated:
        if not isinstance(value, list):
            out.add(path, f"must be an array, not {json_kind(value)}")
            return
        for i, item in enumerate(value):
            if item is None and not _accepts_null(field):
                out.add(path.index(i), "cannot be null")
            else:
                _check_single(item, field, path.index(i), out)
    else:
        _check_single(value, field, path, out)


def _check_map(value: object, field: FieldDescriptor, path: Path, out: Violations) -> None:
    if not isinstance(value, Mapping):
        out.add(path, f"must be an object, not {json_kind(value)}")
        return
    assert field.message_type is not None
    key_field = field.message_type.fields_by_name["key"]
    value_field = field.message_type.fields_by_name["value"]
    for key, item in value.items():
        item_path = path.key(str(key))
        if key_field.type == _F.TYPE_STRING:
            if not isinstance(key, str):
                out.add(item_path, f"key must be a string, not {json_kind(key)}")
                continue
        elif key_field.type == _F.TYPE_BOOL:
            if key not in ("true", "false"):
                out.add(item_path, 'key must be "true" or "false"')
                continue
        elif not (isinstance(key, str) and _INTEGER_TEXT.fullmatch(key)):
            out.add(item_path, "key must be an integer written as a string")
            continue
        if item is None and not _accepts_null(value_field):
            out.add(item_path, "cannot be null")
        else:
            _check_single(item, value_field, item_path, out)


def _check_single(value: object, field: FieldDescriptor, path: Path, out: Violations) -> None:
    kind = field.type
    if kind in (_F.TYPE_MESSAGE, _F.TYPE_GROUP):
        assert field.message_type is not None
        check_message(value, field.message_type, path, out)
    elif kind == _F.TYPE_ENUM:
        _check_enum(value, field, path, out)
    elif kind == _F.TYPE_STRING:
        if not isinstance(value, str):
            out.add(path, f"must be a string, not {json_kind(value)}")
    elif kind == _F.TYPE_BOOL:
        if not isinstance(value, bool):
            out.add(path, f"must be a boolean, not {json_kind(value)}")
    elif kind in _INT_RANGES:
        _check_integer(value, _INT_RANGES[kind], path, out)
    elif kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (is_number or (isinstance(value, str) and value in _FLOAT_WORDS)):
            out.add(path, f"must be a number, not {json_kind(value)}")
    elif kind == _F.TYPE_BYTES:
        _check_base64(value, path, out)
    else:  # pragma: no cover - every proto3 scalar type is handled above
        out.add(path, f"unsupported field type {kind}")


def _check_enum(value: object, field: FieldDescriptor, path: Path, out: Violations) -> None:
    enum = field.enum_type
    assert enum is not None
    if isinstance(value, str) and value in enum.values_by_name:
        return
    if isinstance(value, int) and not isinstance(value, bool) and value in enum.values_by_number:
        return
    allowed = ", ".join(v.name for v in enum.values)
    shown = _quote(value) if isinstance(value, str) else f"{value!r}"
    out.add(path, f"invalid value {shown}. Allowed values: {allowed}")


def _check_integer(value: object, bounds: tuple[int, int], path: Path, out: Violations) -> None:
    low, high = bounds
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        # No 64-bit integer has more than 20 digits; a longer text is out of range, and int() of one past
        # Python's int-string limit (4300 digits) would raise instead of being reported here.
        number = int(value) if len(value) <= _MAX_INTEGER_TEXT else None
    if number is None or not low <= number <= high:
        out.add(path, f"must be an integer in the range [{low}, {high}]")


def _check_base64(value: object, path: Path, out: Violations) -> None:
    if isinstance(value, str) and _BASE64.fullmatch(value):
        text = value.replace("-", "+").replace("_", "/")
        try:
            binascii.a2b_base64(text + "=" * (-len(text) % 4), strict_mode=True)
        except binascii.Error:
            pass
        else:
            return
    out.add(path, "must be a base64-encoded string")


def _check_json_value(value: object, path: Path, out: Violations) -> None:
    """Anything JSON can carry: what google.protobuf.Value, Struct and ListValue hold."""
    match value:
        case None | bool() | str():
            return
        case int():
            # JSON numbers become doubles in a Value; an integer beyond a double's range has no form there.
            try:
                float(value)
            except OverflowError:
                out.add(path, "must be a finite number")
        case float():
            if not math.isfinite(value):
                out.add(path, "must be a finite number")
        case list():
            for i, item in enumerate(value):
                _check_json_value(item, path.index(i), out)
        case Mapping():
            _check_json_object(value, path, out)
        case _:
            out.add(path, f"must be a JSON value, not {json_kind(value)}")


def _check_json_object(value: Mapping[Any, Any], path: Path, out: Violations) -> None:
    for key, item in value.items():
        if not isinstance(key, str):
            out.add(path.key(str(key)), f"key must be a string, not {json_kind(key)}")
        else:
            _check_json_value(item, path.key(key), out)


def _check_struct(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    if not isinstance(value, Mapping):
        out.add(path, f"must be an object, not {json_kind(value)}")
    else:
        _check_json_object(value, path, out)


def _check_value(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    _check_json_value(value, path, out)


def _check_list_value(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    if not isinstance(value, list):
        out.add(path, f"must be an array, not {json_kind(value)}")
    else:
        _check_json_value(value, path, out)


def _check_duration(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    if not isinstance(value, str):
        out.add(path, f"must be {DURATION_EXAMPLE}, not {json_kind(value)}")
        return
    try:
        read_duration(value)
    except DurationError as err:
        out.add(path, f"must be {DURATION_EXAMPLE} ({err})")


def _check_timestamp(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    if isinstance(value, str):
        try:
            Timestamp().FromJsonString(value)
        except ValueError:
            pass
        else:
            return
    out.add(path, 'must be an RFC 3339 timestamp such as "2024-01-02T03:04:05Z"')


def _check_field_mask(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    if not isinstance(value, str):
        out.add(path, f"must be a string, not {json_kind(value)}")


def _check_any(value: object, _desc: Descriptor, path: Path, out: Violations) -> None:
    if not isinstance(value, Mapping):
        out.add(path, f"must be an object, not {json_kind(value)}")
        return
    type_url = value.get("@type")
    if not isinstance(type_url, str) or "/" not in type_url:
        out.add(path.field("@type"), 'must be a type URL such as "type.googleapis.com/kuma.mesh.v1alpha1.Mesh"')
        return
    try:
        inner = descriptor_pool.Default().FindMessageTypeByName(type_url.rpartition("/")[2])
    except KeyError:
        out.add(path.field("@type"), f"unknown type {_quote(type_url)}")
        return
    if inner.full_name in _SPECIAL or inner.full_name in _WRAPPERS:
        # A well-known type keeps its JSON form under "value".
        for key in value:
            if key not in ("@type", "value"):
                out.add(path.field(str(key)), unknown_field(key))
        if "value" in value:
            check_message(value["value"], inner, path.field("value"), out)
        return
    check_fields({k: v for k, v in value.items() if k != "@type"}, inner, path, out)


_SPECIAL: dict[str, Callable[[object, Descriptor, Path, Violations], None]] = {
    "google.protobuf.Struct": _check_struct,
    "google.protobuf.Value": _check_value,
    "google.protobuf.ListValue": _check_list_value,
    "google.protobuf.Duration": _check_duration,
    "google.protobuf.Timestamp": _check_timestamp,
    "google.protobuf.FieldMask": _check_field_mask,
    "google.protobuf.Any": _check_any,
}
