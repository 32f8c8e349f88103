"""Dataplane: one data plane proxy, a sidecar or a gateway. Written in its zone and synced up to the global.

Rules are Kuma 2.7's `dataplane_validator.go`. Three shapes:
- a BUILTIN gateway has no inbound, outbound or probes: MeshGateway configures it;
- a DELEGATED gateway has no inbound, only outbounds that the API gateway beside it sends traffic to;
- any other Dataplane needs at least one inbound, and every inbound carries `kuma.io/service`.
`networking.address` is always required. Paths start at the spec (`networking.inbound[0].port`) and are the
ones Kuma names, including `networking.probes` for probes on a builtin gateway (a top-level field).
Added: a service probe's interval and timeout must be positive, not only non-zero.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.kinds._conf import check_prometheus_conf
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import check_port, is_dns_name, is_ip
from meshgate.resources.tags import TAG_PROTOCOL, TAG_SERVICE, check_tags

__all__ = ["DESCRIPTOR", "validate"]

_Gateway = Dataplane.Networking.Gateway
_LOOPBACK = "127.0.0.1"
_SUPPORTED_PROTOCOLS = ("grpc", "http", "http2", "kafka", "tcp")
_BACKEND_REF_KINDS = ("MeshService",)
_MAX_DURATION_SECONDS = 315_576_000_000  # 10000 years, the Duration type's bound


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, Dataplane, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    path = Path("networking")
    if not spec.HasField("networking"):
        out.add(path, "must be defined")
        return
    networking = spec.networking
    if networking.HasField("admin"):
        admin_port = path.field("admin").field("port")
        # Envoy's admin API listens on localhost; an inbound or outbound there on the same port would clash.
        if _uses_inbound_interface(networking, _LOOPBACK, networking.admin.port):
            out.add(admin_port, "must differ from inbound")
        if _uses_outbound_interface(networking, _LOOPBACK, networking.admin.port):
            out.add(admin_port, "must differ from outbound")

    if not networking.HasField("gateway"):
        if not networking.inbound:
            out.add(path, "has to contain at least one inbound interface or gateway")
        _check_networking(out, path, networking)
        _check_probes(out, spec)
        if spec.HasField("metrics"):
            _check_metrics(out, Path("metrics"), spec.metrics)
    elif networking.gateway.type == _Gateway.BUILTIN:
        if networking.inbound:
            out.add(path.field("inbound"), "inbound cannot be defined for builtin gateways")
        if networking.outbound:
            out.add(path.field("outbound"), "outbound cannot be defined for builtin gateways")
        if spec.HasField("probes"):
            out.add(path.field("probes"), "probes cannot be defined for builtin gateways")
        _check_gateway(out, path.field("gateway"), networking.gateway)
        _check_networking(out, path, networking)
    else:
        if networking.inbound:
            out.add(path.field("inbound"), "inbound cannot be defined for delegated gateways")
        _check_gateway(out, path.field("gateway"), networking.gateway)
        _check_networking(out, path, networking)
        _check_probes(out, spec)


def _overlap(address: str, other: str) -> bool:
    """Go's comparison of two parsed IPs, where an unspecified address (0.0.0.0, ::) matches any."""
    try:
        a, b = ipaddress.ip_address(address), ipaddress.ip_address(other)
    except ValueError:
        return False
    return a.is_unspecified or b.is_unspecified or a == b


def _uses_inbound_interface(networking: Any, address: str, port: int) -> bool:
    for inbound in networking.inbound:
        dataplane_ip = inbound.address or networking.address
        workload_ip = inbound.serviceAddress or dataplane_ip
        workload_port = inbound.servicePort or inbound.port
        if port == inbound.port and _overlap(address, dataplane_ip):
            return True
        if port == workload_port and _overlap(address, workload_ip):
            return True
    return False


def _uses_outbound_interface(networking: Any, address: str, port: int) -> bool:
    return any(
        port == outbound.port and _overlap(address, outbound.address or _LOOPBACK) for outbound in networking.outbound
    )


def _check_networking(out: Violations, path: Path, networking: Any) -> None:
    address = path.field("address")
    if networking.address == "":
        out.add(address, "address can't be empty")
    else:
        if networking.address in ("0.0.0.0", "::"):
            out.add(address, "must not be 0.0.0.0 or ::")
        if not is_ip(networking.address) and not is_dns_name(networking.address):
            out.add(address, "address has to be valid IP address or domain name")
    for i, inbound in enumerate(networking.inbound):
        _check_inbound(out, path.field("inbound").index(i), inbound, networking.address)
    for i, outbound in enumerate(networking.outbound):
        _check_outbound(out, path.field("outbound").index(i), outbound)


def _check_inbound(out: Violations, path: Path, inbound: Any, dataplane_address: str) -> None:
    check_port(out, path.field("port"), inbound.port)
    if inbound.servicePort:
        check_port(out, path.field("servicePort"), inbound.servicePort)
    same_port = inbound.servicePort in (0, inbound.port)
    if inbound.serviceAddress:
        if not is_ip(inbound.serviceAddress):
            out.add(path.field("serviceAddress"), "serviceAddress has to be valid IP address")
        if inbound.serviceAddress == dataplane_address and same_port:
            # Envoy would listen where the application listens.
            out.add(
                path.field("serviceAddress"),
                "serviceAddress and servicePort has to differ from address and port",
            )
    if inbound.address:
        if not is_ip(inbound.address):
            out.add(path.field("address"), "address has to be valid IP address")
        if inbound.address == inbound.serviceAddress and same_port:
            out.add(
                path.field("serviceAddress"),
                "serviceAddress and servicePort has to differ from address and port",
            )

    check_tags(out, path.field("tags"), inbound.tags, extra=[_check_inbound_protocol])
    if TAG_SERVICE not in inbound.tags:
        out.add(path.field("tags").key(TAG_SERVICE), "tag has to exist")
    if inbound.HasField("serviceProbe"):
        _check_service_probe(out, path.field("serviceProbe"), inbound.serviceProbe)


def _check_inbound_protocol(out: Violations, path: Path, tags: Any) -> None:
    value = tags.get(TAG_PROTOCOL)
    if value is not None and value.lower() not in _SUPPORTED_PROTOCOLS:
        out.add(
            path.key(TAG_PROTOCOL),
            f"tag {go_quote(TAG_PROTOCOL)} has an invalid value {go_quote(value)}. "
            f"Allowed values: {', '.join(_SUPPORTED_PROTOCOLS)}",
        )


def _check_service_probe(out: Violations, path: Path, probe: Any) -> None:
    for name in ("interval", "timeout"):
        if probe.HasField(name):
            duration = getattr(probe, name)
            if not _is_valid_duration(duration):
                out.add(path.field(name), "must have a valid value")
            elif duration.seconds < 0 or duration.nanos < 0 or (duration.seconds, duration.nanos) == (0, 0):
                # Kuma rejects only zero; a negative probe period means nothing to Envoy either.
                out.add(path.field(name), "must have a positive value")
    for field, json_name in (
        ("unhealthy_threshold", "unhealthyThreshold"),
        ("healthy_threshold", "healthyThreshold"),
    ):
        if probe.HasField(field) and getattr(probe, field).value == 0:
            out.add(path.field(json_name), "must have a positive value")


def _is_valid_duration(duration: Any) -> bool:
    """google.protobuf.Duration's own rules (Go's `CheckValid`): within 10000 years, and one sign."""
    seconds, nanos = duration.seconds, duration.nanos
    in_range = abs(seconds) <= _MAX_DURATION_SECONDS and abs(nanos) < 1_000_000_000
    return in_range and not (seconds > 0 > nanos or seconds < 0 < nanos)


def _check_outbound(out: Violations, path: Path, outbound: Any) -> None:
    check_port(out, path.field("port"), outbound.port)
    if outbound.address and not is_ip(outbound.address):
        out.add(path.field("address"), "address has to be valid IP address")
    if outbound.HasField("backendRef"):
        ref = outbound.backendRef
        ref_path = path.field("backendRef")
        if ref.kind not in _BACKEND_REF_KINDS:
            out.add(ref_path.field("kind"), f"invalid value. Available values are: {','.join(_BACKEND_REF_KINDS)}")
        if ref.name == "":
            out.add(ref_path.field("name"), "cannot be empty")
        check_port(out, ref_path.field("port"), ref.port)
        if outbound.tags:
            out.add(ref_path, "both backendRef and tags/service cannot be defined")
    elif not outbound.tags:
        out.add(path.field("tags"), f"mandatory tag {go_quote(TAG_SERVICE)} is missing")
    else:
        check_tags(out, path.field("tags"), outbound.tags, require_service=True)


def _check_gateway(out: Violations, path: Path, gateway: Any) -> None:
    check_tags(out, path.field("tags"), gateway.tags, require_service=True, extra=[_check_gateway_protocol])


def _check_gateway_protocol(out: Violations, path: Path, tags: Any) -> None:
    # A gateway proxy's own service is plain TCP to the mesh; it speaks HTTP only on its listeners.
    value = tags.get(TAG_PROTOCOL)
    if value is not None and value != "tcp":
        out.add(path.key(TAG_PROTOCOL), f'other values than tcp are not allowed, provided value "{value}"')


def _is_request_uri(text: str) -> bool:
    """Go's `url.ParseRequestURI`: an absolute path or an absolute URL."""
    if text.startswith("/"):
        return True
    parts = urlsplit(text)
    return bool(parts.scheme) and bool(parts.netloc or parts.path)


def _check_probes(out: Violations, spec: Any) -> None:
    if not spec.HasField("probes"):
        return
    path = Path("probes")
    check_port(out, path.field("port"), spec.probes.port)
    for i, endpoint in enumerate(spec.probes.endpoints):
        endpoint_path = path.field("endpoints").index(i)
        check_port(out, endpoint_path.field("inboundPort"), endpoint.inbound_port)
        if not _is_request_uri(endpoint.inbound_path):
            out.add(endpoint_path.field("inboundPath"), "should be a valid URL Path")
        if not _is_request_uri(endpoint.path):
            out.add(endpoint_path.field("path"), "should be a valid URL Path")


def _check_metrics(out: Violations, path: Path, metrics: Any) -> None:
    if metrics.type != "prometheus":
        out.add(path.field("type"), 'unknown backend type. Available backends: "prometheus"')
    else:
        check_prometheus_conf(out, path.field("conf"), metrics.conf)


DESCRIPTOR = KindDescriptor(
    name=kinds.DATAPLANE,
    singular="dataplane",
    plural="dataplanes",
    spec_type=Dataplane,
    scope=Scope.MESH,
    sync=SyncDirection.ZONE_TO_ALL,
    validate=validate,
    writable_on_global=False,
    writable_on_zone=True,
)
