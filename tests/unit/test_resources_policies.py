"""What the policy kinds do beyond Kuma's own test cases (those are in the validation corpus)."""

from __future__ import annotations

import sys
from typing import Any

from meshgate.resources import codec
from meshgate.testing import factory


def violations(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(v.field, v.message) for v in codec.validate(codec.decode(doc))]


def test_a_proxy_template_http_filter_with_a_typed_config_reads_as_envoy_reads_it() -> None:
    router = (
        "name: envoy.filters.http.router\n"
        "typed_config:\n"
        "  '@type': type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n"
    )
    modification = {"httpFilter": {"operation": "addLast", "value": router}}
    assert violations(factory.proxy_template(conf={"modifications": [modification]})) == []


def test_a_type_url_outside_envoys_api_is_refused_without_importing_its_module() -> None:
    assert "this" not in sys.modules  # importing it prints; nothing here may import it
    value = "name: x\ntyped_config:\n  '@type': type.googleapis.com/this.Zen\n"
    modification = {"httpFilter": {"operation": "addFirst", "value": value}}
    ((field, message),) = violations(factory.proxy_template(conf={"modifications": [modification]}))
    assert field == "conf.modifications[0].httpFilter.value"
    assert message.startswith("native Envoy resource is not valid: ")
    assert "this" not in sys.modules


def test_a_virtual_outbound_template_is_evaluated_with_dummy_values() -> None:
    ok = factory.virtual_outbound(
        conf={
            "host": "{{ .service }}.{{.version}}.mesh",
            "port": "{{.port}}",
            "parameters": [
                {"name": "service", "tagKey": "kuma.io/service"},
                {"name": "version"},
                {"name": "port", "tagKey": "port"},
            ],
        }
    )
    assert violations(ok) == []
    missing = factory.virtual_outbound(
        conf={"host": "{{.other}}.mesh", "port": "80", "parameters": [{"name": "service", "tagKey": "kuma.io/service"}]}
    )
    # Go prints a missing key as "<no value>", which is no DNS name.
    assert violations(missing) == [
        (
            "conf.host",
            "template pre evaluation failed with error=\"evaluation of template with parameters didn't return"
            ' a valid dns name result=\\"<no value>.mesh\\""',
        )
    ]


def test_external_service_address_and_tls_rules() -> None:
    doc = factory.external_service(
        "es", address="es:70000", tls={"serverName": "", "caCert": {}}, tags={"kuma.io/protocol": "udp"}
    )
    assert sorted(violations(doc)) == [
        ("networking.address", "port must be in the range [1, 65535]"),
        ("networking.tls.caCert", "data source cannot be empty"),
        ("networking.tls.serverName", "cannot be empty"),
        (
            'tags["kuma.io/protocol"]',
            'tag "kuma.io/protocol" has an invalid value "udp". Allowed values: grpc, http, http2, kafka, tcp',
        ),
        ('tags["kuma.io/service"]', "cannot be the same as networking.address"),
    ]
