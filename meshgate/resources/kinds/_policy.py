"""What Kuma 2.7's source/destination policies share: their selector rules, their duration and number checks,
and their messages (Kuma's `validators.go` and the helpers `retry_validator.go` and `circuit_breaker_validator.go`
define for all of them).

Every policy kind (Timeout, Retry, CircuitBreaker, …) selects the proxies it shapes with `sources` and the
services it shapes with `destinations`, each a list of `Selector`s. Kuma validates them with one of a few
option sets; each is a function here, named for what it allows.

A protobuf message field that is unset here is Go's nil there: Kuma's "has to be defined" rules read `HasField`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.model import Resource
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE, TagsCheck, check_selector

__all__ = [
    "EMPTY_FIELD",
    "GREATER_THAN_ZERO",
    "GREATER_THAN_ZERO_WHEN_DEFINED",
    "HAS_TO_BE_DEFINED",
    "check_any_selectors",
    "check_duration_set_positive",
    "check_positive_duration",
    "check_positive_if_defined",
    "check_protocol",
    "check_selectors",
    "check_service_destinations",
    "check_source_services",
    "is_zero_duration",
    "json_name",
    "policy_descriptor",
]

# Kuma's shared messages (retry_validator.go), used by several policies.
EMPTY_FIELD = "field cannot be empty"
HAS_TO_BE_DEFINED = "has to be defined"
GREATER_THAN_ZERO = "has to be greater than 0"
GREATER_THAN_ZERO_WHEN_DEFINED = "has to be greater than 0 when defined"

# google.protobuf.Duration's valid range (durationpb's CheckValid): about 10,000 years either way.
_MAX_DURATION_SECONDS = 315_576_000_000


def check_selectors(
    out: Violations,
    path: Path,
    selectors: Sequence[Any],  # kuma.mesh.v1alpha1.Selector
    *,
    require_selector: bool = True,
    require_tag: bool = True,
    require_service: bool = False,
    only_keys: frozenset[str] | None = None,
    extra: Sequence[TagsCheck] = (),
) -> None:
    """Kuma's `ValidateSelectors` with its options spelt out."""
    if require_selector and not selectors:
        out.add(path, "must have at least one element")
    for i, selector in enumerate(selectors):
        check_selector(
            out,
            path.index(i).field("match"),
            selector.match,
            require_tag=require_tag,
            require_service=require_service,
            only_keys=only_keys,
            extra=extra,
        )


def check_source_services(out: Violations, path: Path, selectors: Sequence[Any]) -> None:
    """At least one selector, each naming a `kuma.io/service` (Timeout, Retry, … `validateSources`)."""
    check_selectors(out, path, selectors, require_service=True)


def check_any_selectors(out: Violations, path: Path, selectors: Sequence[Any]) -> None:
    """At least one selector, each with at least one tag (TrafficPermission, RateLimit, …)."""
    check_selectors(out, path, selectors)


def _exactly_one_service(out: Violations, path: Path, tags: Mapping[str, str]) -> None:
    if len(tags) != 1 or TAG_SERVICE not in tags:
        out.add(path, f"must consist of exactly one tag {go_quote(TAG_SERVICE)}")


def check_service_destinations(out: Violations, path: Path, selectors: Sequence[Any]) -> None:
    """Kuma's `OnlyServiceTagAllowed`: each destination is exactly `kuma.io/service: <name or *>`.

    Such a policy applies to a whole cluster (one per service), so it cannot narrow to a subset."""
    check_selectors(
        out,
        path,
        selectors,
        require_tag=False,
        require_service=True,
        only_keys=frozenset({TAG_SERVICE}),
        extra=(_exactly_one_service,),
    )


def check_protocol(*protocols: str) -> TagsCheck:
    """Kuma's `ProtocolValidator`: the selector names `kuma.io/protocol`, one of `protocols`."""

    def check(out: Violations, path: Path, tags: Mapping[str, str]) -> None:
        value = tags.get(TAG_PROTOCOL)
        if value is None:
            out.add(path, "protocol must be specified")
        elif value not in protocols:
            out.add(path.key(TAG_PROTOCOL), f"must be one of the [{', '.join(protocols)}]")

    return check


def json_name(message: Any, field: str) -> str:
    """A field's JSON name (`requestTimeout`), as Kuma's paths spell it, from its proto name."""
    return str(message.DESCRIPTOR.fields_by_name[field].json_name)


def is_zero_duration(duration: Any) -> bool:
    return bool(duration.seconds == 0 and duration.nanos == 0)


def check_positive_if_defined(out: Violations, path: Path, message: Any, field: str) -> None:
    """Kuma's `validateDuration_GreaterThan0OrNil` (and the UInt32Value twin): zero only when unset.

    Kuma compares with zero only, so a negative duration passes, as it does there."""
    if not message.HasField(field):
        return
    value = getattr(message, field)
    zero = is_zero_duration(value) if value.DESCRIPTOR.full_name == "google.protobuf.Duration" else value.value == 0
    if zero:
        out.add(path, GREATER_THAN_ZERO_WHEN_DEFINED)


def check_duration_set_positive(out: Violations, path: Path, duration: Any) -> None:
    """Kuma's `validateDuration_GreaterThan0`, for a duration known to be set."""
    if is_zero_duration(duration):
        out.add(path, GREATER_THAN_ZERO)


def check_positive_duration(out: Violations, path: Path, message: Any, field: str) -> None:
    """Kuma's `ValidateDuration` (HealthCheck): set, a valid Duration, and not zero."""
    if not message.HasField(field):
        out.add(path, "must have a positive value")
        return
    duration = getattr(message, field)
    seconds, nanos = duration.seconds, duration.nanos
    valid = (
        abs(seconds) <= _MAX_DURATION_SECONDS
        and abs(nanos) < 1_000_000_000
        and not (seconds > 0 > nanos or seconds < 0 < nanos)
    )
    if not valid:
        out.add(path, "must have a valid value")
    elif is_zero_duration(duration):
        out.add(path, "must have a positive value")


def policy_descriptor(
    *,
    name: str,
    singular: str,
    plural: str,
    spec_type: type[Message],
    validate: Callable[[Resource], list[Violation]],
    policy: bool = True,
) -> KindDescriptor:
    """A Kuma 2.7 mesh policy: mesh-scoped, `kds.send_to_zone` (global to zone), written on the global only.
    `policy`: whether the zone's xDS generation reads it (KindDescriptor.policy); ExternalService is a backend
    source, not a policy that selects connections.

    Kuma's zone refuses to create these (a zone answers 405, as for any kind that is synced down)."""
    return KindDescriptor(
        name=name,
        singular=singular,
        plural=plural,
        spec_type=spec_type,
        scope=Scope.MESH,
        sync=SyncDirection.GLOBAL_TO_ZONE,
        validate=validate,
        writable_on_global=True,
        writable_on_zone=False,
        policy=policy,
    )
