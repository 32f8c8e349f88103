"""Timeout: connect, TCP idle, HTTP and gRPC timeouts for the traffic from `sources` to `destinations`.

Rules are Kuma 2.7's `timeout_validator.go`: sources name a service, destinations are exactly one
`kuma.io/service` (a Timeout shapes a whole cluster), and a protocol section, once written, sets a timeout.
"""

from __future__ import annotations

from typing import Any

from meshgate.api.mesh.v1alpha1.timeout_pb2 import Timeout
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds._policy import (
    HAS_TO_BE_DEFINED,
    check_duration_set_positive,
    check_positive_if_defined,
    check_service_destinations,
    check_source_services,
    json_name,
    policy_descriptor,
)
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource

__all__ = ["DESCRIPTOR", "validate"]

_AT_LEAST_ONE = "at least one timeout in section has to be defined"


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, Timeout, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_source_services(out, Path("sources"), spec.sources)
    check_service_destinations(out, Path("destinations"), spec.destinations)
    path = Path("conf")
    if not spec.HasField("conf"):
        out.add(path, HAS_TO_BE_DEFINED)
        return
    conf = spec.conf
    if conf.HasField("tcp"):
        tcp = path.field("tcp")
        if not conf.tcp.HasField("idle_timeout"):
            out.add(tcp, _AT_LEAST_ONE)
        else:
            check_duration_set_positive(out, tcp.field("idleTimeout"), conf.tcp.idle_timeout)
    # Kuma asks only for these two of the four HTTP timeouts before checking the section.
    _check_section(out, path.field("http"), conf, "http", ("request_timeout", "idle_timeout"))
    _check_section(out, path.field("grpc"), conf, "grpc", ("stream_idle_timeout", "max_stream_duration"))


def _check_section(out: Violations, path: Path, conf: Any, section: str, fields: tuple[str, str]) -> None:
    if not conf.HasField(section):
        return
    message = getattr(conf, section)
    if not any(message.HasField(field) for field in fields):
        out.add(path, _AT_LEAST_ONE)
        return
    for field in fields:
        check_positive_if_defined(out, path.field(json_name(message, field)), message, field)


DESCRIPTOR = policy_descriptor(
    name=kinds.TIMEOUT,
    singular="timeout",
    plural="timeouts",
    spec_type=Timeout,
    validate=validate,
)
