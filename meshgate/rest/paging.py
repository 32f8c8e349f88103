"""Offset paging as Kuma's API server does it (pkg/api-server/pagination.go, v2.7.29).

`size` defaults to 100 and may not exceed 1000; `offset` is where the page starts. A list answers with
`next`: the full URL of the following page (the request's own query with `offset` moved on), or null on
the last page, so a client pages by following `next` until it is null.

Both are parsed as Go's strconv.Atoi parses them (an optional sign and digits, `meshgate.rest.params`), and
`offset` may not exceed `MAX_OFFSET`.

`listing` pages a list that was filtered in memory (the store cannot filter by label, tag or zone status),
so such lists page exactly as the store's own do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from aiohttp import web

from meshgate.rest.errors import invalid_offset, invalid_page_size
from meshgate.rest.params import parse_int

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_OFFSET",
    "MAX_PAGE_SIZE",
    "PageRequest",
    "listing",
    "next_link",
    "parse_page",
]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
# No store holds 2**31 resources of one kind, and every backend represents this exactly (Redis' Lua scripts
# see numbers as doubles); a larger offset is refused rather than passed down.
MAX_OFFSET = 2**31 - 1


@dataclass(frozen=True, slots=True)
class PageRequest:
    offset: int
    size: int


def parse_page(query: Mapping[str, str]) -> PageRequest:
    """Raises ApiError 400 naming `size` or `offset` when either is malformed or out of range."""
    size = DEFAULT_PAGE_SIZE
    raw_size = query.get("size", "")
    if raw_size != "":
        parsed = parse_int(raw_size)
        if parsed is None:
            raise invalid_page_size("invalid format")
        if parsed > MAX_PAGE_SIZE:
            raise invalid_page_size(f"invalid page size of {parsed}. Maximum page size is {MAX_PAGE_SIZE}")
        if parsed < 1:
            # Kuma passes 0 or a negative size on to its store; a page needs at least one item.
            raise invalid_page_size(f"invalid page size of {parsed}. Minimum page size is 1")
        size = parsed
    offset = 0
    raw_offset = query.get("offset", "")
    if raw_offset != "":
        parsed = parse_int(raw_offset)
        if parsed is None or parsed < 0:
            raise invalid_offset()
        if parsed > MAX_OFFSET:
            raise invalid_offset(reason=f"must be at most {MAX_OFFSET}")
        offset = parsed
    return PageRequest(offset=offset, size=size)


def next_link(request: web.Request, next_offset: int | None, size: int) -> str | None:
    """The URL of the next page, built from the request's scheme, Host header, path and query."""
    if next_offset is None:
        return None
    params: dict[str, list[str]] = {}
    for key, value in request.query.items():
        params.setdefault(key, []).append(value)
    params["offset"] = [str(next_offset)]
    # Always spell out the page size, so the link means the same page whatever the server's default.
    params["size"] = [str(size)]
    # Go's url.Values.Encode sorts by key; do the same so links are stable and comparable with Kuma's.
    query = urlencode(sorted(params.items()), doseq=True)
    return f"{request.scheme}://{request.host}{request.rel_url.raw_path}?{query}"


def listing(request: web.Request, page: PageRequest, items: Sequence[T], render: Callable[[T], Any]) -> web.Response:
    """Kuma's list body (`total`, `items`, `next`) for the page of `items` that `page` asks for."""
    end = page.offset + page.size
    return web.json_response(
        {
            "total": len(items),
            "items": [render(item) for item in items[page.offset : end]],
            "next": next_link(request, end if end < len(items) else None, page.size),
        }
    )
