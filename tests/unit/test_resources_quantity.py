"""Go's encodings that reach the Deployment: resource quantities (k8s.io/apimachinery) and durations (time)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshgate.resources.duration import DurationError, format_duration, parse_duration
from meshgate.resources.quantity import QuantityError, canonical, milli_value


@pytest.mark.parametrize(
    ("given_text", "expected"),
    [
        # Already canonical: Go keeps the text.
        ("50m", "50m"),
        ("64Mi", "64Mi"),
        ("100Mi", "100Mi"),
        ("1Ki", "1Ki"),
        ("2048", "2048"),
        ("5G", "5G"),
        ("1e3", "1e3"),
        ("1E3", "1E3"),
        # Re-encoded.
        ("1000m", "1"),
        ("1000", "1k"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("1.5", "1500m"),
        ("512Mi", "512Mi"),
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("1.5Ki", "1536"),
        ("0.1n", "1n"),  # rounded up to a whole nano
        ("0m", "0"),
        ("0", "0"),
        ("-1", "-1"),
        ("12345678901234567890", "12345678901234567890"),
        ("16Ei", "9223372036854775807"),  # BinarySI is capped at the int64 maximum
        (2, "2"),
        (0.25, "250m"),
    ],
)
def test_canonical_matches_go(given_text: str | int | float, expected: str) -> None:
    assert canonical(given_text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1.5.5", "1Qi", "1e", "--1", "1 m", True])
def test_not_a_quantity(bad: str | bool) -> None:
    with pytest.raises(QuantityError):
        canonical(bad)


def test_milli_value_rounds_up() -> None:
    assert milli_value("1000m") == 1000
    assert milli_value("2.5") == 2500
    assert milli_value("1n") == 1
    assert milli_value("4") == 4000


quantities = st.builds(
    lambda whole, frac, suffix: f"{whole}{'.' + frac if frac else ''}{suffix}",
    st.integers(min_value=0, max_value=10**6),
    st.text(alphabet="0123456789", max_size=4),
    st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "n", "u", "e3", "e-3"]),
)


@given(quantities)
def test_canonical_is_a_fixed_point(text: str) -> None:
    once = canonical(text)
    assert canonical(once) == once


@pytest.mark.parametrize(
    ("text", "nanoseconds", "formatted"),
    [
        ("30s", 30 * 10**9, "30s"),
        ("90s", 90 * 10**9, "1m30s"),
        ("1h", 3600 * 10**9, "1h0m0s"),
        ("1.5s", 1_500_000_000, "1.5s"),
        ("300ms", 300_000_000, "300ms"),
        ("1.5ms", 1_500_000, "1.5ms"),
        ("2us", 2000, "2\u00b5s"),
        ("2\u00b5s", 2000, "2\u00b5s"),
        ("15ns", 15, "15ns"),
        ("-1m", -60 * 10**9, "-1m0s"),
        ("2h45m", (2 * 3600 + 45 * 60) * 10**9, "2h45m0s"),
        ("0", 0, "0s"),
        (".5s", 500_000_000, "500ms"),
    ],
)
def test_durations_parse_and_format_as_go(text: str, nanoseconds: int, formatted: str) -> None:
    assert parse_duration(text) == nanoseconds
    assert format_duration(nanoseconds) == formatted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("30", 'time: missing unit in duration "30"'),
        ("3d", 'time: unknown unit "d" in duration "3d"'),
        ("s", 'time: invalid duration "s"'),
        (".s", 'time: invalid duration ".s"'),
        ("9999999999h", 'time: invalid duration "9999999999h"'),
    ],
)
def test_bad_durations_fail_with_go_messages(text: str, message: str) -> None:
    with pytest.raises(DurationError, match="^" + message.replace(".", r"\.") + "$"):
        parse_duration(text)


@given(st.integers(min_value=-(2**62), max_value=2**62))
def test_format_then_parse_is_identity(nanoseconds: int) -> None:
    assert parse_duration(format_duration(nanoseconds)) == nanoseconds
