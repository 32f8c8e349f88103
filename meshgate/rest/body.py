"""Request bodies, read and parsed within bounds so that no body can stall the event loop or crash a handler.

A 1 MiB YAML document takes seconds to parse in pure Python, and the parse holds the event loop: three at once
once stalled the API, `/ready` and KDS health for 12-19 s. So:

- Size: at most `MAX_BODY_BYTES` (aiohttp's `client_max_size`, set by `meshgate.rest.app`); a larger
  `Content-Length` is refused before the body is read. Answer: 413.
- Where: a small JSON body (at most `INLINE_JSON_BYTES`) is parsed inline, which costs well under a
  millisecond with the C decoder. YAML, and anything larger, is parsed in a worker thread, at most
  `PARSE_THREADS` at once, with libyaml's C parser when PyYAML has it. The threads still share the GIL with
  the loop, so the bound is what keeps the loop's share of the interpreter large (at least 1 in 3).
- Shape: nesting deeper than `MAX_DEPTH` or more than `MAX_VALUES` values (YAML aliases counted as what they
  expand to, so an alias bomb is refused before it is built) is a 400 before any handler walks the document.
  Integers longer than `MAX_INTEGER_DIGITS` become an infinite float, which the structural checks report as
  out of range *at the field* (`networking.inbound[0].port`), instead of reaching Python's int-string
  conversion limit (4300 digits, a ValueError and so a 500).
- Encoding: only unencoded (identity) bodies; any `Content-Encoding` is a 415, as Kuma's Go API server
  does not decode request bodies either.

Every refusal is an `ApiError` with Kuma's error body (`meshgate.rest.errors`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import anyio
import anyio.to_thread
import yaml
from aiohttp import web
from anyio.lowlevel import RunVar

from meshgate.rest.errors import ApiError, bad_request

__all__ = [
    "INLINE_JSON_BYTES",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_INTEGER_DIGITS",
    "MAX_VALUES",
    "PARSE_THREADS",
    "RESOURCE_BOUNDS",
    "Bounds",
    "parse_document",
    "parse_limiter",
    "read_body",
    "read_document",
]

# aiohttp's own default, now explicit: the largest resource we know of (a MeshGatewayRoute with hundreds of
# rules) is tens of KiB, and Kuma's API is not a bulk endpoint.
MAX_BODY_BYTES = 1024 * 1024
# The C JSON decoder reads 64 KiB in well under a millisecond: cheaper inline than a hop to a thread.
INLINE_JSON_BYTES = 64 * 1024
# Two threads on a two-core machine: parses queue rather than take the GIL from the event loop.
PARSE_THREADS = 2
# Kuma's deepest resources nest about 10 levels (a MeshGatewayRoute's header match: conf.http.rules[].matches[]
# .headers[]...); 32 leaves room for free-form Struct fields while keeping every recursive walk over the
# document (the structure checks recurse a few frames per level) far from Python's recursion limit.
MAX_DEPTH = 32
# Values (scalars, keys and containers) in one document. Every value takes at least one byte of the body, so
# no document within `MAX_BODY_BYTES` reaches this without YAML aliases; with them, a document may expand to no
# more than a body of the largest size could spell out (a "billion laughs" body is refused, not built).
MAX_VALUES = MAX_BODY_BYTES
# Read size of a streamed body: aiohttp's own buffer size.
_CHUNK_BYTES = 64 * 1024
# uint64's largest value has 20 digits; 32 leaves room for a sign, and anything longer is out of range anyway.
MAX_INTEGER_DIGITS = 32

_LIMITER: RunVar[anyio.CapacityLimiter] = RunVar("meshgate.rest.body.limiter")

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """YAML 1.1 as `meshgate.resources.codec` reads it (timestamps stay strings, as in Kuma), on libyaml."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _bounded_yaml_int(loader: yaml.SafeLoader, node: yaml.Node) -> object:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if len(text) > MAX_INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return loader.construct_yaml_int(node)  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:int", _bounded_yaml_int)


def _bounded_json_int(text: str) -> int | float:
    if len(text) > MAX_INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


@dataclass(frozen=True, slots=True)
class Bounds:
    """What one endpoint's body may be: its size, nesting and (expanded) value count."""

    max_bytes: int = MAX_BODY_BYTES
    max_depth: int = MAX_DEPTH
    max_values: int = MAX_VALUES


# A resource endpoint's bounds; the bulk apply endpoint has its own (`meshgate.rest.bulk`).
RESOURCE_BOUNDS: Final = Bounds()


def _too_deep(bounds: Bounds) -> ApiError:
    return bad_request(f"the body nests deeper than {bounds.max_depth} levels")


def _too_many(bounds: Bounds) -> ApiError:
    return bad_request(f"the body has more than {bounds.max_values} values")


def _check_shape(doc: object, bounds: Bounds) -> None:
    """Depth and value count of a parsed JSON document (iteratively: the document may be deep)."""
    stack: list[tuple[object, int]] = [(doc, 1)]
    values = 0
    while stack:
        value, depth = stack.pop()
        values += 1
        if values > bounds.max_values:
            raise _too_many(bounds)
        children: Iterator[Any]
        if isinstance(value, dict):
            values += len(value)  # the keys, counted as the YAML check counts them
            children = iter(value.values())
        elif isinstance(value, list):
            children = iter(value)
        else:
            continue
        if depth > bounds.max_depth:
            raise _too_deep(bounds)
        stack.extend((child, depth + 1) for child in children)


def _check_yaml_events(text: str, bounds: Bounds) -> None:
    """Depth and expanded size of every YAML document, from the event stream, before anything is built.

    libyaml produces events without recursion, so a body of a million `[` is refused at the 33rd. An alias
    counts as the size and height of what its anchor holds, so nested aliases cannot multiply the work of
    whoever walks the document afterwards (the "billion laughs").
    """
    # Per open container: [values inside it, height below it, its anchor]
    frames: list[list[Any]] = []
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, height)
    total = 0

    def close(size: int, height: int, anchor: str | None) -> None:
        nonlocal total
        if anchor is not None:
            anchors[anchor] = (size, height)
        if frames:
            frames[-1][0] += size
            frames[-1][1] = max(frames[-1][1], height)
        else:
            total += size
        if len(frames) + height > bounds.max_depth:
            raise _too_deep(bounds)
        if total + sum(f[0] for f in frames) > bounds.max_values:
            raise _too_many(bounds)

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            frames.append([0, 0, event.anchor])
            if len(frames) > bounds.max_depth:
                raise _too_deep(bounds)
        elif isinstance(event, yaml.CollectionEndEvent):
            size, height, anchor = frames.pop()
            close(size + 1, height + 1, anchor)
        elif isinstance(event, yaml.ScalarEvent):
            close(1, 0, event.anchor)
        elif isinstance(event, yaml.AliasEvent):
            size, height = anchors.get(str(event.anchor), (1, 0))
            close(size, height, None)


def _yaml_error(exc: yaml.YAMLError) -> ApiError:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return bad_request(f"the body is neither JSON nor YAML: invalid YAML{where}: {problem}")


def _parse_json(text: str, bounds: Bounds) -> object:
    """The JSON document, or ValueError when the text is not JSON (it may still be YAML)."""
    try:
        doc = json.loads(text, parse_int=_bounded_json_int)
    except RecursionError:
        raise _too_deep(bounds) from None
    _check_shape(doc, bounds)
    return doc


def _parse_yaml(text: str, bounds: Bounds) -> object:
    try:
        _check_yaml_events(text, bounds)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise _yaml_error(exc) from None


def _as_object(doc: object) -> dict[str, object]:
    if not isinstance(doc, dict):
        raise bad_request("the body must be a single JSON or YAML object")
    return {str(k): v for k, v in doc.items()}


def _decode(raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_request(f"the body is not UTF-8: {exc}") from None
    if not text.strip():
        raise bad_request("the body is empty")
    return text


def parse_document(raw: bytes, bounds: Bounds = RESOURCE_BOUNDS) -> dict[str, object]:
    """A request body as a mapping: JSON first, then YAML (kumactl sends JSON, people paste YAML).

    Pure and blocking: call it from a worker thread for anything but a small body (`read_document` does).
    """
    text = _decode(raw)
    try:
        doc = _parse_json(text, bounds)
    except ValueError:
        doc = _parse_yaml(text, bounds)
    return _as_object(doc)


def parse_limiter() -> anyio.CapacityLimiter:
    """The threads that parse (and, for a bulk apply, validate) request bodies: `PARSE_THREADS` at once."""
    # One limiter per event loop (a RunVar), created on first use inside it.
    try:
        return _LIMITER.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(PARSE_THREADS)
        _LIMITER.set(limiter)
        return limiter


def _check_encoding(request: web.Request) -> None:
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        # RFC 7694: 415 for a content coding the server does not accept, and say which one it does.
        raise ApiError(
            415,
            "Unsupported Media Type",
            f"Content-Encoding {encoding!r} is not supported: send the body unencoded (identity)",
        )


async def read_body(request: web.Request, bounds: Bounds = RESOURCE_BOUNDS) -> bytes:
    """The raw body, at most `bounds.max_bytes`, unencoded; ApiError 413/415/400 otherwise."""
    _check_encoding(request)
    length = request.content_length
    if length is not None and length > bounds.max_bytes:
        raise _too_large(bounds)
    if bounds.max_bytes != MAX_BODY_BYTES:
        # request.read() enforces the app's client_max_size (MAX_BODY_BYTES), not this bound: read the stream
        # ourselves, counting, so a chunked body without a Content-Length is cut off at the bound too.
        return await _read_stream(request, bounds)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(bounds) from None
    except (web.HTTPException, ConnectionError) as exc:
        raise bad_request(f"the body could not be read: {exc}") from None


async def _read_stream(request: web.Request, bounds: Bounds) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.content.iter_chunked(_CHUNK_BYTES):
            size += len(chunk)
            if size > bounds.max_bytes:
                raise _too_large(bounds)
            chunks.append(chunk)
    except (web.HTTPException, ConnectionError) as exc:
        raise bad_request(f"the body could not be read: {exc}") from None
    return b"".join(chunks)


def _too_large(bounds: Bounds) -> ApiError:
    return ApiError(413, "Request Entity Too Large", f"the body is larger than {bounds.max_bytes} bytes")


async def read_document(
    request: web.Request, *, empty: dict[str, object] | None = None, bounds: Bounds = RESOURCE_BOUNDS
) -> dict[str, object]:
    """The request's body as a mapping, parsed inline when small JSON, else in a bounded worker thread.

    `empty`: what an empty body means (None: an empty body is a 400).
    """
    raw = await read_body(request, bounds)
    if empty is not None and not raw.strip():
        return dict(empty)
    if len(raw) <= INLINE_JSON_BYTES and raw.lstrip()[:1] == b"{":
        text = _decode(raw)
        try:
            return _as_object(_parse_json(text, bounds))
        except ValueError:
            pass  # not JSON after all: YAML, in a thread below
    return await anyio.to_thread.run_sync(parse_document, raw, bounds, limiter=parse_limiter())
