"""Numbers in query strings: parsed strictly and within bounds, or a 400 naming the parameter.

`int()` is the wrong parser for a query string: it accepts " 5", "+5" and "5_000", and past 4300 digits it
raises a ValueError of its own (Python's int-string conversion limit) that would surface as a 500. Go's
`strconv.Atoi`, which Kuma uses, accepts an optional sign and digits only, so we do the same, and refuse a
number longer than any bound we apply before converting it.
"""

from __future__ import annotations

from collections.abc import Mapping

from meshgate.rest.errors import ApiError, InvalidParameter

__all__ = ["MAX_QUERY_INTEGER", "parse_int", "query_int"]

# Every query number we take (offsets, page sizes, event sequence numbers) fits in a signed 64-bit integer,
# so every store and every peer can hold it.
MAX_QUERY_INTEGER = 2**63 - 1
_MAX_DIGITS = len(str(MAX_QUERY_INTEGER))


def parse_int(text: str) -> int | None:
    """An optional sign and ASCII digits, within a signed 64-bit integer; None for anything else."""
    body = text[1:] if text[:1] in "+-" else text
    if not body.isascii() or not body.isdigit() or len(body) > _MAX_DIGITS:
        return None
    number = int(text)
    return number if -MAX_QUERY_INTEGER - 1 <= number <= MAX_QUERY_INTEGER else None


def query_int(
    query: Mapping[str, str],
    name: str,
    *,
    minimum: int,
    maximum: int = MAX_QUERY_INTEGER,
    title: str = "Bad Request",
) -> int | None:
    """The query parameter `name` as an integer in [minimum, maximum]; None when absent or empty."""
    raw = query.get(name, "")
    if raw == "":
        return None
    number = parse_int(raw)
    if number is None:
        raise invalid_query(name, "must be an integer", title)
    if not minimum <= number <= maximum:
        raise invalid_query(name, f"must be an integer in the range [{minimum}, {maximum}]", title)
    return number


def invalid_query(name: str, reason: str, title: str = "Bad Request") -> ApiError:
    return ApiError(400, title, f"{name}: {reason}", [InvalidParameter(name, reason)])
