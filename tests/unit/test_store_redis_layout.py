"""The redis store's layout without a server: member order, mesh ranges, records, change messages."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from google.protobuf import duration_pb2
from hypothesis import given
from hypothesis import strategies as st

from meshgate.resources.model import ResourceKey
from meshgate.store.events import ChangeEvent, Op
from meshgate.store.protocol import StoreError
from meshgate.store.redis_layout import (
    decode_message,
    decode_record,
    encode_body,
    from_micros,
    member,
    mesh_range,
    to_micros,
)
from tests.store_support import resource, struct

names = st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=8)


def lex_in_range(raw: bytes, lo: str, hi: str) -> bool:
    """Redis's ZRANGEBYLEX membership for our bounds: '-'/'+', or '[' inclusive and '(' exclusive."""
    lower = lo == "-" or (lo[0] == "[" and raw >= lo[1:].encode())
    upper = hi == "+" or (hi[0] == "(" and raw < hi[1:].encode())
    return lower and upper


@given(st.lists(st.tuples(names, names), max_size=20))
def test_member_byte_order_is_the_mesh_name_order_of_the_other_stores(pairs: list[tuple[str, str]]) -> None:
    by_member = sorted(pairs, key=lambda p: member(ResourceKey("K", *p)).encode())
    assert by_member == sorted(pairs)


@given(names, names, names)
def test_a_mesh_range_holds_exactly_that_meshs_members(mesh: str, other_mesh: str, name: str) -> None:
    lo, hi = mesh_range(mesh)
    assert lex_in_range(member(ResourceKey("K", mesh, name)).encode(), lo, hi)
    assert lex_in_range(member(ResourceKey("K", other_mesh, name)).encode(), lo, hi) == (other_mesh == mesh)
    assert lex_in_range(member(ResourceKey("K", other_mesh, name)).encode(), *mesh_range(None))


@pytest.mark.parametrize("key", [ResourceKey("K", "a\0b", "n"), ResourceKey("K", "m", "x\0")])
def test_nul_in_a_key_is_refused(key: ResourceKey) -> None:
    with pytest.raises(ValueError, match="NUL"):
        member(key)


def test_a_record_round_trips() -> None:
    original = resource("K", "m", "n", duration_pb2.Duration(seconds=3), {"team": "é\nx", "kuma.io/origin": "zone"})
    created = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    record = b"42\n" + to_micros(created).encode() + b"\n1714564800999999\n" + encode_body(original)
    got = decode_record(original.key, record)
    assert (got.key, got.spec, dict(got.meta.labels)) == (original.key, original.spec, dict(original.meta.labels))
    assert got.meta.version == "42"
    assert got.meta.creation_time == created
    assert got.meta.modification_time == datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC)


def test_spec_bytes_may_contain_newlines() -> None:
    original = resource("K", "m", "n", struct(text="a\nb\n\n"))
    assert decode_record(original.key, b"1\n0\n0\n" + encode_body(original)).spec == original.spec


@pytest.mark.parametrize("record", [b"1\n2\n3", b"1\nx\n3\ngoogle.protobuf.Struct\n{}\n", b"1\n0\n0\nno.Such\n{}\n"])
def test_a_record_that_does_not_decode_is_a_store_error(record: bytes) -> None:
    with pytest.raises(StoreError):
        decode_record(ResourceKey("K", "m", "n"), record)


def test_times_round_trip_and_naive_means_utc() -> None:
    t = datetime(1999, 12, 31, 23, 59, 59, 1, tzinfo=UTC)
    assert from_micros(to_micros(t)) == t
    assert to_micros(t.replace(tzinfo=None)) == to_micros(t)


def test_a_change_message_decodes() -> None:
    data = json.dumps({"w": "ab:7", "e": [["c", "K", "m\0a"], ["d", "Mesh", "\0m"]], "k": ["Big"]}).encode()
    message = decode_message(data)
    assert message.write_id == "ab:7"
    assert message.events == [
        ChangeEvent(ResourceKey("K", "m", "a"), Op.CREATE),
        ChangeEvent(ResourceKey("Mesh", "", "m"), Op.DELETE),
    ]
    assert message.kinds == ["Big"]
    # The script's encoder writes an empty table as an object.
    assert decode_message(b'{"w": "x", "e": {}, "k": ["Big"]}').events == []


@pytest.mark.parametrize(
    "data",
    [b"[]", b"nope", b'{"e": [["c", "K"]]}', b'{"e": [["z", "K", "m\\u0000a"]]}', b'{"e": "x"}', b'{"e": [[1, 2, 3]]}'],
)
def test_anything_else_on_the_channel_is_not_a_change_message(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - json errors and ours are all ValueErrors
        decode_message(data)
