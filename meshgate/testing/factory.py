"""Resources of the real kinds for tests and benches: one definition, two views.

Each builder returns the Universal document (the REST API's JSON, Kuma's shape): what an HTTP test PUTs or a
process is fed. `resource(doc)` is the other view, the decoded and validated `Resource` a sans-IO core takes
(`check=False` decodes only, for inputs a validator would refuse). Defaults are the common case of the suite:
mesh `default`, an address in 10.0.0.0/8, the service tag `kuma.io/service`. A test whose point is the exact
hand-written input (the validation corpus, codec golden tests) keeps writing it by hand.

    mesh, mtls_mesh                     Mesh
    gateway, listener                   MeshGateway
    http_route, tcp_route, backend      MeshGatewayRoute
    dataplane, gateway_dataplane        Dataplane: one with inbounds, a gateway's
    secret                              Secret
    gateway_instance                    MeshGatewayInstance
    timeout, retry, circuit_breaker,    Kuma's source/destination policies: from `source` to `destination`
    health_check, rate_limit,           (services, `*` by default), each with a small valid `conf` unless
    fault_injection,                    one is given
    traffic_permission, traffic_log,
    traffic_route
    proxy_template, virtual_outbound,   the selector policies
    traffic_trace
    external_service                    ExternalService
    POLICY_BUILDERS                     one builder per policy kind, by kind name
    struct                              a protobuf Struct, the store tests' opaque spec
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf import struct_pb2

from meshgate.resources import codec
from meshgate.resources.model import Resource

__all__ = [
    "POLICY_BUILDERS",
    "SERVICE_TAG",
    "Doc",
    "backend",
    "circuit_breaker",
    "dataplane",
    "external_service",
    "fault_injection",
    "gateway",
    "gateway_dataplane",
    "gateway_instance",
    "health_check",
    "http_route",
    "listener",
    "mesh",
    "mtls_mesh",
    "proxy_template",
    "rate_limit",
    "resource",
    "retry",
    "secret",
    "struct",
    "tcp_route",
    "timeout",
    "traffic_log",
    "traffic_permission",
    "traffic_route",
    "traffic_trace",
    "virtual_outbound",
    "zone_egress",
    "zone_ingress",
]

Doc = dict[str, Any]
SERVICE_TAG = "kuma.io/service"


def _doc(kind: str, mesh: str | None, name: str, labels: Mapping[str, str] | None) -> Doc:
    # The order codec.encode writes: type, mesh, name, labels, then the spec.
    doc: Doc = {"type": kind}
    if mesh is not None:
        doc["mesh"] = mesh
    doc["name"] = name
    if labels:
        doc["labels"] = dict(labels)
    return doc


def resource(doc: Mapping[str, Any], *, check: bool = True, created: datetime | None = None) -> Resource:
    """The Resource view: decoded and validated as the REST API does (`check=False`: decoded only);
    `created` sets the creation time a store would have given it."""
    out = codec.load(doc) if check else codec.decode(doc)
    if created is not None:
        out = out.with_meta(creation_time=created)
    return out


def mesh(name: str = "default", *, labels: Mapping[str, str] | None = None, **spec: Any) -> Doc:
    return {**_doc("Mesh", None, name, labels), **spec}


def mtls_mesh(
    name: str = "default",
    *,
    enabled: str | None = "ca-1",
    backend_type: str = "builtin",
    labels: Mapping[str, str] | None = None,
    mode: str | None = None,
) -> Doc:
    """A Mesh with one mTLS backend `ca-1`, enabled unless `enabled` is None; a `provided` one with inline PEMs.
    `mode`: the backend's `STRICT` or `PERMISSIVE` (None: not written, Kuma's default STRICT)."""
    ca: Doc = {"name": "ca-1", "type": backend_type}
    if mode is not None:
        ca["mode"] = mode
    if backend_type == "provided":
        ca["conf"] = {"cert": {"inline": "eA=="}, "key": {"inline": "eA=="}}
    mtls: Doc = {"backends": [ca]}
    if enabled:
        mtls["enabledBackend"] = enabled
    return mesh(name, labels=labels, mtls=mtls)


def listener(port: int = 8080, protocol: str = "HTTP", *, hostname: str | None = None, **fields: Any) -> Doc:
    out: Doc = {"port": port, "protocol": protocol}
    if hostname is not None:
        out["hostname"] = hostname
    return {**out, **fields}


def _selectors(service: str | None, selectors: Sequence[Mapping[str, str]] | None) -> list[Doc]:
    if selectors is not None:
        return [{"match": dict(match)} for match in selectors]
    assert service is not None, "a selector: `service` or `selectors`"
    return [{"match": {SERVICE_TAG: service}}]


def gateway(
    name: str = "edge",
    mesh: str = "default",
    *,
    service: str | None = None,
    selectors: Sequence[Mapping[str, str]] | None = None,
    listeners: Sequence[Doc] | None = None,
    tags: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """A MeshGateway selecting the Dataplanes of `service` (by default its own name), with `listeners`
    (by default one HTTP listener on 8080)."""
    conf: Doc = {"listeners": [listener()] if listeners is None else list(listeners)}
    if tags is not None:
        conf["tags"] = dict(tags)
    doc = _doc("MeshGateway", mesh, name, labels)
    doc["selectors"] = _selectors(service or name if selectors is None else None, selectors)
    doc["conf"] = conf
    return doc


def backend(service: str, weight: int | None = None, **tags: str) -> Doc:
    """A route backend: the destination `kuma.io/service: service` plus `tags`, weighted when `weight` is given."""
    out: Doc = {} if weight is None else {"weight": weight}
    out["destination"] = {SERVICE_TAG: service, **tags}
    return out


def http_route(
    name: str = "web",
    mesh: str = "default",
    *,
    service: str | None = "edge",
    selectors: Sequence[Mapping[str, str]] | None = None,
    rules: Sequence[Doc] | None = None,
    prefix: str = "/",
    backends: Sequence[Doc] | None = None,
    hostnames: Sequence[str] = (),
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """A MeshGatewayRoute for the gateways of `service`: `rules`, or one rule sending `prefix` to `backends`
    (by default `backend`)."""
    if rules is None:
        rules = [
            {
                "matches": [{"path": {"match": "PREFIX", "value": prefix}}],
                "backends": [backend("backend")] if backends is None else list(backends),
            }
        ]
    http: Doc = {"rules": list(rules)}
    if hostnames:
        http = {"hostnames": list(hostnames), **http}
    doc = _doc("MeshGatewayRoute", mesh, name, labels)
    doc["selectors"] = _selectors(service if selectors is None else None, selectors)
    doc["conf"] = {"http": http}
    return doc


def tcp_route(
    name: str,
    mesh: str = "default",
    *,
    service: str | None = "edge",
    selectors: Sequence[Mapping[str, str]] | None = None,
    backends: Sequence[Doc] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    doc = _doc("MeshGatewayRoute", mesh, name, labels)
    doc["selectors"] = _selectors(service if selectors is None else None, selectors)
    doc["conf"] = {"tcp": {"rules": [{"backends": [backend("backend")] if backends is None else list(backends)}]}}
    return doc


def dataplane(
    name: str,
    *services: str,
    mesh: str = "default",
    address: str = "10.0.0.1",
    port: int = 8080,
    tags: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """A Dataplane at `address` with one inbound per service (ports `port`, `port`+1, ...), each tagged
    `kuma.io/service` plus `tags`."""
    inbound = [{"port": port + i, "tags": {SERVICE_TAG: service, **(tags or {})}} for i, service in enumerate(services)]
    doc = _doc("Dataplane", mesh, name, labels)
    doc["networking"] = {"address": address, "inbound": inbound}
    return doc


def gateway_dataplane(
    name: str,
    service: str = "edge",
    *,
    mesh: str = "default",
    address: str = "10.0.0.1",
    type: str = "BUILTIN",
    tags: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """The Dataplane of a gateway proxy of `service` (builtin unless `type` says DELEGATED)."""
    doc = _doc("Dataplane", mesh, name, labels)
    doc["networking"] = {"address": address, "gateway": {"type": type, "tags": {SERVICE_TAG: service, **(tags or {})}}}
    return doc


def secret(name: str, data: bytes, mesh: str = "default", *, labels: Mapping[str, str] | None = None) -> Doc:
    doc = _doc("Secret", mesh, name, labels)
    doc["data"] = base64.b64encode(data).decode()
    return doc


def gateway_instance(
    name: str = "edge", mesh: str = "default", *, labels: Mapping[str, str] | None = None, **spec: Any
) -> Doc:
    return {**_doc("MeshGatewayInstance", mesh, name, labels), **spec}


def _policy(
    kind: str,
    name: str,
    mesh: str,
    source: str,
    destination: Mapping[str, str] | str,
    conf: Doc | None,
    labels: Mapping[str, str] | None,
) -> Doc:
    doc = _doc(kind, mesh, name, labels)
    doc["sources"] = [{"match": {SERVICE_TAG: source}}]
    match = {SERVICE_TAG: destination} if isinstance(destination, str) else dict(destination)
    doc["destinations"] = [{"match": match}]
    if conf is not None:
        doc["conf"] = conf
    return doc


def timeout(
    name: str = "timeout-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    conf = {"connectTimeout": "5s", "http": {"requestTimeout": "15s"}} if conf is None else conf
    return _policy("Timeout", name, mesh, source, destination, conf, labels)


def retry(
    name: str = "retry-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    conf = {"http": {"numRetries": 3}} if conf is None else conf
    return _policy("Retry", name, mesh, source, destination, conf, labels)


def circuit_breaker(
    name: str = "cb-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    conf = {"thresholds": {"maxConnections": 100}} if conf is None else conf
    return _policy("CircuitBreaker", name, mesh, source, destination, conf, labels)


def health_check(
    name: str = "hc-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    if conf is None:
        conf = {"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1}
    return _policy("HealthCheck", name, mesh, source, destination, conf, labels)


def rate_limit(
    name: str = "rl-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    conf = {"http": {"requests": 10, "interval": "1s"}} if conf is None else conf
    return _policy("RateLimit", name, mesh, source, destination, conf, labels)


def fault_injection(
    name: str = "fi-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    protocol: str = "http",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """Kuma requires the destination to name an HTTP `kuma.io/protocol`: `protocol` is added to it."""
    conf = {"abort": {"percentage": 50, "httpStatus": 500}} if conf is None else conf
    target = {SERVICE_TAG: destination, "kuma.io/protocol": protocol}
    return _policy("FaultInjection", name, mesh, source, target, conf, labels)


def traffic_permission(
    name: str = "allow-all",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    labels: Mapping[str, str] | None = None,
) -> Doc:
    return _policy("TrafficPermission", name, mesh, source, destination, None, labels)


def traffic_log(
    name: str = "log-1",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    backend: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """To the Mesh's logging backend `backend`, or its default one when None."""
    conf = None if backend is None else {"backend": backend}
    return _policy("TrafficLog", name, mesh, source, destination, conf, labels)


def traffic_route(
    name: str = "route-all",
    mesh: str = "default",
    *,
    source: str = "*",
    destination: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    conf = {"destination": {SERVICE_TAG: destination}} if conf is None else conf
    return _policy("TrafficRoute", name, mesh, source, destination, conf, labels)


def proxy_template(
    name: str = "pt-1",
    mesh: str = "default",
    *,
    service: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    doc = _doc("ProxyTemplate", mesh, name, labels)
    doc["selectors"] = _selectors(service, None)
    doc["conf"] = {"imports": ["default-proxy"]} if conf is None else conf
    return doc


def traffic_trace(
    name: str = "tt-1",
    mesh: str = "default",
    *,
    service: str = "*",
    backend: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """The data planes of `service` trace to `backend` (None: no `conf`, the Mesh's default backend)."""
    doc = _doc("TrafficTrace", mesh, name, labels)
    doc["selectors"] = _selectors(service, None)
    if backend is not None:
        doc["conf"] = {"backend": backend}
    return doc


def virtual_outbound(
    name: str = "vo-1",
    mesh: str = "default",
    *,
    service: str = "*",
    conf: Doc | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """By default every service as `<service>.mesh:80`."""
    if conf is None:
        conf = {"host": "{{.service}}.mesh", "port": "80", "parameters": [{"name": "service", "tagKey": SERVICE_TAG}]}
    doc = _doc("VirtualOutbound", mesh, name, labels)
    doc["selectors"] = _selectors(service, None)
    doc["conf"] = conf
    return doc


def external_service(
    name: str = "httpbin",
    mesh: str = "default",
    *,
    address: str = "httpbin.org:443",
    service: str | None = None,
    tls: Doc | None = None,
    tags: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """An ExternalService at `address`, tagged `kuma.io/service: service` (by default its name) and `tags`."""
    networking: Doc = {"address": address}
    if tls is not None:
        networking["tls"] = tls
    doc = _doc("ExternalService", mesh, name, labels)
    doc["networking"] = networking
    doc["tags"] = {SERVICE_TAG: service or name, **(tags or {})}
    return doc


# One builder per policy kind (and ExternalService), each callable with no argument for a valid resource.
POLICY_BUILDERS: dict[str, Callable[[], Doc]] = {
    "Timeout": timeout,
    "Retry": retry,
    "CircuitBreaker": circuit_breaker,
    "HealthCheck": health_check,
    "RateLimit": rate_limit,
    "FaultInjection": fault_injection,
    "TrafficPermission": traffic_permission,
    "TrafficLog": traffic_log,
    "ProxyTemplate": proxy_template,
    "TrafficTrace": traffic_trace,
    "ExternalService": external_service,
    "TrafficRoute": traffic_route,
    "VirtualOutbound": virtual_outbound,
}


def struct(**fields: str | float | bool) -> struct_pb2.Struct:
    spec = struct_pb2.Struct()
    spec.update(fields)
    return spec


def zone_ingress(
    name: str = "ingress",
    *,
    address: str = "10.0.0.9",
    port: int = 10001,
    advertised_address: str | None = None,
    advertised_port: int | None = None,
    labels: Mapping[str, str] | None = None,
) -> Doc:
    """A ZoneIngress listening on `address:port`, advertised to other zones when both advertised fields are set."""
    doc = _doc("ZoneIngress", None, name, labels)
    networking: Doc = {"address": address, "port": port}
    if advertised_address is not None:
        networking["advertisedAddress"] = advertised_address
    if advertised_port is not None:
        networking["advertisedPort"] = advertised_port
    doc["networking"] = networking
    return doc


def zone_egress(
    name: str = "egress", *, address: str = "10.0.0.8", port: int = 10002, labels: Mapping[str, str] | None = None
) -> Doc:
    """A ZoneEgress listening on `address:port`."""
    doc = _doc("ZoneEgress", None, name, labels)
    doc["networking"] = {"address": address, "port": port}
    return doc
