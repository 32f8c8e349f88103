"""Kubernetes resource quantities (`500m`, `1Gi`, `2`), written the way Kuma's Go client writes them.

Kuma decodes a MeshGatewayInstance's `resources` into `resource.Quantity` values and encodes them again when it
creates the Deployment, so what reaches the API server is Go's canonical form: `1000m` becomes `1`, `1024Mi`
becomes `1Gi`, `0.5` becomes `500m`. This module reproduces `ParseQuantity` and `MarshalJSON` of
k8s.io/apimachinery's `pkg/api/resource`, including the case where Go keeps the text exactly as written (an
already-canonical value such as `100Mi` or `250m`).

`canonical("1000m") == "1"`; `canonical("bogus")` raises `QuantityError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from fractions import Fraction

__all__ = ["QuantityError", "canonical", "milli_value"]


class QuantityError(ValueError):
    """The text is not a quantity; the message is Go's."""


class _Format(Enum):
    DECIMAL_SI = "DecimalSI"
    BINARY_SI = "BinarySI"
    DECIMAL_EXPONENT = "DecimalExponent"


_DECIMAL_SUFFIXES = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_BINARY_SUFFIXES = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_BY_EXPONENT = {v: k for k, v in _DECIMAL_SUFFIXES.items()}
_BINARY_BY_EXPONENT = {v: k for k, v in _BINARY_SUFFIXES.items()}
_SUFFIX_CHARS = frozenset("eEinumkKMGTP")
_DIGITS = frozenset("0123456789")
_INT64_MAX = 2**63 - 1
# Go keeps at most 18 decimal digits in its int64 fast path (maxInt64Factors).
_MAX_INT64_FACTORS = 18
_NANO = Fraction(1, 10**9)
_FORMAT_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


@dataclass(frozen=True, slots=True)
class _Parsed:
    positive: bool
    num: str
    denom: str
    suffix: str


def _split(text: str) -> _Parsed:
    """Go's parseQuantityString: sign, numerator without leading zeros, denominator, suffix."""
    positive, pos, end = True, 0, len(text)
    if text[:1] in ("-", "+"):
        positive = text[0] == "+"
        pos = 1
    while pos < end and text[pos] == "0":
        pos += 1
    if pos >= end:
        return _Parsed(positive, "0", "", "")
    start = pos
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    num = text[start:pos] or "0"
    denom = ""
    if pos < end and text[pos] == ".":
        pos += 1
        start = pos
        while pos < end and text[pos] in _DIGITS:
            pos += 1
        denom = text[start:pos]
    suffix_start = pos
    while pos < end and text[pos] in _SUFFIX_CHARS:
        pos += 1
    if pos < end and text[pos] in ("-", "+"):
        pos += 1
    while pos < end and text[pos] in _DIGITS:
        pos += 1
    if pos < end:
        raise QuantityError(_FORMAT_MESSAGE)
    return _Parsed(positive, num, denom, text[suffix_start:])


def _interpret(suffix: str) -> tuple[int, int, _Format]:
    """(base, exponent, format) of a suffix, as Go's quantitySuffixer.interpret."""
    if suffix in _DECIMAL_SUFFIXES:
        return 10, _DECIMAL_SUFFIXES[suffix], _Format.DECIMAL_SI
    if suffix in _BINARY_SUFFIXES:
        return 2, _BINARY_SUFFIXES[suffix], _Format.BINARY_SI
    if len(suffix) > 1 and suffix[0] in "eE":
        try:
            return 10, int(suffix[1:]), _Format.DECIMAL_EXPONENT
        except ValueError:
            pass
    raise QuantityError("unable to parse quantity's suffix")


def _kept_as_written(parsed: _Parsed, base_exponent: int, fmt: _Format) -> bool:
    """Whether Go's ParseQuantity caches the input string, which MarshalJSON then writes back verbatim."""
    if fmt is _Format.BINARY_SI:
        if parsed.denom or base_exponent < 0:
            return False
        precision = 15 - len(parsed.num) - int(base_exponent * 3 / 10) - 1
        if precision < 0:
            return False
        value = int(parsed.num)
        return value << base_exponent <= _INT64_MAX and base_exponent % 10 == 0 and value & 0x07 != 0
    precision = _MAX_INT64_FACTORS - (len(parsed.num) + len(parsed.denom))
    scale = base_exponent - len(parsed.denom)
    if precision < 0 or scale < -9:
        return False
    shifted = parsed.num + parsed.denom
    if int(shifted) > _INT64_MAX:
        return False
    # Go's `%` truncates towards zero; a multiple of 3 is one either way.
    return scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def _remove_factors(value: int, base: int) -> tuple[int, int]:
    times = 0
    while value != 0 and value % base == 0:
        value //= base
        times += 1
    return value, times


def _decimal(value: Fraction, fmt: _Format) -> str:
    """Go's AsCanonicalBytes: the smallest mantissa, with an exponent that is a multiple of 3."""
    sign = "-" if value < 0 else ""
    magnitude = abs(value)
    exponent = 0
    # Every value here is a whole number of nanos (ParseQuantity rounds up to 1n), so 9 steps suffice.
    while magnitude.denominator != 1:
        magnitude *= 10
        exponent -= 1
    mantissa, times = _remove_factors(magnitude.numerator, 10)
    exponent += times
    while exponent % 3 != 0:
        mantissa *= 10
        exponent -= 1
    if fmt is _Format.DECIMAL_EXPONENT:
        suffix = f"e{exponent}" if exponent else ""
    else:
        # Go writes no suffix at all when the table has none for this exponent (beyond E or n).
        suffix = _DECIMAL_BY_EXPONENT.get(exponent, "")
    return f"{sign}{mantissa}{suffix}"


def _text(quantity: str | int | float) -> str:
    text = str(quantity).strip() if not isinstance(quantity, bool) else ""
    if not text:
        raise QuantityError(_FORMAT_MESSAGE)
    return text


def _exact(parsed: _Parsed, base: int, exponent: int) -> Fraction:
    value = Fraction(int(parsed.num + parsed.denom), 10 ** len(parsed.denom)) * Fraction(base) ** exponent
    return value if parsed.positive else -value


def milli_value(quantity: str | int | float) -> int:
    """Go's `Quantity.MilliValue()`: thousandths, rounded up (away from zero)."""
    parsed = _split(_text(quantity))
    base, exponent, _ = _interpret(parsed.suffix)
    millis = _exact(parsed, base, exponent) * 1000
    whole = abs(millis.numerator) // millis.denominator + (1 if millis.denominator != 1 else 0)
    return whole if millis >= 0 else -whole


def canonical(quantity: str | int | float) -> str:
    """The text Go's `resource.Quantity` marshals after parsing `quantity` (a YAML string or number)."""
    text = _text(quantity)
    if text == "0":
        return "0"
    parsed = _split(text)
    base, exponent, fmt = _interpret(parsed.suffix)
    if _kept_as_written(parsed, exponent, fmt):
        return text

    value = _exact(parsed, base, exponent)
    if value == 0:
        return "0"
    # Non-zero amounts round up (away from zero) to a whole nano: asking for a resource gets some.
    nanos = abs(value) / _NANO
    whole = nanos.numerator // nanos.denominator + (1 if nanos.denominator != 1 else 0)
    value = Fraction(whole) * _NANO * (1 if value > 0 else -1)
    if fmt is _Format.BINARY_SI and value > _INT64_MAX:
        value = Fraction(_INT64_MAX)
    if fmt is _Format.BINARY_SI and 0 < value < 1:
        fmt = _Format.DECIMAL_SI

    if fmt is _Format.BINARY_SI and (-1024 < value < 1024 or value.denominator != 1):
        fmt = _Format.DECIMAL_SI
    if fmt is not _Format.BINARY_SI:
        return _decimal(value, fmt)
    sign = "-" if value < 0 else ""
    mantissa, times = _remove_factors(abs(value.numerator), 1024)
    return f"{sign}{mantissa}{_BINARY_BY_EXPONENT.get(times * 10, '')}"
