"""ExternalService: a service outside the mesh (an address, optionally TLS), reachable by its tags.

Rules are Kuma 2.7's `external_service_validator.go`: `networking.address` is `host:port` with a valid IP or
domain name and port; the TLS data sources are valid when given and `serverName`, when given, is not empty;
the tags carry `kuma.io/service` (not equal to the address's host) and a known `kuma.io/protocol`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgate.api.mesh.v1alpha1.externalservice_pb2 import ExternalService
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.kinds._policy import policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import check_port, is_dns_name, is_ip, split_host_port
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE, check_tags

__all__ = ["DESCRIPTOR", "validate"]

_SUPPORTED_PROTOCOLS = ("grpc", "http", "http2", "kafka", "tcp")
_UINT32_MAX = 2**32 - 1


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, ExternalService, _check_spec, mesh_scoped=True)


def _check_protocol(out: Violations, path: Path, tags: Mapping[str, str]) -> None:
    value = tags.get(TAG_PROTOCOL)
    if value is not None and value.lower() not in _SUPPORTED_PROTOCOLS:
        out.add(
            path.key(TAG_PROTOCOL),
            f"tag {go_quote(TAG_PROTOCOL)} has an invalid value {go_quote(value)}. "
            f"Allowed values: {', '.join(_SUPPORTED_PROTOCOLS)}",
        )


def _check_spec(out: Violations, spec: Any) -> None:
    path = Path("networking")
    networking = spec.networking
    if not spec.HasField("networking"):
        out.add(path, "should have networking")
    else:
        _check_address(out, path.field("address"), networking.address)
    tls = networking.tls
    tls_path = path.field("tls")
    if tls.HasField("server_name") and not tls.server_name.value:
        out.add(tls_path.field("serverName"), "cannot be empty")
    # Kuma's system.ValidateDataSource: an absent source is fine, a present one holds something.
    for field, name in (("ca_cert", "caCert"), ("client_cert", "clientCert"), ("client_key", "clientKey")):
        source = getattr(tls, field)
        if tls.HasField(field) and not (source.inline.value or source.inlineString or source.secret or source.file):
            out.add(tls_path.field(name), "data source cannot be empty")
    check_tags(out, Path("tags"), spec.tags, require_service=True, extra=(_check_protocol,))
    service = spec.tags.get(TAG_SERVICE, "")
    split = split_host_port(networking.address)
    if service and split is not None and split[0] == service:
        out.add(Path("tags").key(TAG_SERVICE), "cannot be the same as networking.address")


def _check_address(out: Violations, path: Path, address: str) -> None:
    if not address:
        out.add(path, "address can't be empty")
        return
    split = split_host_port(address)
    if split is None:
        out.add(path, "unable to parse address")
    host, port_text = split if split is not None else ("", "")
    if not is_ip(host) and not is_dns_name(host):
        out.add(path, "address has to be a valid IP address or a domain name")
    # Go's strconv.ParseUint(port, 10, 32): digits only; 0 on a syntax error, the maximum when out of range.
    port = 0
    if not (port_text.isascii() and port_text.isdigit()):
        out.add(path, "unable to parse port in address")
    elif int(port_text) > _UINT32_MAX:
        out.add(path, "unable to parse port in address")
        port = _UINT32_MAX
    else:
        port = int(port_text)
    check_port(out, path, port)


DESCRIPTOR = policy_descriptor(
    name=kinds.EXTERNAL_SERVICE,
    singular="external-service",
    plural="external-services",
    spec_type=ExternalService,
    validate=validate,
    policy=False,
)
