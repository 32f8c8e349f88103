"""Mesh rules: mTLS backends, logging, tracing, metrics, constraints and zone egress (Kuma 2.7)."""

from __future__ import annotations

import math

import pytest

from meshgate.api.mesh.v1alpha1.mesh_pb2 import Mesh
from meshgate.resources import codec
from meshgate.resources.errors import ValidationError
from meshgate.resources.kinds import mesh
from meshgate.resources.model import Meta, Resource


def violations(text: str) -> list[tuple[str, str]]:
    (doc,) = codec.load_documents(text)
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


SELECTOR_VALUE = 'tag value must consist of alphanumeric characters, dots, dashes, slashes and underscores or be "*"'

HEADER = """
type: Mesh
name: default
"""

VALID = {
    "empty": "",
    "builtin mtls, logging, tracing, metrics": """
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
    mode: PERMISSIVE
    dpCert:
      rotation:
        expiration: 1d
      requestTimeout: 5s
    conf:
      caCert:
        RSAbits: 2048
        expiration: 10y
logging:
  defaultBackend: file
  backends:
  - name: file
    type: file
    conf:
      path: /tmp/access.log
  - name: tcp
    type: tcp
    format: '%START_TIME%'
    conf:
      address: logstash:5000
tracing:
  defaultBackend: zipkin
  backends:
  - name: zipkin
    type: zipkin
    sampling: 80.5
    conf:
      url: http://zipkin.local:9411/api/v2/spans
      apiVersion: httpJson
  - name: datadog
    type: datadog
    conf:
      address: 127.0.0.1
      port: 8126
metrics:
  enabledBackend: prometheus-1
  backends:
  - name: prometheus-1
    type: prometheus
    conf:
      port: 5670
      skipMTLS: true
      tls:
        mode: disabled
      aggregate:
      - name: app
        port: 8080
routing:
  zoneEgress: true
  localityAwareLoadBalancing: true
constraints:
  dataplaneProxy:
    requirements:
    - tags:
        kuma.io/zone: '*'
networking:
  outbound:
    passthrough: false
skipCreatingInitialPolicies: ['*']
""",
    "provided mtls": """
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: provided
    conf:
      cert:
        secret: ca-cert
      key:
        inlineString: '-----BEGIN RSA PRIVATE KEY-----'
""",
    "provided mtls, validation skipped": """
mtls:
  skipValidation: true
  backends:
  - name: ca-1
    type: provided
""",
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
def test_valid(body: str) -> None:
    assert violations(HEADER + body) == []


ERRORS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "mtls backends": (
        """
mtls:
  enabledBackend: ca-3
  backends:
  - name: ca-1
    type: builtin
  - type: ''
    dpCert:
      rotation:
        expiration: 1 day
  - name: ca-1
    type: vault
""",
        # Kuma's names: the dpCert path has no backend index, and the CA plugins are looked up in order up to
        # the first backend that has none (the empty type), so the third backend's type is not reached.
        [
            ("mtls.backends", "cannot have more than 1 backends"),
            ("mtls.backends[1].name", "cannot be empty"),
            ("mtls.backends[2].name", '"ca-1" name is already used for another backend'),
            ("mtls.enabledBackend", "has to be set to one of the backends in the mesh"),
            ("mtls.dpcert.rotation.expiration", "has to be a valid format"),
            ("mtls.backends[1].type", "could not find installed plugin for this type"),
        ],
    ),
    "builtin backend name and conf": (
        """
mtls:
  backends:
  - name: CA_1
    type: builtin
    conf:
      caCert:
        RSAbits: -1
        expiration: forever
        extra: 1
      other: true
""",
        [
            # Kuma's builtin CA names the name `mtls.backends.name`, and its mesh manager puts that under `conf`.
            ("mtls.backends[0].conf.mtls.backends.name", '"CA_1" name must be valid dns name'),
            ("mtls.backends[0].conf.caCert.RSAbits", "must be an integer in the range [0, 4294967295]"),
            ("mtls.backends[0].conf.caCert.expiration", "has to be a valid format"),
            ("mtls.backends[0].conf.caCert.extra", 'unknown field "extra"'),
            ("mtls.backends[0].conf.other", 'unknown field "other"'),
        ],
    ),
    "provided backend conf": (
        """
mtls:
  backends:
  - name: ca-1
    type: provided
    conf:
      cert:
        secret: ''
      bogus: 1
""",
        [
            ("mtls.backends[0].conf.bogus", 'unknown field "bogus"'),
            ("mtls.backends[0].conf.cert.secret", "cannot be empty"),
            ("mtls.backends[0].conf.key", "has to be defined"),
        ],
    ),
    "logging backends": (
        """
logging:
  defaultBackend: missing
  backends:
  - name: a
    type: file
  - name: a
    type: tcp
    conf:
      address: no-port
  - type: syslog
  - name: c
    type: tcp
""",
        [
            ("logging.backends[0].config.path", "cannot be empty"),
            ("logging.backends[1].config.address", "has to be in format of HOST:PORT"),
            ("logging.backends[2].name", "cannot be empty"),
            ("logging.backends[2].type", 'unknown backend type. Available backends: "tcp", "file"'),
            ("logging.backends[3].config.address", "cannot be empty"),
            ("logging.backends[1].name", '"a" name is already used for another backend'),
            ("logging.defaultBackend", "has to be set to one of the logging backend in mesh"),
        ],
    ),
    "unknown conf keys are reported and the rest is still checked": (
        """
logging:
  backends:
  - name: f
    type: file
    conf:
      pth: /var/log/access.log
""",
        [
            ("logging.backends[0].config.pth", 'unknown field "pth"'),
            ("logging.backends[0].config.path", "cannot be empty"),
        ],
    ),
    "tracing backends": (
        """
tracing:
  defaultBackend: missing
  backends:
  - name: z1
    type: zipkin
    sampling: 101
    conf:
      url: http://zipkin
      apiVersion: v3
  - name: z2
    type: zipkin
    conf: {}
  - name: d
    type: datadog
    conf:
      port: 0
  - name: j
    type: jaeger
""",
        [
            ("tracing.backends[0].sampling", "has to be in [0.0 - 100.0] range"),
            (
                "tracing.backends[0].config.apiVersion",
                "has invalid value. Allowed values: httpJsonV1, httpJson, httpProto",
            ),
            ("tracing.backends[0].config.url", "port has to be explicitly specified"),
            ("tracing.backends[1].config.url", "cannot be empty"),
            ("tracing.backends[2].config.address", "cannot be empty"),
            ("tracing.backends[2].config.port", "port must be in the range [1, 65535]"),
            ("tracing.backends[3].type", 'unknown backend type. Available backends: "zipkin", "datadog"'),
            ("tracing.defaultBackend", "has to be set to one of the tracing backend in mesh"),
        ],
    ),
    "metrics backends": (
        """
metrics:
  enabledBackend: missing
  backends:
  - name: p
    type: prometheus
    conf:
      skipMTLS: true
      tls:
        mode: activeMTLSBackend
      aggregate:  # not reached: as Kuma, a TLS conflict is all that is said about the conf
      - name: app
      - name: app
  - name: p
    type: prometheus
    conf:
      aggregate:
      - name: app
      - name: app
  - name: s
    type: statsd
""",
        [
            ("metrics.backends[0].conf", "skipMTLS and tls configuration cannot be defined together"),
            ("metrics.backends[1].name", '"p" name is already used for another backend'),
            ("metrics.backends[1].conf.aggregate[1].name", "duplicate entry: app, values have to be unique"),
            ("metrics.backends[2].type", 'unknown backend type. Available backends: "prometheus"'),
            ("metrics.enabledBackend", "has to be set to one of the backends in the mesh"),
        ],
    ),
    "constraints and zone egress": (
        """
routing:
  zoneEgress: true
constraints:
  dataplaneProxy:
    requirements:
    - tags: {}
    restrictions:
    - tags:
        version: 'a b'
""",
        [
            ("constraints.dataplaneProxy.requirements[0].tags", "must have at least one tag"),
            (
                'constraints.dataplaneProxy.restrictions[0].tags["version"]',
                SELECTOR_VALUE,
            ),
            ("mtls", "has to be set when zoneEgress enabled"),
        ],
    ),
}


@pytest.mark.parametrize(("body", "expected"), ERRORS.values(), ids=ERRORS.keys())
def test_violations(body: str, expected: list[tuple[str, str]]) -> None:
    assert violations(HEADER + body) == expected


def test_name_rules() -> None:
    long_name = "m" * 64
    assert violations(f"type: Mesh\nname: {long_name}\n") == [("name", "cannot be longer than 63 characters")]
    assert violations("type: Mesh\nname: ''\n".replace("''", "x" * 254)) == [
        ("name", "value length must less or equal 253"),
        ("name", "cannot be longer than 63 characters"),
    ]


def test_descriptor() -> None:
    descriptor = mesh.DESCRIPTOR
    assert (descriptor.singular, descriptor.plural) == ("mesh", "meshes")
    assert not descriptor.mesh_scoped
    assert descriptor.sends_to_zone()
    assert not descriptor.sends_to_global()
    assert descriptor.writable_on_global
    assert not descriptor.writable_on_zone


def test_specs_only_a_binary_peer_can_send_are_rejected_not_raised() -> None:
    """An infinite number fits a Struct on the wire but has no JSON form: a violation, never an exception."""
    spec = Mesh()
    backend = spec.mtls.backends.add(name="ca-1", type="builtin")
    backend.conf.update({"caCert": {"RSAbits": math.inf}})
    found = [(v.field, v.message) for v in codec.validate(Resource("Mesh", Meta(name="default"), spec))]
    assert found[0] == (
        "mtls.backends[0].conf.caCert.RSAbits",
        "must be an integer in the range [0, 4294967295]",
    )
    assert found[1][0] == ""
    assert found[1][1].startswith("cannot be written as JSON: ")
    assert len(found) == 2


@pytest.mark.parametrize("mode", ["STRICT", "PERMISSIVE", 0, 1])
def test_mtls_mode_takes_kumas_two_values(mode: str | int) -> None:
    doc = {"type": "Mesh", "name": "default", "mtls": {"backends": [{"name": "ca-1", "type": "builtin", "mode": mode}]}}
    assert codec.validate(codec.load(doc)) == []


@pytest.mark.parametrize(
    ("mode", "shown"), [("permissive", '"permissive"'), ("TLS", '"TLS"'), (2, "2"), (True, "True")]
)
def test_an_unknown_mtls_mode_is_refused_naming_the_field(mode: object, shown: str) -> None:
    """Kuma's mesh validator has no rule for `mode`: its JSON decoding refuses a value that is not of the enum
    (`unknown value ... for enum kuma.mesh.v1alpha1.CertificateAuthorityBackend.Mode`); meshgate's structural
    check does too, naming the field and the allowed values."""
    doc = {"type": "Mesh", "name": "default", "mtls": {"backends": [{"name": "ca-1", "type": "builtin", "mode": mode}]}}
    with pytest.raises(ValidationError) as raised:
        codec.load(doc)
    assert [(v.field, v.message) for v in raised.value.violations] == [
        ("mtls.backends[0].mode", f"invalid value {shown}. Allowed values: STRICT, PERMISSIVE")
    ]
