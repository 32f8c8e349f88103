"""Properties of the codec over generated documents (Hypothesis).

- A valid MeshGateway survives encode(decode(doc)) unchanged, and its spec bytes are stable.
- For any document shaped roughly like a kind's schema (right and wrong types mixed), `decode` either returns
  a resource or raises ValidationError: the structure walker never lets through what ParseDict would reject.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.resources import codec, registry
from meshgate.resources.errors import ValidationError

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
TAG_VALUE = st.from_regex(r"[a-zA-Z0-9][a-zA-Z0-9._-]{0,10}", fullmatch=True)
TAG_KEY = st.from_regex(r"[a-z][a-z0-9.-]{0,8}/?[a-z0-9]{1,8}", fullmatch=True).filter(
    lambda key: key not in {"kuma.io/service", "kuma.io/zone", "kuma.io/protocol"}
)
TAGS = st.dictionaries(TAG_KEY, TAG_VALUE, max_size=3)
LABELS = st.dictionaries(st.one_of(LABEL, st.tuples(LABEL, LABEL).map("/".join)), LABEL, max_size=3)
HOSTNAMES = st.one_of(
    st.just("*"),
    st.lists(LABEL, min_size=1, max_size=3).map(".".join),
    st.lists(LABEL, min_size=1, max_size=2).map(lambda labels: "*." + ".".join(labels)),
)


@st.composite
def listeners(draw: st.DrawFn, port: int) -> dict[str, Any]:
    protocol = draw(st.sampled_from(["HTTP", "HTTPS", "TCP", "TLS"]))
    listener: dict[str, Any] = {"port": port, "protocol": protocol}
    if draw(st.booleans()):
        listener["hostname"] = draw(HOSTNAMES)
    if protocol in ("HTTPS", "TLS"):
        secrets = draw(st.lists(LABEL, min_size=1, max_size=2))
        listener["tls"] = {"mode": "TERMINATE", "certificates": [{"secret": s} for s in secrets]}
    tags = draw(TAGS)
    if tags:
        listener["tags"] = tags
    limit = draw(st.integers(min_value=0, max_value=10_000))
    if limit:
        listener["resources"] = {"connectionLimit": limit}
    return listener


@st.composite
def gateways(draw: st.DrawFn) -> dict[str, Any]:
    # One listener per port keeps the shared-port rules out of the way; they have their own tests.
    ports = draw(st.lists(st.integers(min_value=1, max_value=65535), min_size=1, max_size=4, unique=True))
    doc: dict[str, Any] = {
        "type": "MeshGateway",
        "mesh": draw(LABEL),
        "name": draw(LABEL),
        "selectors": [{"match": {"kuma.io/service": draw(TAG_VALUE), **draw(TAGS)}}],
        "conf": {"listeners": [draw(listeners(port)) for port in ports]},
    }
    labels = draw(LABELS)
    if labels:
        doc["labels"] = labels
    tags = draw(TAGS)
    if tags:
        doc["tags"] = tags
    return doc


@settings(max_examples=200)
@given(gateways())
def test_valid_gateways_round_trip(doc: dict[str, Any]) -> None:
    resource = codec.load(doc)
    assert codec.encode(resource) == doc
    assert codec.spec_bytes(codec.decode(codec.encode(resource))) == codec.spec_bytes(resource)


JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=6),
)
JUNK = st.one_of(
    JSON_SCALARS,
    st.lists(JSON_SCALARS, max_size=2),
    st.dictionaries(st.text(max_size=4), JSON_SCALARS, max_size=2),
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)),
    max_leaves=8,
)
_F = FieldDescriptor
_SPECIAL: dict[str, st.SearchStrategy[Any]] = {
    "google.protobuf.Struct": st.dictionaries(st.text(max_size=4), JSON, max_size=3),
    "google.protobuf.Value": JSON,
    "google.protobuf.ListValue": st.lists(JSON, max_size=3),
    # protobuf's form, Go's (Kuma's jsonpb reads both), and neither.
    "google.protobuf.Duration": st.sampled_from(
        [
            *("1s", "0.5s", "-2s", "1.0000000001s", "315576000000s"),
            *("1m", "1h30m", "-1.5h", "200ms", "0"),
            *("10", "1d", "s", "2562048h"),
        ]
    ),
    "google.protobuf.Timestamp": st.sampled_from(["2024-01-02T03:04:05Z", "2024-13-01T00:00:00Z", "now"]),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == _F.TYPE_ENUM:
        assert field.enum_type is not None
        values = field.enum_type.values
        return st.one_of(st.sampled_from([v.name for v in values]), st.sampled_from([v.number for v in values]))
    if kind == _F.TYPE_STRING:
        return st.text(max_size=8)
    if kind == _F.TYPE_BOOL:
        return st.booleans()
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return st.one_of(st.floats(), st.sampled_from(["NaN", "Infinity", "-Infinity", "1.5"]))
    if kind == _F.TYPE_BYTES:
        return st.one_of(st.sampled_from(["", "YWJj", "YWJjZA==", "YWJjZA", "a-_b", "%%"]), st.text(max_size=6))
    return st.one_of(
        st.integers(min_value=-(2**65), max_value=2**65),
        st.integers(min_value=-5, max_value=5).map(str),
        st.sampled_from([1.0, 2.5, "1e3", " 1"]),
    )


def _single(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.type == _F.TYPE_MESSAGE:
        assert field.message_type is not None
        return message(field.message_type, depth + 1)
    return _scalar(field)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    right: st.SearchStrategy[Any]
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        value_field = field.message_type.fields_by_name["value"]
        right = st.dictionaries(st.text(max_size=4), _single(value_field, depth), max_size=3)
    elif field.is_repeated:
        right = st.lists(_single(field, depth), max_size=3)
    else:
        right = _single(field, depth)
    # Mostly the right shape, so that documents get deep before they go wrong.
    return st.one_of(*[right] * 7, JUNK)


@cache
def message(desc: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    if desc.full_name in _SPECIAL:
        return st.one_of(_SPECIAL[desc.full_name], JUNK)
    if desc.full_name.startswith("google.protobuf.") and "value" in desc.fields_by_name:
        return st.one_of(_scalar(desc.fields_by_name["value"]), JUNK)
    if depth > 6:
        return st.just({})
    optional: dict[Any, st.SearchStrategy[Any]] = {}
    for field in desc.fields:
        key = st.sampled_from(sorted({field.json_name, field.name}))
        optional[field.json_name] = st.tuples(key, st.deferred(lambda f=field: _field(f, depth)))  # type: ignore[misc]
    return st.fixed_dictionaries({}, optional=optional).map(lambda d: dict(d.values()))


@st.composite
def shaped_documents(draw: st.DrawFn) -> dict[str, Any]:
    descriptor = draw(st.sampled_from(registry.KINDS))
    doc: dict[str, Any] = {"type": descriptor.name, "name": "x"}
    if descriptor.mesh_scoped:
        doc["mesh"] = "default"
    spec = draw(message(descriptor.spec_type.DESCRIPTOR))
    if draw(st.booleans()):
        spec[draw(st.text(max_size=3))] = draw(JUNK)
    return {**spec, **doc}


@settings(max_examples=500)
@given(shaped_documents())
def test_decode_only_ever_raises_validation_errors(doc: dict[str, Any]) -> None:
    try:
        resource = codec.decode(doc)
    except ValidationError as err:
        rejected = err.violations
    else:
        rejected = []
    if rejected:
        assert all(v.message for v in rejected)
        return
    # What decoded once decodes again from its own encoding, to the same spec.
    again = codec.decode(codec.encode(resource))
    assert codec.spec_bytes(again) == codec.spec_bytes(resource)
    codec.validate(resource)  # validators never raise, whatever they are given
