"""FaultInjection: delays, aborts and bandwidth limits injected into HTTP traffic, each for a percentage.

Rules are Kuma 2.7's `fault_injection_validator.go`: sources and destinations each have at least one selector
with a tag; destinations name an HTTP protocol (faults are HTTP filters); `conf` sets at least one fault, and
each fault set has a percentage within 0-100 and its value.
"""

from __future__ import annotations

import re
from typing import Any

from meshgate.api.mesh.v1alpha1.fault_injection_pb2 import FaultInjection
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import check_any_selectors, check_protocol, check_selectors, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]

# Kuma's regexp.MatchString: found anywhere in the value, not matching all of it.
_LIMIT = re.compile(r"\d*\s?[gmk]bps")
# The codes Go's http.StatusText knows (Go 1.22, which Kuma 2.7 is built with): Kuma rejects any other.
_GO_STATUS_CODES = frozenset(
    {100, 101, 102, 103}
    | {200, 201, 202, 203, 204, 205, 206, 207, 208, 226}
    | {300, 301, 302, 303, 304, 305, 307, 308}
    | set(range(400, 419))
    | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451}
    | {500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}
)
_CANNOT_BE_EMPTY = "cannot be empty"


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, FaultInjection, _check_spec, mesh_scoped=True)


def _set(conf: Any, field: str) -> bool:
    """Kuma's HasFault*: the fault is present and differs from an empty one."""
    return conf.HasField(field) and bool(getattr(conf, field).ListFields())


def _check_spec(out: Violations, spec: Any) -> None:
    check_any_selectors(out, Path("sources"), spec.sources)
    check_selectors(out, Path("destinations"), spec.destinations, extra=(check_protocol("http", "http2", "grpc"),))
    root = Path("conf")
    conf = spec.conf
    delay, abort, bandwidth = _set(conf, "delay"), _set(conf, "abort"), _set(conf, "response_bandwidth")
    if not (delay or abort or bandwidth):
        out.add(root, "must have at least one of the faults configured")
    if delay:
        path = root.field("delay")
        _check_percentage(out, path, conf.delay)
        if not conf.delay.HasField("value"):
            out.add(path.field("value"), _CANNOT_BE_EMPTY)
    if abort:
        path = root.field("abort")
        _check_percentage(out, path, conf.abort)
        if not conf.abort.HasField("httpStatus"):
            out.add(path.field("httpStatus"), _CANNOT_BE_EMPTY)
        elif conf.abort.httpStatus.value not in _GO_STATUS_CODES:
            out.add(path.field("httpStatus"), "http status code is incorrect")
    if bandwidth:
        path = root.field("responseBandwidth")
        _check_percentage(out, path, conf.response_bandwidth)
        if not conf.response_bandwidth.HasField("limit"):
            out.add(path.field("limit"), _CANNOT_BE_EMPTY)
        elif not _LIMIT.search(conf.response_bandwidth.limit.value):
            out.add(path.field("limit"), "has to be in kbps/mbps/gbps units")


def _check_percentage(out: Violations, path: Path, fault: Any) -> None:
    if not fault.HasField("percentage"):
        out.add(path.field("percentage"), _CANNOT_BE_EMPTY)
    elif not 0.0 <= fault.percentage.value <= 100.0:
        out.add(path.field("percentage"), "has to be in [0.0 - 100.0] range")


DESCRIPTOR = policy_descriptor(
    name=kinds.FAULT_INJECTION,
    singular="fault-injection",
    plural="fault-injections",
    spec_type=FaultInjection,
    validate=validate,
)
