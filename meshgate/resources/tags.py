"""Well-known tag keys and the rules for tag maps and selectors (Kuma 2.7's `validators.go`).

Kuma has two value alphabets: *tags* (what a proxy carries; no `/`, no `*`) and *selectors* (what a policy
or a gateway matches; `/` allowed, or exactly `*`). Every check appends to a `Violations`, never stopping
early.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from meshgate.resources.errors import Path, Violations, go_quote

__all__ = [
    "RESERVED_GATEWAY_TAG_KEYS",
    "TAG_EXTERNAL_SERVICE",
    "TAG_PROTOCOL",
    "TAG_SERVICE",
    "TAG_ZONE",
    "TagsCheck",
    "check_selector",
    "check_selectors",
    "check_tags",
]

TAG_SERVICE = "kuma.io/service"
TAG_ZONE = "kuma.io/zone"
TAG_PROTOCOL = "kuma.io/protocol"
TAG_EXTERNAL_SERVICE = "kuma.io/external-service-name"

# Properties of a Dataplane, never of a gateway or a listener: a gateway must not claim a service or a zone.
RESERVED_GATEWAY_TAG_KEYS = frozenset({TAG_EXTERNAL_SERVICE, TAG_PROTOCOL, TAG_SERVICE, TAG_ZONE})

_TAG_KEY = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_TAG_VALUE = re.compile(r"[a-zA-Z0-9.\-_:]*")
_SELECTOR_VALUE = re.compile(r"[a-zA-Z0-9.\-_:/]*|\*")

# A whole-map rule, such as "kuma.io/protocol must be tcp"; it reports at `path` or `path[key]` itself.
TagsCheck = Callable[[Violations, Path, Mapping[str, str]], None]


def _check(
    out: Violations,
    path: Path,
    tags: Mapping[str, str],
    *,
    value_pattern: re.Pattern[str],
    value_message: str,
    require_tag: bool,
    require_service: bool,
    forbidden_keys: Collection[str],
    extra: Sequence[TagsCheck],
    only_keys: Collection[str] | None = None,
) -> None:
    if require_tag and not tags:
        out.add(path, "must have at least one tag")
    for check in extra:
        check(out, path, tags)
    # Sorted, as Kuma does, so the order of violations does not depend on map order.
    for key in sorted(tags):
        if key == "":
            out.add(path, "tag name must be non-empty")
        if not _TAG_KEY.fullmatch(key):
            out.add(
                path.key(key),
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
            )
        if key in forbidden_keys:
            out.add(path.key(key), f"tag name must not be {go_quote(key)}")
        if only_keys is not None and key not in only_keys:
            out.add(path.key(key), f"tag {go_quote(key)} is not allowed")
        value = tags[key]
        if value == "":
            out.add(path.key(key), "tag value must be non-empty")
        if not value_pattern.fullmatch(value):
            out.add(path.key(key), value_message)
    if require_service and TAG_SERVICE not in tags:
        out.add(path, f"mandatory tag {go_quote(TAG_SERVICE)} is missing")


def check_tags(
    out: Violations,
    path: Path,
    tags: Mapping[str, str],
    *,
    require_tag: bool = False,
    require_service: bool = False,
    forbidden_keys: Collection[str] = (),
    extra: Sequence[TagsCheck] = (),
) -> None:
    """Tags that a proxy carries (Dataplane inbounds, gateway Dataplanes): values without `/` or `*`."""
    _check(
        out,
        path,
        tags,
        value_pattern=_TAG_VALUE,
        value_message="tag value must consist of alphanumeric characters, dots, dashes and underscores",
        require_tag=require_tag,
        require_service=require_service,
        forbidden_keys=forbidden_keys,
        extra=extra,
    )


def check_selector(
    out: Violations,
    path: Path,
    tags: Mapping[str, str],
    *,
    require_tag: bool = False,
    require_service: bool = False,
    forbidden_keys: Collection[str] = (),
    extra: Sequence[TagsCheck] = (),
    only_keys: Collection[str] | None = None,
) -> None:
    """Tags that select proxies (selectors, gateway and listener tags, destinations): `/` or `*` allowed.

    `only_keys`, when given, are the only keys allowed (Kuma's `OnlyServiceTagAllowed` key check)."""
    _check(
        out,
        path,
        tags,
        value_pattern=_SELECTOR_VALUE,
        value_message=(
            'tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be "*"'
        ),
        require_tag=require_tag,
        require_service=require_service,
        forbidden_keys=forbidden_keys,
        extra=extra,
        only_keys=only_keys,
    )


def check_selectors(
    out: Violations,
    path: Path,
    selectors: Sequence[Any],  # kuma.mesh.v1alpha1.Selector
    *,
    require_selector: bool = True,
    at_most_one: bool = False,
    require_service: bool = True,
) -> None:
    """A `repeated Selector` field: each `match` is a selector that needs at least one tag."""
    if require_selector and not selectors:
        out.add(path, "must have at least one element")
    for i, selector in enumerate(selectors):
        check_selector(
            out,
            path.index(i).field("match"),
            selector.match,
            require_tag=True,
            require_service=require_service,
        )
        if i > 0 and at_most_one:
            out.add(path.index(i), "there can be at most one selector")
