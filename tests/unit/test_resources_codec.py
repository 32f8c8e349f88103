"""The Universal codec: structural errors with paths, round trips, YAML documents and spec bytes."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources import codec, registry
from meshgate.resources.errors import Path, UnknownKindError, ValidationError, Violation, go_quote
from meshgate.resources.model import Meta, Resource


def decode_errors(doc: Any, kind: str | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        codec.decode(doc, kind=kind)
    return [(v.field, v.message) for v in caught.value.violations]


GATEWAY = {"type": "MeshGateway", "mesh": "default", "name": "edge"}
DATAPLANE = {"type": "Dataplane", "mesh": "default", "name": "dp"}
ROUTE = {"type": "MeshGatewayRoute", "mesh": "default", "name": "route"}

STRUCTURE_ERRORS: dict[str, tuple[Any, list[tuple[str, str]]]] = {
    "not an object": ([GATEWAY], [("", "must be an object, not array")]),
    "no type, no name": ({}, [("type", "cannot be empty"), ("name", "cannot be empty")]),
    "unknown type": (
        {"type": "Gateway", "name": "x"},
        [
            (
                "type",
                'unknown type "Gateway". Allowed values: Mesh, Secret, MeshGateway, MeshGatewayRoute, Dataplane, Zone,'
                " MeshGatewayInstance, Timeout, Retry, CircuitBreaker, HealthCheck, RateLimit, FaultInjection,"
                " TrafficPermission, TrafficLog, TrafficTrace, ProxyTemplate, ExternalService, TrafficRoute,"
                " VirtualOutbound,"
                " ZoneIngress, ZoneEgress, DataplaneInsight",
            )
        ],
    ),
    "type and name of the wrong JSON type": (
        {"type": 1, "name": 2},
        [("type", "must be a string, not number"), ("name", "must be a string, not number")],
    ),
    "mesh missing on a mesh-scoped kind": (
        {"type": "MeshGateway", "name": "x"},
        [("mesh", "cannot be empty")],
    ),
    "mesh on a Mesh": (
        {"type": "Mesh", "name": "default", "mesh": "default"},
        [("mesh", "must not be set: Mesh is not mesh-scoped")],
    ),
    "labels": (
        {**GATEWAY, "labels": {"a": 1, 2: "b"}},
        [
            ('labels["a"]', "must be a string, not number"),
            ('labels["2"]', "key must be a string, not number"),
        ],
    ),
    "labels not an object": ({**GATEWAY, "labels": ["a"]}, [("labels", "must be an object, not array")]),
    "unknown fields at every depth": (
        {
            **GATEWAY,
            "spec": {},
            "selectors": [{"match": {"kuma.io/service": "edge"}, "matchTags": {}}],
            "conf": {"listeners": [{"port": 80, "protocol": "HTTP", "foo": 1}]},
        },
        [
            ("spec", 'unknown field "spec"'),
            ("selectors[0].matchTags", 'unknown field "matchTags"'),
            ("conf.listeners[0].foo", 'unknown field "foo"'),
        ],
    ),
    "wrong JSON types": (
        {
            **GATEWAY,
            "selectors": {"match": {}},
            "tags": {"a": 1, "b": None},
            "conf": {"listeners": [{"port": "eighty", "hostname": 7, "crossMesh": "yes", "tls": []}, None]},
        },
        [
            ("selectors", "must be an array, not object"),
            ('tags["a"]', "must be a string, not number"),
            ('tags["b"]', "cannot be null"),
            ("conf.listeners[0].port", "must be an integer in the range [0, 4294967295]"),
            ("conf.listeners[0].hostname", "must be a string, not number"),
            ("conf.listeners[0].crossMesh", "must be a boolean, not string"),
            ("conf.listeners[0].tls", "must be an object, not array"),
            ("conf.listeners[1]", "cannot be null"),
        ],
    ),
    "enum values and integer range": (
        {
            **GATEWAY,
            "conf": {
                "listeners": [
                    {"port": -1, "protocol": "UDP"},
                    {"port": 4294967296, "protocol": 2, "tls": {"mode": True}},
                ]
            },
        },
        [
            ("conf.listeners[0].port", "must be an integer in the range [0, 4294967295]"),
            (
                "conf.listeners[0].protocol",
                'invalid value "UDP". Allowed values: NONE, TCP, TLS, HTTP, HTTPS',
            ),
            ("conf.listeners[1].port", "must be an integer in the range [0, 4294967295]"),
            ("conf.listeners[1].protocol", "invalid value 2. Allowed values: NONE, TCP, TLS, HTTP, HTTPS"),
            (
                "conf.listeners[1].tls.mode",
                "invalid value True. Allowed values: NONE, TERMINATE, PASSTHROUGH",
            ),
        ],
    ),
    "two members of a oneof": (
        {**ROUTE, "conf": {"tcp": {"rules": []}, "http": {"rules": []}}},
        [("conf.http", 'oneof "route" is already set by "tcp"')],
    ),
    "a field under both its names": (
        {
            **ROUTE,
            "conf": {"http": {"rules": [{"matches": [{"queryParameters": [], "query_parameters": []}]}]}},
        },
        [
            (
                "conf.http.rules[0].matches[0].query_parameters",
                'duplicate field: already set as "queryParameters"',
            )
        ],
    ),
    "well-known types": (
        {
            **DATAPLANE,
            "networking": {
                "inbound": [
                    {
                        "port": 80,
                        "serviceProbe": {
                            "interval": "10",
                            "timeout": 5,
                            "healthyThreshold": -1,
                            "unhealthyThreshold": "two",
                        },
                    }
                ],
            },
            "metrics": {"conf": {"port": math.nan, "nested": {1: "a"}, "when": datetime(2024, 1, 1, tzinfo=UTC)}},
        },
        [
            (
                "networking.inbound[0].serviceProbe.interval",
                'must be a duration such as "10s", "1h" or "200ms" (time: missing unit in duration "10")',
            ),
            (
                "networking.inbound[0].serviceProbe.timeout",
                'must be a duration such as "10s", "1h" or "200ms", not number',
            ),
            (
                "networking.inbound[0].serviceProbe.healthyThreshold",
                "must be an integer in the range [0, 4294967295]",
            ),
            (
                "networking.inbound[0].serviceProbe.unhealthyThreshold",
                "must be an integer in the range [0, 4294967295]",
            ),
            ('metrics.conf["port"]', "must be a finite number"),
            ('metrics.conf["nested"]["1"]', "key must be a string, not number"),
            ('metrics.conf["when"]', "must be a JSON value, not datetime"),
        ],
    ),
    "wrappers and bytes": (
        {
            **ROUTE,
            "conf": {
                "http": {"rules": [{"filters": [{"mirror": {"percentage": "ten"}}]}]},
            },
        },
        [("conf.http.rules[0].filters[0].mirror.percentage", "must be a number, not string")],
    ),
    "bytes value": (
        {
            **GATEWAY,
            "conf": {"listeners": [{"tls": {"certificates": [{"inline": "not base64!"}, {"inline": 5}]}}]},
        },
        [
            ("conf.listeners[0].tls.certificates[0].inline", "must be a base64-encoded string"),
            ("conf.listeners[0].tls.certificates[1].inline", "must be a base64-encoded string"),
        ],
    ),
}


@pytest.mark.parametrize(("doc", "expected"), STRUCTURE_ERRORS.values(), ids=STRUCTURE_ERRORS.keys())
def test_structure_errors(doc: Any, expected: list[tuple[str, str]]) -> None:
    assert decode_errors(doc) == expected


def test_expected_kind_must_match_type() -> None:
    assert decode_errors({"type": "Mesh", "name": "default"}, kind="MeshGateway") == [
        ("type", 'must be "MeshGateway"'),
        ("mesh", "cannot be empty"),
    ]
    assert decode_errors({"name": "default"}, kind="Mesh") == [("type", "cannot be empty")]
    with pytest.raises(UnknownKindError):
        codec.decode({"type": "Mesh", "name": "default"}, kind="meshes")


def test_nulls_mean_unset_and_both_field_names_are_read() -> None:
    doc = {
        **ROUTE,
        "labels": None,
        "selectors": [{"match": {"kuma.io/service": "gw"}}],
        "conf": {
            "http": {
                "hostnames": None,
                "rules": [
                    {
                        "matches": [{"query_parameters": [{"name": "a", "value": "b"}]}],
                        "backends": [{"destination": {"kuma.io/service": "x"}}],
                    }
                ],
            }
        },
    }
    resource = codec.load(doc)
    assert resource.meta.labels == {}
    spec: Any = resource.spec
    assert spec.conf.http.rules[0].matches[0].query_parameters[0].name == "a"
    assert codec.encode(resource)["conf"]["http"]["rules"][0]["matches"][0] == {
        "queryParameters": [{"name": "a", "value": "b"}]
    }


def test_load_reports_every_rule_violation() -> None:
    doc = {
        **GATEWAY,
        "name": "Edge",
        "selectors": [{"match": {"version": "v1"}}],
        "tags": {"kuma.io/service": "x"},
        "conf": {
            "listeners": [
                {"port": 0, "protocol": "HTTPS"},
                {"port": 80, "protocol": "HTTP", "hostname": "A.com", "tags": {"kuma.io/zone": "z"}},
                {"port": 80, "protocol": "TCP", "hostname": "a.com"},
            ]
        },
    }
    with pytest.raises(ValidationError) as caught:
        codec.load(doc)
    assert [(v.field, v.message) for v in caught.value.violations] == [
        (
            "name",
            "invalid characters. A lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
        ),
        ("selectors[0].match", 'mandatory tag "kuma.io/service" is missing'),
        ('tags["kuma.io/service"]', 'tag name must not be "kuma.io/service"'),
        ("conf.listeners[0].port", "port must be in the range [1, 65535]"),
        ("conf.listeners[0].tls", "cannot be empty"),
        ("conf.listeners[1].hostname", "invalid hostname"),
        ('conf.listeners[1].tags["kuma.io/zone"]', 'tag name must not be "kuma.io/zone"'),
        ("conf.listeners[1]", "protocol conflicts with other listeners on this port"),
        ("conf.listeners[2]", "protocol conflicts with other listeners on this port"),
    ]
    assert caught.value.title == "Resource is not valid"


def test_validate_rejects_a_spec_of_another_kind() -> None:
    resource = Resource("Mesh", Meta(name="default"), MeshGateway())
    assert codec.validate(resource) == [
        Violation("", "spec must be a kuma.mesh.v1alpha1.Mesh, not kuma.mesh.v1alpha1.MeshGateway")
    ]


ROUND_TRIPS: dict[str, dict[str, Any]] = {
    "gateway with HTTP, HTTPS and TCP listeners": {
        **GATEWAY,
        "labels": {"team": "edge"},
        "selectors": [{"match": {"kuma.io/service": "edge-gateway"}}],
        "tags": {"product": "shop"},
        "conf": {
            "listeners": [
                {"hostname": "*", "port": 8080, "protocol": "HTTP", "tags": {"port": "http-8080"}},
                {
                    "hostname": "shop.example.com",
                    "port": 8443,
                    "protocol": "HTTPS",
                    "tls": {
                        "mode": "TERMINATE",
                        "certificates": [{"secret": "shop-cert"}, {"inline": "TFMwdExTMUNSVWRK"}],
                    },
                    "resources": {"connectionLimit": 1000},
                },
                {"port": 9000, "protocol": "TCP"},
                {"port": 8081, "protocol": "HTTP", "crossMesh": True},
            ]
        },
    },
    "route with matches, filters and weighted backends": {
        **ROUTE,
        "selectors": [{"match": {"kuma.io/service": "edge-gateway", "port": "http-8080"}}],
        "conf": {
            "http": {
                "hostnames": ["shop.example.com"],
                "rules": [
                    {
                        "matches": [
                            {
                                "path": {"match": "PREFIX", "value": "/api"},
                                "method": "GET",
                                "headers": [{"name": "x-env", "value": "prod"}],
                                "queryParameters": [{"match": "REGEX", "name": "v", "value": "[0-9]+"}],
                            }
                        ],
                        "filters": [
                            {"requestHeader": {"set": [{"name": "x-a", "value": "1"}], "remove": ["x-b"]}},
                            {"responseHeader": {"add": [{"name": "x-c", "value": "2"}]}},
                            {"rewrite": {"replacePrefixMatch": "/v2", "hostToBackendHostname": True}},
                            {
                                "mirror": {
                                    "backend": {"destination": {"kuma.io/service": "shadow"}},
                                    "percentage": 5.5,
                                }
                            },
                        ],
                        "backends": [
                            {"weight": 90, "destination": {"kuma.io/service": "api", "version": "v1"}},
                            {"weight": 10, "destination": {"kuma.io/service": "api", "version": "v2"}},
                        ],
                    },
                    {
                        "matches": [{"path": {"value": "/old"}}],
                        "filters": [
                            {
                                "redirect": {
                                    "scheme": "https",
                                    "hostname": "example.com",
                                    "port": 8443,
                                    "statusCode": 301,
                                    "path": {"replaceFull": "/new"},
                                }
                            }
                        ],
                    },
                ],
            }
        },
    },
    "tcp route": {
        **ROUTE,
        "selectors": [{"match": {"kuma.io/service": "edge-gateway"}}],
        "conf": {"tcp": {"rules": [{"backends": [{"weight": 1, "destination": {"kuma.io/service": "db"}}]}]}},
    },
    "ordinary dataplane": {
        **DATAPLANE,
        "networking": {
            "address": "192.168.0.1",
            "inbound": [
                {
                    "port": 8080,
                    "servicePort": 18080,
                    "tags": {"kuma.io/service": "backend", "kuma.io/protocol": "http"},
                    "serviceProbe": {"interval": "10s", "timeout": "0.500s", "healthyThreshold": 2},
                    "state": "NotReady",
                }
            ],
            "outbound": [{"port": 10001, "tags": {"kuma.io/service": "redis"}}],
            "admin": {"port": 9901},
            "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001},
        },
        "probes": {
            "port": 9000,
            "endpoints": [{"inboundPort": 8080, "inboundPath": "/h", "path": "/8080/h"}],
        },
    },
    "builtin gateway dataplane": {
        **DATAPLANE,
        "networking": {
            "address": "10.0.0.1",
            "gateway": {"type": "BUILTIN", "tags": {"kuma.io/service": "edge-gateway"}},
        },
    },
    "delegated gateway dataplane": {
        **DATAPLANE,
        "networking": {
            "address": "10.0.0.2",
            "gateway": {"tags": {"kuma.io/service": "kong"}},
            "outbound": [{"port": 33033, "tags": {"kuma.io/service": "backend"}}],
        },
    },
    "mesh with a builtin mtls backend": {
        "type": "Mesh",
        "name": "default",
        "mtls": {
            "enabledBackend": "ca-1",
            "backends": [
                {
                    "name": "ca-1",
                    "type": "builtin",
                    "dpCert": {"rotation": {"expiration": "1d"}, "requestTimeout": "5s"},
                    "conf": {"caCert": {"RSAbits": 2048, "expiration": "10y"}},
                }
            ],
        },
        "networking": {"outbound": {"passthrough": False}},
        "metrics": {
            "enabledBackend": "prom",
            "backends": [{"name": "prom", "type": "prometheus", "conf": {"port": 5670, "path": "/metrics"}}],
        },
    },
}


@pytest.mark.parametrize("doc", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_round_trip(doc: dict[str, Any]) -> None:
    resource = codec.load(doc)
    assert codec.encode(resource) == doc
    assert codec.spec_bytes(codec.decode(codec.encode(resource))) == codec.spec_bytes(resource)


def test_encode_writes_meta_in_kuma_order_and_format() -> None:
    moment = datetime(2024, 3, 5, 11, 54, 38, 837400, tzinfo=timezone(timedelta(hours=1)))
    resource = codec.decode({**GATEWAY, "labels": {"b": "2", "a": "1"}}).with_meta(
        creation_time=moment, modification_time=moment.replace(microsecond=0)
    )
    doc = codec.encode(resource)
    assert list(doc) == ["type", "mesh", "name", "creationTime", "modificationTime", "labels"]
    assert doc["creationTime"] == "2024-03-05T10:54:38.8374Z"
    assert doc["modificationTime"] == "2024-03-05T10:54:38Z"
    assert list(doc["labels"]) == ["a", "b"]
    assert "mesh" not in codec.encode(codec.decode({"type": "Mesh", "name": "default"}))


def test_times_on_input_are_ignored() -> None:
    resource = codec.decode({**GATEWAY, "creationTime": "yesterday", "modificationTime": 5})
    assert resource.meta.creation_time is None
    assert resource.meta.modification_time is None


def test_spec_fields_never_collide_with_meta_keys() -> None:
    for descriptor in registry.KINDS:
        fields = descriptor.spec_type.DESCRIPTOR.fields
        names = {f.json_name for f in fields} | {f.name for f in fields}
        assert not names & codec.META_KEYS, descriptor.name


def test_spec_bytes_do_not_depend_on_map_insertion_order() -> None:
    first = codec.decode({**GATEWAY, "tags": {"a": "1", "b": "2", "c": "3"}})
    second = codec.decode({**GATEWAY, "tags": {"c": "3", "b": "2", "a": "1"}})
    assert codec.spec_bytes(first) == codec.spec_bytes(second)


class TestLoadDocuments:
    def test_multiple_documents_skipping_empty_ones(self) -> None:
        text = "---\ntype: Mesh\nname: a\n---\n---\n# only a comment\n---\ntype: Mesh\nname: b\n...\n"
        assert codec.load_documents(text) == [{"type": "Mesh", "name": "a"}, {"type": "Mesh", "name": "b"}]

    def test_json(self) -> None:
        assert codec.load_documents('{"type": "Mesh", "name": "a"}') == [{"type": "Mesh", "name": "a"}]

    def test_empty_text(self) -> None:
        assert codec.load_documents("") == []

    def test_unquoted_timestamps_stay_strings(self) -> None:
        (doc,) = codec.load_documents("type: Mesh\nname: a\ncreationTime: 2024-01-02T03:04:05Z\n")
        assert doc["creationTime"] == "2024-01-02T03:04:05Z"

    def test_syntax_error_names_the_place(self) -> None:
        with pytest.raises(ValidationError) as caught:
            codec.load_documents("type: Mesh\nname: [a\n")
        (violation,) = caught.value.violations
        assert violation.message.startswith("invalid YAML at line 3, column 1: ")
        assert caught.value.title == "Could not parse YAML"

    def test_documents_must_be_objects(self) -> None:
        with pytest.raises(ValidationError) as caught:
            codec.load_documents("- a\n---\ntype: Mesh\n---\njust text\n")
        assert [v.message for v in caught.value.violations] == [
            "document 1 must be an object, not array",
            "document 3 must be an object, not string",
        ]


def test_label_rules() -> None:
    long_name = "a" * 100
    resource = codec.decode(
        {
            "type": "Mesh",
            "name": "default",
            "labels": {
                "kuma.io/display-name": long_name,
                "team": long_name,
                "kuma.io/origin": "zone",
                "/x": "ok",
                "env": "-bad",
            },
        }
    )
    message = (
        "label value must be at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with "
        "an alphanumeric character"
    )
    assert [(v.field, v.message) for v in codec.validate(resource)] == [
        (
            'labels["/x"]',
            "label key must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 "
            "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
        ),
        ('labels["env"]', message),
        ('labels["team"]', message),
    ]


@pytest.mark.parametrize(
    ("key", "quoted"),
    [
        ("kuma.io/service", '"kuma.io/service"'),
        ('a"b\\c', '"a\\"b\\\\c"'),
        ("tab\there\x01", '"tab\\there\\x01"'),
        ("\u00a0é\u200b\U0001f600", '"\\u00a0é\\u200b\U0001f600"'),
    ],
)
def test_map_keys_in_paths_are_quoted_as_go_does(key: str, quoted: str) -> None:
    """Kuma writes `tags[%q]`: Go's strconv.Quote, which keeps printable Unicode and escapes the rest."""
    assert go_quote(key) == quoted
    assert str(Path("tags").key(key)) == f"tags[{quoted}]"
