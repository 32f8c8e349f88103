"""RateLimit: a local HTTP rate limit on the traffic from `sources` to `destinations`.

Rules are Kuma 2.7's `rate_limit_validator.go`: sources and destinations each have at least one selector with
a tag, any tag (a rate limit may narrow to a subset of a service); HTTP limits set requests and an interval;
the headers added to a limited response have a key and a value.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.rate_limit_pb2 import RateLimit
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_any_selectors, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, RateLimit, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_any_selectors(out, Path("sources"), spec.sources)
    check_any_selectors(out, Path("destinations"), spec.destinations)
    root = Path("conf")
    if not spec.HasField("conf"):
        out.add(root, "must have conf")
    if not spec.conf.HasField("http"):
        return
    path = root.field("http")
    http = spec.conf.http
    if http.requests == 0:
        out.add(path.field("requests"), "requests must be set")
    if not http.HasField("interval"):
        out.add(path.field("interval"), "interval must be set")
    # Kuma's path says `header["0"]` for the header at index 0 of `headers`: kept as Kuma writes it.
    headers = path.field("onRateLimit").field("header")
    for i, header in enumerate(http.onRateLimit.headers):
        if not header.key:
            out.add(headers.key(str(i)), "key must be set")
        if not header.value:
            out.add(headers.key(str(i)), "value must be set")


DESCRIPTOR = policy_descriptor(
    name=kinds.RATE_LIMIT,
    singular="rate-limit",
    plural="rate-limits",
    spec_type=RateLimit,
    validate=validate,
)
