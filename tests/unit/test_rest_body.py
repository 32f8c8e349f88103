"""The body parser's bounds (`meshgate.rest.body`): depth, expanded size, integer length, every one a 400."""

from __future__ import annotations

import math

import pytest

from meshgate.rest.body import MAX_DEPTH, MAX_INTEGER_DIGITS, parse_document
from meshgate.rest.errors import ApiError


def nested_json(depth: int) -> bytes:
    """An object whose `x` holds `depth - 1` nested arrays: `depth` containers in all."""
    return b'{"x": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def nested_yaml_block(depth: int) -> bytes:
    """`depth` nested block mappings, one more indentation per level."""
    return "\n".join(f"{'  ' * i}k{i}:" for i in range(depth)).encode() + b" leaf\n"


def refusal(raw: bytes) -> str:
    with pytest.raises(ApiError) as caught:
        parse_document(raw)
    assert caught.value.status == 400
    return caught.value.detail


def test_json_at_the_depth_limit_parses_and_one_deeper_is_refused() -> None:
    assert parse_document(nested_json(MAX_DEPTH))["x"] is not None
    assert refusal(nested_json(MAX_DEPTH + 1)) == f"the body nests deeper than {MAX_DEPTH} levels"


def test_json_nesting_past_the_recursion_limit_is_a_400_not_a_recursion_error() -> None:
    assert "nests deeper" in refusal(nested_json(100_000))


def test_yaml_block_nesting_is_bounded_like_json() -> None:
    assert parse_document(nested_yaml_block(MAX_DEPTH))["k0"] is not None
    assert refusal(nested_yaml_block(MAX_DEPTH + 1)) == f"the body nests deeper than {MAX_DEPTH} levels"


def test_yaml_sequences_on_one_line_count_as_levels() -> None:
    assert "nests deeper" in refusal(b"x:\n" + b"- " * 200_000 + b"leaf\n")


def test_deep_yaml_flow_collections_are_a_400() -> None:
    detail = refusal(b"x: " + b"[" * 5000 + b"]" * 5000)
    assert detail.startswith("the body")


def test_an_alias_bomb_is_refused_before_it_is_built() -> None:
    """Nine levels of ten aliases each would expand to 10**9 values."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert refusal("\n".join(lines).encode()).startswith("the body has more than")


def test_a_few_aliases_are_fine() -> None:
    doc = parse_document(b"a: &sel {kuma.io/service: web}\nb: *sel\n")
    assert doc["a"] == doc["b"] == {"kuma.io/service": "web"}


@pytest.mark.parametrize(
    "raw",
    [
        b'{"port": ' + b"9" * 5001 + b"}",
        b'{"port": -' + b"9" * 5001 + b"}",
        b"port: " + b"9" * 5001 + b"\n",
        b"port: 0x" + b"f" * 5001 + b"\n",
    ],
)
def test_integers_past_pythons_string_limit_become_infinite_not_a_value_error(raw: bytes) -> None:
    """The structural checks then report the field as out of range (see test_rest_limits)."""
    port = parse_document(raw)["port"]
    assert isinstance(port, float)
    assert math.isinf(port)


def test_integers_within_the_digit_bound_stay_exact() -> None:
    big = "1" * MAX_INTEGER_DIGITS
    assert parse_document(f'{{"n": {big}}}'.encode())["n"] == int(big)
    assert parse_document(f"n: {big}\n".encode())["n"] == int(big)


def test_yaml_timestamps_stay_strings_as_in_kuma() -> None:
    assert parse_document(b"t: 2024-01-02T03:04:05Z\n")["t"] == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        (b"", "the body is empty"),
        (b"\xff\xfe", "the body is not UTF-8"),
        (b"[1, 2]", "the body must be a single JSON or YAML object"),
        (b"a: [", "the body is neither JSON nor YAML"),
        (b"? [a, b]\n: 1\n", "the body is neither JSON nor YAML"),
    ],
)
def test_malformed_bodies_are_400s(raw: bytes, detail: str) -> None:
    assert refusal(raw).startswith(detail)
