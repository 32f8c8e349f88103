"""MeshGateway rules: Kuma 2.7's gateway validator, exact paths and messages, every violation reported."""

from __future__ import annotations

import pytest

from meshgate.resources import codec
from meshgate.resources.kinds import meshgateway


def violations(text: str) -> list[tuple[str, str]]:
    (doc,) = codec.load_documents(text)
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


SELECTOR_VALUE = 'tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be "*"'

HEADER = """
type: MeshGateway
name: gateway
mesh: default
"""

VALID = {
    "http listener with tags": """
selectors:
- match:
    kuma.io/service: gateway
tags:
  product: edge
conf:
  listeners:
  - hostname: www-1.example.com
    port: 443
    protocol: HTTP
    tags:
      name: https
""",
    "tls listener terminating": """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 443
    protocol: TLS
    tls:
      mode: TERMINATE
      certificates:
      - secret: example-kuma-io-certificate
""",
    "tls passthrough needs no certificate": """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 443
    protocol: TLS
    hostname: '*.example.com'
    tls:
      mode: PASSTHROUGH
""",
    "cross mesh http without hostname": """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - protocol: HTTP
    port: 99
    crossMesh: true
""",
    "same port, same limit, different hostnames": """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - protocol: HTTP
    hostname: one.com
    port: 99
    resources:
      connectionLimit: 2
  - protocol: HTTP
    hostname: two.com
    port: 99
    resources:
      connectionLimit: 2
  - protocol: HTTP
    port: 99
""",
    "two certificates, inline and inlineString": """
selectors:
- match:
    kuma.io/service: gateway
    version: '*'
conf:
  listeners:
  - port: 8443
    protocol: HTTPS
    tls:
      mode: TERMINATE
      certificates:
      - inline: TFMwdExTMUNSVWRK
      - inlineString: '-----BEGIN CERTIFICATE-----'
""",
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_valid(body: str) -> None:
    assert violations(HEADER + body) == []


ERRORS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "no selectors, no certificates": (
        """
selectors: []
conf:
  listeners:
  - port: 443
    protocol: HTTPS
    tls:
      mode: TERMINATE
""",
        [
            ("selectors", "must have at least one element"),
            ("conf.listeners[0].tls.certificates", "cannot be empty in TLS termination mode"),
        ],
    ),
    "selector without service and with bad values": (
        """
selectors:
- match: {}
- match:
    version: 'v 1'
    '': x
conf:
  listeners:
  - port: 80
    protocol: HTTP
""",
        [
            ("selectors[0].match", "must have at least one tag"),
            ("selectors[0].match", 'mandatory tag "kuma.io/service" is missing'),
            ("selectors[1].match", "tag name must be non-empty"),
            (
                'selectors[1].match["version"]',
                SELECTOR_VALUE,
            ),
            ("selectors[1].match", 'mandatory tag "kuma.io/service" is missing'),
        ],
    ),
    "reserved tags on the gateway and a listener": (
        """
selectors:
- match:
    kuma.io/service: gateway
tags:
  kuma.io/service: other
  kuma.io/protocol: http
conf:
  listeners:
  - port: 80
    protocol: HTTP
    tags:
      kuma.io/zone: east
      kuma.io/external-service-name: ext
      bad key!: x
""",
        [
            ('tags["kuma.io/protocol"]', 'tag name must not be "kuma.io/protocol"'),
            ('tags["kuma.io/service"]', 'tag name must not be "kuma.io/service"'),
            (
                'conf.listeners[0].tags["bad key!"]',
                "tag name must consist of alphanumeric characters, dots, dashes, slashes and underscores",
            ),
            (
                'conf.listeners[0].tags["kuma.io/external-service-name"]',
                'tag name must not be "kuma.io/external-service-name"',
            ),
            ('conf.listeners[0].tags["kuma.io/zone"]', 'tag name must not be "kuma.io/zone"'),
        ],
    ),
    "no conf": (
        """
selectors:
- match:
    kuma.io/service: gateway
""",
        [("conf", "cannot be empty")],
    ),
    "no listeners": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners: []
""",
        [("conf.listeners", "cannot be empty")],
    ),
    "port, protocol and hostname": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 0
    hostname: Upper.example.com
  - port: 65536
    protocol: HTTP
    hostname: '*.*.example.com'
  - port: 81
    protocol: HTTP
    hostname: 'foo.*.com'
""",
        [
            ("conf.listeners[0].hostname", "invalid hostname"),
            ("conf.listeners[0].port", "port must be in the range [1, 65535]"),
            ("conf.listeners[0].protocol", "cannot be empty"),
            ("conf.listeners[1].hostname", "invalid wildcard domain"),
            ("conf.listeners[1].port", "port must be in the range [1, 65535]"),
            ("conf.listeners[2].hostname", "invalid hostname"),
        ],
    ),
    "https without tls, https passthrough, tls without tls": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 443
    protocol: HTTPS
  - port: 444
    protocol: HTTPS
    tls:
      mode: PASSTHROUGH
  - port: 445
    protocol: TLS
""",
        [
            ("conf.listeners[0].tls", "cannot be empty"),
            ("conf.listeners[1].tls.mode", "mode is not supported on HTTPS listeners"),
            ("conf.listeners[2].tls", "cannot be empty"),
        ],
    ),
    "tls mode and certificates": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 443
    protocol: HTTPS
    tls:
      certificates:
      - secret: a
  - port: 444
    protocol: HTTPS
    tls:
      mode: TERMINATE
      certificates:
      - secret: a
      - secret: b
      - secret: c
  - port: 445
    protocol: TLS
    tls:
      mode: TERMINATE
      certificates:
      - {}
      - secret: ''
""",
        [
            ("conf.listeners[0].tls.mode", "cannot be empty"),
            ("conf.listeners[1].tls.certificates", "cannot have more than 2 certificates"),
            (
                "conf.listeners[2].tls.certificates[0]",
                "data source has to be chosen. Available sources: secret, file, inline",
            ),
            ("conf.listeners[2].tls.certificates[1].secret", "cannot be empty"),
        ],
    ),
    "tls on http and tcp listeners": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 80
    protocol: HTTP
    tls:
      mode: TERMINATE
      certificates:
      - secret: a
  - port: 81
    protocol: TCP
    tls:
      mode: PASSTHROUGH
  - port: 82
    protocol: HTTP
    tls: {}
  - port: 83
    protocol: TCP
    tls:
      mode: TERMINATE
""",
        # A tls block that Kuma's own checks reject gets Kuma's answer, not meshgate's.
        [
            ("conf.listeners[0].tls", "must be empty for HTTP listeners"),
            ("conf.listeners[1].tls", "must be empty for TCP listeners"),
            ("conf.listeners[2].tls.mode", "cannot be empty"),
            ("conf.listeners[3].tls.certificates", "cannot be empty in TLS termination mode"),
        ],
    ),
    "cross mesh: https, tcp, tls and two selectors": (
        """
selectors:
- match:
    kuma.io/service: gateway
- match:
    kuma.io/service: gateway-2
conf:
  listeners:
  - port: 443
    protocol: HTTPS
    crossMesh: true
  - port: 80
    protocol: HTTP
    crossMesh: true
    tls:
      mode: TERMINATE
  - port: 81
    protocol: TCP
    crossMesh: true
""",
        [
            ("selectors[1]", "there can be at most one selector"),
            ("conf.listeners[0].protocol", "protocol is not supported with crossMesh"),
            ("conf.listeners[1].tls", "must be empty with crossMesh"),
            ("conf.listeners[2].protocol", "protocol is not supported with crossMesh"),
        ],
    ),
    "hostname conflict ('' counts as '*')": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - port: 8080
    protocol: HTTP
  - port: 8080
    protocol: HTTP
    hostname: '*'
""",
        [
            ("conf.listeners[0]", "multiple listeners for hostname on this port"),
            ("conf.listeners[1]", "multiple listeners for hostname on this port"),
        ],
    ),
    "hostname, protocol and resource conflict": (
        """
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners:
  - hostname: www-1.example.com
    port: 443
    protocol: TCP
    resources:
      connectionLimit: 2
  - hostname: www-1.example.com
    port: 443
    protocol: HTTPS
    tls:
      mode: TERMINATE
    resources:
      connectionLimit: 1
""",
        [
            ("conf.listeners[1].tls.certificates", "cannot be empty in TLS termination mode"),
            ("conf.listeners[0]", "protocol conflicts with other listeners on this port"),
            ("conf.listeners[1]", "protocol conflicts with other listeners on this port"),
            ("conf.listeners[0]", "multiple listeners for hostname on this port"),
            ("conf.listeners[1]", "multiple listeners for hostname on this port"),
            ("conf.listeners[0].resources.connectionLimit", "conflicting values for this port"),
            ("conf.listeners[1].resources.connectionLimit", "conflicting values for this port"),
        ],
    ),
}


@pytest.mark.parametrize(("body", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_violations(body: str, expected: list[tuple[str, str]]) -> None:
    assert violations(HEADER + body) == expected


def test_name_and_mesh_rules_come_with_spec_rules() -> None:
    text = """
type: MeshGateway
name: Edge_Gateway
mesh: Bad Mesh
labels:
  kuma.io/origin: elsewhere
  bad key/: x
selectors:
- match:
    kuma.io/service: gateway
conf:
  listeners: []
"""
    assert violations(text) == [
        (
            "name",
            "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        ),
        (
            "mesh",
            "invalid characters. Valid characters are numbers, lowercase latin letters and '-', '_', '.' symbols.",
        ),
        (
            'labels["bad key/"]',
            "label key must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 "
            "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
        ),
        ('labels["kuma.io/origin"]', 'unknown resource origin "elsewhere"'),
        ("conf.listeners", "cannot be empty"),
    ]


def test_descriptor() -> None:
    descriptor = meshgateway.DESCRIPTOR
    assert (descriptor.name, descriptor.singular, descriptor.plural) == (
        "MeshGateway",
        "meshgateway",
        "meshgateways",
    )
    assert descriptor.mesh_scoped
    assert descriptor.sends_to_zone()
    assert descriptor.sends_to_global()
    assert descriptor.writable_on_global
    assert descriptor.writable_on_zone  # zone-origin gateways sync up (Kuma 2.7)
    assert descriptor.spec_type_url == "type.googleapis.com/kuma.mesh.v1alpha1.MeshGateway"
