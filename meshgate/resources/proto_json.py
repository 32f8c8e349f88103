"""A document read into a protobuf message as Kuma reads it: durations in Go's form.

Kuma 2.7 reads Universal YAML/JSON with golang/protobuf's jsonpb (`pkg/util/proto/proto.go` `FromJSON`), which
parses a google.protobuf.Duration with Go's `time.ParseDuration` (jsonpb `decode.go`, `case "Duration"`): `1h`,
`1m30s`, `200ms` and `0` are durations there. protojson, and Python's `json_format.ParseDict`, take only seconds
with an "s" suffix. So every path that reads a document into a message (the codec, the typed Structs of backend
configs, a policy's `conf` read by the xDS modules, ProxyTemplate's Envoy YAML) rewrites its durations first:
`with_proto_durations` returns a copy of the document whose Duration fields are in protobuf's JSON form, and
`parse_dict` hands that copy to ParseDict. Output keeps protobuf's form (`3600s`, `0.200s`), as jsonpb writes it.

A duration is accepted in either form (`read_duration`): protobuf's, within its ±10,000 years, or Go's, within
Go's ±292 years. Go's form covers protobuf's except beyond 292 years; such a value was accepted before and is
what a GET of it answers, so it still reads back. What neither form takes is left untouched here: the structure
walker (`structure.py`) reports it with its path, and ParseDict refuses it where nothing walked the document first.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from google.protobuf import descriptor_pool, json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message

from meshgate.resources.duration import SECOND, DurationError, parse_duration

__all__ = ["DURATION_EXAMPLE", "duration_json", "parse_dict", "read_duration", "with_proto_durations"]

_M = TypeVar("_M", bound=Message)

# What a malformed duration's message shows: both forms Kuma's users write.
DURATION_EXAMPLE = 'a duration such as "10s", "1h" or "200ms"'
_DURATION = "google.protobuf.Duration"
# protobuf's JSON form: seconds with up to nine fractional digits and an "s", within ±10,000 years.
_PROTO_FORM = re.compile(r"(-?)([0-9]{1,32})(?:\.([0-9]{1,9}))?s")
_MAX_SECONDS = 315_576_000_000


def read_duration(text: str) -> Duration:
    """`text` as a Duration, in protobuf's JSON form or Go's; raises DurationError (Go's message) otherwise."""
    match = _PROTO_FORM.fullmatch(text)
    if match is not None and int(match.group(2)) <= _MAX_SECONDS:
        sign = -1 if match.group(1) else 1
        nanos = int((match.group(3) or "").ljust(9, "0"))
        return Duration(seconds=sign * int(match.group(2)), nanos=sign * nanos)
    nanoseconds = parse_duration(text)
    # Truncated division, as Go's: seconds and nanos keep the duration's sign.
    seconds = abs(nanoseconds) // SECOND
    nanos = abs(nanoseconds) % SECOND
    sign = -1 if nanoseconds < 0 else 1
    return Duration(seconds=sign * seconds, nanos=sign * nanos)


def duration_json(text: str) -> str:
    """`text` (either form) in protobuf's JSON form: "1h" -> "3600s", "200ms" -> "0.200s"."""
    return read_duration(text).ToJsonString()


@functools.cache
def _may_hold_duration(desc: Descriptor) -> bool:
    """Whether a `desc` message can hold a Duration (an Any can hold anything): the others are not copied."""
    seen: set[str] = set()
    stack = [desc]
    while stack:
        d = stack.pop()
        if d.full_name in (_DURATION, "google.protobuf.Any"):
            return True
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        stack.extend(f.message_type for f in d.fields if f.message_type is not None)
    return False


@functools.cache
def _fields_by_key(desc: Descriptor) -> dict[str, FieldDescriptor]:
    """A message's fields by every key ParseDict takes for them: the proto name and the JSON name."""
    out: dict[str, FieldDescriptor] = {}
    for field in desc.fields:
        out[field.name] = field
        out[field.json_name] = field
    return out


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _single(value: Any, field: FieldDescriptor) -> Any:
    if field.message_type is None:
        return value
    return with_proto_durations(value, field.message_type)


def _field(value: Any, field: FieldDescriptor) -> Any:
    if value is None:
        return value
    if _is_map(field):
        assert field.message_type is not None
        value_field = field.message_type.fields_by_name["value"]
        if value_field.message_type is None or not isinstance(value, Mapping):
            return value
        return {key: _single(item, value_field) for key, item in value.items()}
    if field.is_repeated:
        if not isinstance(value, list):
            return value
        return [_single(item, field) for item in value]
    return _single(value, field)


def _any(doc: Mapping[Any, Any]) -> Any:
    type_url = doc.get("@type")
    if not isinstance(type_url, str):
        return doc
    try:
        inner = descriptor_pool.Default().FindMessageTypeByName(type_url.rpartition("/")[2])
    except KeyError:  # not loaded (yet): ParseDict says so, and a caller that imports it parses again
        return doc
    if inner.full_name.startswith("google.protobuf."):
        # A well-known type keeps its JSON form under "value".
        if "value" not in doc:
            return doc
        return {**doc, "value": with_proto_durations(doc["value"], inner)}
    body = with_proto_durations({k: v for k, v in doc.items() if k != "@type"}, inner)
    return {"@type": type_url, **body} if isinstance(body, dict) else doc


def with_proto_durations(doc: Any, desc: Descriptor) -> Any:
    """`doc`, the JSON form of a `desc` message, with each Duration written in Go's form rewritten to protobuf's.

    A copy where something changed (the caller's document is never edited); anything that is not a duration,
    or not a document of that shape, is left as it is for the structure checks or ParseDict to refuse."""
    name = desc.full_name
    if name == _DURATION:
        if not isinstance(doc, str):
            return doc
        try:
            return duration_json(doc)
        except DurationError:
            return doc
    if name == "google.protobuf.Any":
        return _any(doc) if isinstance(doc, Mapping) else doc
    if name.startswith("google.protobuf.") or not isinstance(doc, Mapping) or not _may_hold_duration(desc):
        return doc  # Struct, Value, wrappers, Timestamp, ...: no Duration inside
    fields = _fields_by_key(desc)
    out: dict[Any, Any] = {}
    for key, value in doc.items():
        field = fields.get(key) if isinstance(key, str) else None
        out[key] = value if field is None else _field(value, field)
    return out


def parse_dict(doc: Mapping[str, Any], message: _M, *, ignore_unknown_fields: bool = False) -> _M:
    """json_format.ParseDict after `with_proto_durations`; raises what ParseDict raises."""
    normalised = with_proto_durations(doc, cast(Descriptor, message.DESCRIPTOR))
    json_format.ParseDict(normalised, message, ignore_unknown_fields=ignore_unknown_fields)
    return message
