"""Go's `time.ParseDuration` and `Duration.String`, as Kuma reads and writes durations.

Kuma reads every google.protobuf.Duration of a resource document with golang/protobuf's jsonpb, which parses it
with `time.ParseDuration` (jsonpb `decode.go`, `case "Duration"`), so `1h`, `1m30s` and `200ms` are durations
there (`proto_json.py` reads documents that way). It also reads the `kuma.io/sidecar-drain-time` annotation with
`time.ParseDuration` and passes the result on as `KUMA_DATAPLANE_DRAIN_TIME` formatted by `Duration.String`, so
`90s` arrives as `1m30s` and `1h` as `1h0m0s`. Durations are integers of nanoseconds here, as in Go.

`parse_duration` follows Go's algorithm step by step (the same overflow points, the same float64 rounding of
fractions, the same messages), so it takes what Go takes and no more: text is user input, and nothing here turns
a long string into a huge integer.
"""

from __future__ import annotations

__all__ = ["DurationError", "format_duration", "parse_duration"]

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "\u00b5s": MICROSECOND,  # U+00B5 micro sign
    "\u03bcs": MICROSECOND,  # U+03BC Greek small letter mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
# Go accumulates in a uint64 and allows up to 1<<63 before the sign is applied (so -1<<63 ns is a duration).
_LIMIT = 1 << 63
_INT64_MAX = _LIMIT - 1
_DIGITS = frozenset("0123456789")


class DurationError(ValueError):
    """Not a Go duration; the message is Go's."""


def _leading_int(text: str) -> tuple[int, str] | None:
    """Go's leadingInt: the leading digits as an integer and the rest; None on overflow."""
    value = 0
    i = 0
    while i < len(text) and text[i] in _DIGITS:
        if value > _LIMIT // 10:
            return None
        value = value * 10 + ord(text[i]) - ord("0")
        if value > _LIMIT:
            return None
        i += 1
    return value, text[i:]


def _leading_fraction(text: str) -> tuple[int, float, str]:
    """Go's leadingFraction: the leading digits, the scale to divide them by, and the rest. Digits past what a
    uint64 holds are consumed without adding precision, as in Go."""
    value = 0
    scale = 1.0
    overflow = False
    i = 0
    while i < len(text) and text[i] in _DIGITS:
        if not overflow:
            if value > _INT64_MAX // 10:
                overflow = True
            else:
                digit = value * 10 + ord(text[i]) - ord("0")
                if digit > _LIMIT:
                    overflow = True
                else:
                    value = digit
                    scale *= 10
        i += 1
    return value, scale, text[i:]


def parse_duration(text: str) -> int:
    """Nanoseconds in `text` ("300ms", "-1.5h", "2h45m"); raises DurationError as Go would."""
    original = text
    invalid = DurationError(f"time: invalid duration {_quote(original)}")
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise invalid
    total = 0
    while text:
        if not (text[0] == "." or text[0] in _DIGITS):
            raise invalid
        before = len(text)
        whole = _leading_int(text)
        if whole is None:
            raise invalid
        value, text = whole
        has_whole = len(text) != before
        fraction, scale, has_fraction = 0, 1.0, False
        if text[:1] == ".":
            text = text[1:]
            before = len(text)
            fraction, scale, text = _leading_fraction(text)
            has_fraction = len(text) != before
        if not has_whole and not has_fraction:  # no digits, e.g. ".s"
            raise invalid
        i = 0
        while i < len(text) and text[i] != "." and text[i] not in _DIGITS:
            i += 1
        if i == 0:
            raise DurationError(f"time: missing unit in duration {_quote(original)}")
        unit_text, text = text[:i], text[i:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError(f"time: unknown unit {_quote(unit_text)} in duration {_quote(original)}")
        if value > _LIMIT // unit:
            raise invalid
        value *= unit
        if fraction > 0:
            # Go scales the fraction in float64 and truncates: the same rounding for the same text.
            value += int(float(fraction) * (float(unit) / scale))
            if value > _LIMIT:
                raise invalid
        total += value
        if total > _LIMIT:
            raise invalid
    if negative:
        return -total
    if total > _INT64_MAX:
        raise invalid
    return total


def _fraction(value: int, precision: int) -> tuple[str, int]:
    """Go's fmtFrac: the digits after the point without trailing zeros, and what is left above them."""
    digits = ""
    printed = False
    for _ in range(precision):
        digit = value % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        value //= 10
    return ("." + digits if printed else ""), value


def format_duration(nanoseconds: int) -> str:
    """Go's Duration.String: "1h2m3.5s", "1.5ms", "0s"."""
    if nanoseconds == 0:
        return "0s"
    sign = "-" if nanoseconds < 0 else ""
    u = abs(nanoseconds)
    if u < SECOND:
        if u < MICROSECOND:
            return f"{sign}{u}ns"
        precision, unit = (3, "\u00b5s") if u < MILLISECOND else (6, "ms")
        frac, whole = _fraction(u, precision)
        return f"{sign}{whole}{frac}{unit}"
    frac, u = _fraction(u, 9)
    text = f"{u % 60}{frac}s"
    u //= 60
    if u > 0:
        text = f"{u % 60}m{text}"
        u //= 60
        if u > 0:
            text = f"{u}h{text}"
    return sign + text


def _quote(text: str) -> str:
    """Go's time.quote: `"` and `\\` escaped, and each byte of a non-ASCII or control character as `\\xNN`."""
    out = ['"']
    for char in text:
        if char < " " or char >= "\x80":
            # A lone surrogate (JSON can carry one) is what Go's decoder would have made of it: U+FFFD.
            data = char.encode("utf-8") if not "\ud800" <= char <= "\udfff" else "\ufffd".encode()
            out.extend(f"\\x{byte:02x}" for byte in data)
        else:
            out.append("\\" + char if char in ('"', "\\") else char)
    out.append('"')
    return "".join(out)
