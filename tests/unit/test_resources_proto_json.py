"""Durations in resource documents, read as Kuma 2.7 reads them (golang/protobuf jsonpb: Go's time.ParseDuration)
and written as jsonpb writes them (seconds with an "s" suffix)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import json_format, struct_pb2
from google.protobuf.duration_pb2 import Duration

from meshgate.api.mesh.v1alpha1.kds_pb2 import KumaResource
from meshgate.api.mesh.v1alpha1.timeout_pb2 import Timeout
from meshgate.resources import codec
from meshgate.resources.duration import DurationError, parse_duration
from meshgate.resources.errors import ValidationError
from meshgate.resources.kinds._envoy_json import envoy_message, parse_envoy_any
from meshgate.resources.model import Meta, Resource
from meshgate.resources.proto_json import duration_json, parse_dict, read_duration, with_proto_durations
from meshgate.testing import factory
from meshgate.xds.policies import typed_conf

# Kuma's Timeout docs (2.7, Universal).
DOCS_CONF: dict[str, Any] = {
    "connectTimeout": "5s",
    "tcp": {"idleTimeout": "1h"},
    "http": {"requestTimeout": "15s", "idleTimeout": "1h", "streamIdleTimeout": "30m", "maxStreamDuration": "0s"},
}
DOCS_CONF_JSON = {
    "connectTimeout": "5s",
    "tcp": {"idleTimeout": "3600s"},
    "http": {"requestTimeout": "15s", "idleTimeout": "3600s", "streamIdleTimeout": "1800s", "maxStreamDuration": "0s"},
}
EXAMPLE = 'must be a duration such as "10s", "1h" or "200ms"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Go's forms
        ("1h", "3600s"),
        ("30m", "1800s"),
        ("1m30s", "90s"),
        ("2h45m", "9900s"),
        ("1.5h", "5400s"),
        ("200ms", "0.200s"),
        ("25ms", "0.025s"),
        ("1us", "0.000001s"),
        ("1\u00b5s", "0.000001s"),
        ("1\u03bcs", "0.000001s"),
        ("15ns", "0.000000015s"),
        ("1h0m0s", "3600s"),
        ("0", "0s"),
        ("-0", "0s"),
        ("0ms", "0s"),
        ("+5s", "5s"),
        ("-1.5s", "-1.500s"),
        ("-1m", "-60s"),
        (".5s", "0.500s"),
        ("5.s", "5s"),
        ("1.0000000001s", "1s"),  # Go keeps nanoseconds: the tenth fractional digit is dropped
        ("2562047h", "9223369200s"),
        ("-9223372036854775808ns", "-9223372036.854775808s"),  # Go's smallest duration
        # protobuf's form, kept as it was accepted before (and as a GET answers)
        ("5s", "5s"),
        ("3600s", "3600s"),
        ("0.5s", "0.500s"),
        ("-0.000000001s", "-0.000000001s"),
        ("315576000000s", "315576000000s"),  # beyond Go's 292 years, within protobuf's 10,000
    ],
)
def test_go_and_protobuf_forms_become_protobuf_json(text: str, expected: str) -> None:
    assert duration_json(text) == expected
    parsed = Duration()
    parsed.FromJsonString(expected)
    assert read_duration(text) == parsed


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", 'time: invalid duration ""'),
        ("10", 'time: missing unit in duration "10"'),
        ("1.5", 'time: missing unit in duration "1.5"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1h-", 'time: unknown unit "h-" in duration "1h-"'),
        ("5 s", 'time: unknown unit " s" in duration "5 s"'),
        ("s", 'time: invalid duration "s"'),
        (".s", 'time: invalid duration ".s"'),
        ("--1s", 'time: invalid duration "--1s"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        ("2562048h", 'time: invalid duration "2562048h"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("315576000001s", 'time: invalid duration "315576000001s"'),
        ("1\u00b5x", 'time: unknown unit "\\xc2\\xb5x" in duration "1\\xc2\\xb5x"'),  # Go's quote escapes bytes
    ],
)
def test_malformed_durations_fail_with_gos_reason(text: str, reason: str) -> None:
    with pytest.raises(DurationError) as raised:
        read_duration(text)
    assert str(raised.value) == reason


def test_long_texts_fail_or_parse_as_go_without_huge_integers() -> None:
    # Go stops at the 19th integer digit (overflow) and stops adding fraction digits past what a uint64 holds.
    with pytest.raises(DurationError, match=r"^time: invalid duration "):
        parse_duration("1" * 10_000 + "s")
    assert parse_duration("1." + "0" * 10_000 + "1s") == 1_000_000_000
    assert parse_duration("0." + "9" * 10_000 + "s") == 1_000_000_000  # float64 rounding, as Go's


def test_a_timeout_document_takes_kumas_documented_durations_and_encodes_them_in_seconds() -> None:
    doc = factory.timeout("t", conf=copy.deepcopy(DOCS_CONF))
    resource = codec.load(doc)
    conf = resource.spec.conf  # type: ignore[attr-defined]
    assert conf.connect_timeout.ToSeconds() == 5
    assert conf.tcp.idle_timeout.ToSeconds() == 3600
    assert conf.http.stream_idle_timeout.ToSeconds() == 1800
    assert conf.http.HasField("max_stream_duration")
    assert conf.http.max_stream_duration.ToNanoseconds() == 0
    assert codec.encode(resource)["conf"] == DOCS_CONF_JSON
    assert doc["conf"] == DOCS_CONF  # the caller's document is not edited


@pytest.mark.parametrize(
    ("conf", "field", "message"),
    [
        ({"connectTimeout": "5"}, "conf.connectTimeout", f'{EXAMPLE} (time: missing unit in duration "5")'),
        (
            {"tcp": {"idleTimeout": "1d"}},
            "conf.tcp.idleTimeout",
            f'{EXAMPLE} (time: unknown unit "d" in duration "1d")',
        ),
        ({"http": {"idle_timeout": 60}}, "conf.http.idle_timeout", f"{EXAMPLE}, not number"),
        ({"http": {"requestTimeout": True}}, "conf.http.requestTimeout", f"{EXAMPLE}, not boolean"),
        ({"grpc": {"maxStreamDuration": ""}}, "conf.grpc.maxStreamDuration", f'{EXAMPLE} (time: invalid duration "")'),
    ],
)
def test_a_malformed_duration_is_refused_with_its_field_path(conf: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        codec.load(factory.timeout("t", conf=conf))
    assert [(v.field, v.message) for v in raised.value.violations] == [(field, message)]


def test_every_malformed_duration_of_a_document_is_reported() -> None:
    dataplane = factory.dataplane("web-1", "web", address="10.0.0.1")
    dataplane["networking"]["inbound"][0]["serviceProbe"] = {"interval": "10", "timeout": "1m30", "tcp": {}}
    with pytest.raises(ValidationError) as raised:
        codec.decode(dataplane)
    assert [(v.field, v.message) for v in raised.value.violations] == [
        ("networking.inbound[0].serviceProbe.interval", f'{EXAMPLE} (time: missing unit in duration "10")'),
        ("networking.inbound[0].serviceProbe.timeout", f'{EXAMPLE} (time: missing unit in duration "1m30")'),
    ]


def test_negative_durations_keep_kumas_rules() -> None:
    # Kuma's Timeout rules compare with zero only: a negative timeout is valid there, zero is not.
    negative = codec.load(factory.timeout("t", conf={"http": {"requestTimeout": "-1h"}}))
    assert negative.spec.conf.http.request_timeout.ToSeconds() == -3600  # type: ignore[attr-defined]
    with pytest.raises(ValidationError) as raised:
        codec.load(factory.timeout("t", conf={"tcp": {"idleTimeout": "0ms"}}))
    assert [(v.field, v.message) for v in raised.value.violations] == [
        ("conf.tcp.idleTimeout", "has to be greater than 0")
    ]
    # A Dataplane's service probe (Kuma's ValidateDuration) wants a positive interval.
    doc = factory.dataplane("web-1", "web", address="10.0.0.1")
    doc["networking"]["inbound"][0]["serviceProbe"] = {"interval": "-1m", "timeout": "1s", "tcp": {}}
    resource = codec.decode(doc)
    assert resource.spec.networking.inbound[0].serviceProbe.interval.seconds == -60  # type: ignore[attr-defined]
    assert [(v.field, v.message) for v in codec.validate(resource)] == [
        ("networking.inbound[0].serviceProbe.interval", "must have a positive value")
    ]


def test_proto_names_maps_and_anys_are_rewritten_too() -> None:
    doc = {
        "meta": {"name": "a"},
        "spec": {
            "@type": "type.googleapis.com/kuma.mesh.v1alpha1.Timeout",
            "conf": {"connect_timeout": "1m", "http": {"request_timeout": "250ms"}},
        },
    }
    message = parse_dict(doc, KumaResource())
    timeout = Timeout()
    message.spec.Unpack(timeout)
    assert timeout.conf.connect_timeout.ToSeconds() == 60
    assert timeout.conf.http.request_timeout.ToMilliseconds() == 250
    wrapped = parse_dict(
        {"spec": {"@type": "type.googleapis.com/google.protobuf.Duration", "value": "2h"}}, KumaResource()
    )
    inner = Duration()
    wrapped.spec.Unpack(inner)
    assert inner.ToSeconds() == 7200


def test_what_is_no_duration_is_left_for_the_checks_to_refuse() -> None:
    conf = {"connectTimeout": "soon", "tcp": {"idleTimeout": 5}, "bogus": "1h", "http": ["1h"]}
    assert with_proto_durations(conf, Timeout.Conf.DESCRIPTOR) == conf
    with pytest.raises(json_format.ParseError):
        parse_dict({"connectTimeout": "soon"}, Timeout.Conf())


def test_a_struct_conf_with_go_durations_is_read_by_the_xds_modules() -> None:
    """A policy whose spec is a google.protobuf.Struct (the older path) keeps durations as written; the xDS
    modules read its `conf` as Kuma's `ToTyped` does."""
    spec = struct_pb2.Struct()
    spec.update({"sources": [], "destinations": [], "conf": copy.deepcopy(DOCS_CONF)})
    policy = Resource(kind="Timeout", meta=Meta(name="old", mesh="default"), spec=spec)
    conf = typed_conf(policy, Timeout.Conf)
    assert conf.tcp.idle_timeout.ToSeconds() == 3600
    assert conf.http.idle_timeout.ToSeconds() == 3600
    assert conf.http.stream_idle_timeout.ToSeconds() == 1800
    assert conf.http.request_timeout.ToSeconds() == 15
    assert conf.connect_timeout.ToSeconds() == 5


def test_envoy_yaml_in_a_proxy_template_takes_go_durations_as_kumas_from_yaml() -> None:
    cluster = envoy_message("name: x\nconnectTimeout: 1m30s", cluster_pb2.Cluster)
    assert cluster.connect_timeout.ToSeconds() == 90
    listener = """
'@type': type.googleapis.com/envoy.config.listener.v3.Listener
name: l
listenerFiltersTimeout: 250ms
filterChains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typedConfig:
      '@type': type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      statPrefix: s
      streamIdleTimeout: 5m
"""
    assert parse_envoy_any(listener) is None
    assert "duration" in (parse_envoy_any(listener.replace("5m", "5 minutes")) or "")
