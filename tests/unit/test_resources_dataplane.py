"""Dataplane rules for ordinary, builtin gateway and delegated gateway proxies (Kuma 2.7)."""

from __future__ import annotations

import pytest

from meshgate.resources import codec
from meshgate.resources.kinds import dataplane


def violations(text: str) -> list[tuple[str, str]]:
    (doc,) = codec.load_documents(text)
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


HEADER = """
type: Dataplane
name: dp-1
mesh: default
"""

VALID = {
    "ordinary with inbound, outbound, probes and metrics": """
networking:
  address: 192.168.0.1
  advertisedAddress: 10.0.0.1
  inbound:
  - port: 8080
    servicePort: 18080
    serviceAddress: 127.0.0.1
    tags:
      kuma.io/service: backend
      kuma.io/protocol: HTTP
      version: v1
    serviceProbe:
      interval: 10s
      timeout: 2s
      healthyThreshold: 1
      tcp: {}
  outbound:
  - port: 10001
    tags:
      kuma.io/service: redis
  - port: 10002
    backendRef:
      kind: MeshService
      name: db
      port: 5432
  admin:
    port: 9901
probes:
  port: 9000
  endpoints:
  - inboundPort: 8080
    inboundPath: /healthz
    path: /8080/healthz
metrics:
  type: prometheus
  conf:
    port: 5670
    path: /metrics
""",
    "builtin gateway": """
networking:
  address: gateway.internal
  gateway:
    type: BUILTIN
    tags:
      kuma.io/service: edge-gateway
""",
    "delegated gateway with outbounds": """
networking:
  address: 10.0.0.2
  gateway:
    tags:
      kuma.io/service: kong
      kuma.io/protocol: tcp
  outbound:
  - port: 33033
    tags:
      kuma.io/service: backend
""",
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_valid(body: str) -> None:
    assert violations(HEADER + body) == []


ERRORS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "no networking": ("", [("networking", "must be defined")]),
    "no address and no inbound": (
        "networking: {advertisedAddress: 10.0.0.1}",
        [
            ("networking", "has to contain at least one inbound interface or gateway"),
            ("networking.address", "address can't be empty"),
        ],
    ),
    "bad addresses": (
        """
networking:
  address: 0.0.0.0
  inbound:
  - port: 80
    address: not-an-ip
    serviceAddress: also-not
    tags:
      kuma.io/service: web
""",
        [
            ("networking.address", "must not be 0.0.0.0 or ::"),
            ("networking.inbound[0].serviceAddress", "serviceAddress has to be valid IP address"),
            ("networking.inbound[0].address", "address has to be valid IP address"),
        ],
    ),
    "address that is neither ip nor dns name": (
        """
networking:
  address: 'bad address!'
  inbound:
  - port: 80
    tags:
      kuma.io/service: web
""",
        [("networking.address", "address has to be valid IP address or domain name")],
    ),
    "inbound ports, tags and probes": (
        """
networking:
  address: 10.0.0.1
  inbound:
  - port: 0
    servicePort: 70000
    tags:
      version: 'v/1'
      kuma.io/protocol: smtp
    serviceProbe:
      interval: 0s
      unhealthyThreshold: 0
  - port: 80
    serviceAddress: 10.0.0.1
    tags:
      kuma.io/service: web
""",
        [
            ("networking.inbound[0].port", "port must be in the range [1, 65535]"),
            ("networking.inbound[0].servicePort", "port must be in the range [1, 65535]"),
            (
                'networking.inbound[0].tags["kuma.io/protocol"]',
                'tag "kuma.io/protocol" has an invalid value "smtp". Allowed values: grpc, http, http2, kafka, tcp',
            ),
            (
                'networking.inbound[0].tags["version"]',
                "tag value must consist of alphanumeric characters, dots, dashes and underscores",
            ),
            ('networking.inbound[0].tags["kuma.io/service"]', "tag has to exist"),
            ("networking.inbound[0].serviceProbe.interval", "must have a positive value"),
            ("networking.inbound[0].serviceProbe.unhealthyThreshold", "must have a positive value"),
            (
                "networking.inbound[1].serviceAddress",
                "serviceAddress and servicePort has to differ from address and port",
            ),
        ],
    ),
    "outbounds": (
        """
networking:
  address: 10.0.0.1
  inbound:
  - port: 80
    tags:
      kuma.io/service: web
  outbound:
  - port: 0
    address: localhost
  - port: 1000
    tags:
      version: v1
  - port: 1001
    tags:
      kuma.io/service: redis
    backendRef:
      kind: Service
      port: 0
""",
        [
            ("networking.outbound[0].port", "port must be in the range [1, 65535]"),
            ("networking.outbound[0].address", "address has to be valid IP address"),
            ("networking.outbound[0].tags", 'mandatory tag "kuma.io/service" is missing'),
            ("networking.outbound[1].tags", 'mandatory tag "kuma.io/service" is missing'),
            ("networking.outbound[2].backendRef.kind", "invalid value. Available values are: MeshService"),
            ("networking.outbound[2].backendRef.name", "cannot be empty"),
            ("networking.outbound[2].backendRef.port", "port must be in the range [1, 65535]"),
            ("networking.outbound[2].backendRef", "both backendRef and tags/service cannot be defined"),
        ],
    ),
    "admin port clashes": (
        """
networking:
  address: 127.0.0.1
  inbound:
  - port: 9901
    tags:
      kuma.io/service: web
  outbound:
  - port: 9901
    tags:
      kuma.io/service: redis
  admin:
    port: 9901
""",
        [
            ("networking.admin.port", "must differ from inbound"),
            ("networking.admin.port", "must differ from outbound"),
        ],
    ),
    "builtin gateway with inbound, outbound and probes": (
        """
networking:
  address: 10.0.0.1
  gateway:
    type: BUILTIN
    tags:
      kuma.io/protocol: http
  inbound:
  - port: 80
    tags:
      kuma.io/service: web
  outbound:
  - port: 81
    tags:
      kuma.io/service: db
probes:
  port: 9000
""",
        [
            ("networking.inbound", "inbound cannot be defined for builtin gateways"),
            ("networking.outbound", "outbound cannot be defined for builtin gateways"),
            ("networking.probes", "probes cannot be defined for builtin gateways"),
            (
                'networking.gateway.tags["kuma.io/protocol"]',
                'other values than tcp are not allowed, provided value "http"',
            ),
            ("networking.gateway.tags", 'mandatory tag "kuma.io/service" is missing'),
        ],
    ),
    "delegated gateway with inbound and bad probes": (
        """
networking:
  gateway:
    tags:
      kuma.io/service: kong
  inbound:
  - port: 80
    tags:
      kuma.io/service: web
probes:
  port: 0
  endpoints:
  - inboundPort: 8080
    inboundPath: healthz
    path: ''
""",
        [
            ("networking.inbound", "inbound cannot be defined for delegated gateways"),
            ("networking.address", "address can't be empty"),
            ("probes.port", "port must be in the range [1, 65535]"),
            ("probes.endpoints[0].inboundPath", "should be a valid URL Path"),
            ("probes.endpoints[0].path", "should be a valid URL Path"),
        ],
    ),
    "metrics backend": (
        """
networking:
  address: 10.0.0.1
  inbound:
  - port: 80
    tags:
      kuma.io/service: web
metrics:
  type: prometheus
  conf:
    port: -1
    envoy:
      filterRegex: '('
    unknown: 1
""",
        [
            # Sorted by key: a Struct does not keep the order it was written in.
            ("metrics.conf.port", "must be an integer in the range [0, 4294967295]"),
            ("metrics.conf.unknown", 'unknown field "unknown"'),
        ],
    ),
}


@pytest.mark.parametrize(("body", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_violations(body: str, expected: list[tuple[str, str]]) -> None:
    assert violations(HEADER + body) == expected


def test_metrics_backend_type_and_regex() -> None:
    base = HEADER + "networking: {address: 10.0.0.1, inbound: [{port: 80, tags: {kuma.io/service: web}}]}\n"
    assert violations(base + "metrics: {type: statsd}") == [
        ("metrics.type", 'unknown backend type. Available backends: "prometheus"')
    ]
    (field, message), *rest = violations(base + "metrics: {type: prometheus, conf: {envoy: {filterRegex: '('}}}")
    assert field == "metrics.conf.envoy.filterRegex"
    assert message.startswith("provided regexp isn't correct: ")
    assert rest == []


@pytest.mark.parametrize(
    ("seconds", "nanos", "message"),
    [
        (0, 0, "must have a positive value"),  # Kuma's ValidateDuration
        (-1, 0, "must have a positive value"),  # meshgate's: Kuma accepts a negative period
        (1, -5, "must have a valid value"),  # mixed signs: only a binary peer can send it
        (315_576_000_001, 0, "must have a valid value"),
    ],
)
def test_service_probe_durations(seconds: int, nanos: int, message: str) -> None:
    (doc,) = codec.load_documents(
        HEADER + "networking: {address: 10.0.0.1, inbound: [{port: 80, tags: {kuma.io/service: web}}]}\n"
    )
    resource = codec.decode(doc)
    probe = resource.spec.networking.inbound[0].serviceProbe  # type: ignore[attr-defined]
    probe.timeout.seconds, probe.timeout.nanos = seconds, nanos
    found = [(v.field, v.message) for v in codec.validate(resource)]
    assert ("networking.inbound[0].serviceProbe.timeout", message) in found


def test_descriptor() -> None:
    descriptor = dataplane.DESCRIPTOR
    assert (descriptor.singular, descriptor.plural) == ("dataplane", "dataplanes")
    assert descriptor.sends_to_global()
    assert descriptor.sends_to_zone()  # relayed to the other zones
    assert descriptor.relayed_between_zones
    assert not descriptor.writable_on_global
    assert descriptor.writable_on_zone
