"""Go's `time.ParseDuration` and `Duration.String`, for the one duration Kuma writes into a gateway Pod.

Kuma reads the `kuma.io/sidecar-drain-time` annotation with `time.ParseDuration` and passes the result on as
`KUMA_DATAPLANE_DRAIN_TIME` formatted by `Duration.String`, so `90s` arrives as `1m30s` and `1h` as `1h0m0s`.
Durations are integers of nanoseconds here, as in Go.
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
_INT64_MAX = 2**63 - 1


class DurationError(ValueError):
    """Not a Go duration; the message is Go's."""


def parse_duration(text: str) -> int:
    """Nanoseconds in `text` ("300ms", "-1.5h", "2h45m"); raises DurationError as Go would."""
    original = text
    negative = False
    if text[:1] in ("-", "+"):
        negative = text[0] == "-"
        text = text[1:]
    if text == "0":
        return 0
    if not text:
        raise DurationError(f"time: invalid duration {_quote(original)}")
    total = 0
    while text:
        i = 0
        while i < len(text) and text[i].isdigit() and text[i].isascii():
            i += 1
        whole_text, text = text[:i], text[i:]
        fraction_text = ""
        if text[:1] == ".":
            text = text[1:]
            i = 0
            while i < len(text) and text[i].isdigit() and text[i].isascii():
                i += 1
            fraction_text, text = text[:i], text[i:]
        if not whole_text and not fraction_text:
            raise DurationError(f"time: invalid duration {_quote(original)}")
        i = 0
        while i < len(text) and text[i] != "." and not (text[i].isdigit() and text[i].isascii()):
            i += 1
        unit_text, text = text[:i], text[i:]
        if not unit_text:
            raise DurationError(f"time: missing unit in duration {_quote(original)}")
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise DurationError(f"time: unknown unit {_quote(unit_text)} in duration {_quote(original)}")
        value = int(whole_text or "0")
        if value > _INT64_MAX // unit:
            raise DurationError(f"time: invalid duration {_quote(original)}")
        value *= unit
        if fraction_text:
            # Go scales the fraction in float64 and truncates: the same rounding for the same text.
            value += int(float(int(fraction_text)) * (float(unit) / float(10 ** len(fraction_text))))
        total += value
        if total > _INT64_MAX:
            raise DurationError(f"time: invalid duration {_quote(original)}")
    return -total if negative else total


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
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
