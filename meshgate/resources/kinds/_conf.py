"""Backend configurations that Kuma keeps in a `google.protobuf.Struct` (typed by the backend's `type`), and
data sources.

Kuma converts such a Struct to its typed message with jsonpb (`ToTyped`: durations in Go's form too), ignoring
unknown keys, and reports "could not parse config" on the first other problem; here the structure walker reports
every problem, with a path into the conf. An unknown key is reported too (a misspelt option would otherwise
vanish), but, as in Kuma, the rest is still checked.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from google.protobuf.descriptor import Descriptor
from google.protobuf.message import Message

from meshgate.api.mesh.v1alpha1.metrics_pb2 import PrometheusMetricsBackendConfig, PrometheusTlsConfig
from meshgate.resources.errors import Path, Violations
from meshgate.resources.proto_json import parse_dict
from meshgate.resources.structure import check_message, is_unknown_field

__all__ = ["check_data_source", "check_prometheus_conf", "struct_json", "typed_conf", "typed_json"]

M = TypeVar("M", bound=Message)


def _value_json(value: Any) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return struct_json(value.struct_value)
    if kind == "list_value":
        return [_value_json(item) for item in value.list_value.values]
    if kind is None or kind == "null_value":
        return None
    return getattr(value, kind)


def struct_json(conf: Any) -> dict[str, Any]:
    """A google.protobuf.Struct as JSON, keys sorted: a Struct is a map, and its iteration order is arbitrary,
    while violations must come out in a stable order. Unlike MessageToDict, it never raises: an infinite
    number (which only a binary peer can send) stays a float, for the typed checks to reject."""
    return {key: _value_json(conf.fields[key]) for key in sorted(conf.fields)}


def typed_conf(out: Violations, path: Path, conf: Any, message_type: type[M]) -> M | None:
    """Read a Struct as `message_type`; None (with violations added) when it does not fit."""
    return typed_json(out, path, struct_json(conf), message_type)


def typed_json(out: Violations, path: Path, doc: object, message_type: type[M]) -> M | None:
    """Read the JSON form of `message_type`, without its unknown keys; None (with violations added) when it
    does not fit otherwise."""
    problems = Violations()
    check_message(doc, cast(Descriptor, message_type.DESCRIPTOR), path, problems)
    out.extend(problems)
    if any(not is_unknown_field(problem.message) for problem in problems):
        return None
    assert isinstance(doc, Mapping)  # check_message reports anything else for a (non-special) message type
    return parse_dict(dict(doc), message_type(), ignore_unknown_fields=True)


def check_data_source(out: Violations, path: Path, source: Any) -> None:
    """A kuma.system.v1alpha1.DataSource (Kuma's `datasource.Validate`)."""
    which = source.WhichOneof("type")
    if which is None:
        out.add(path, "data source has to be chosen. Available sources: secret, file, inline")
    elif which == "secret" and not source.secret:
        out.add(path.field("secret"), "cannot be empty")
    elif which == "inline" and not source.inline.value:
        out.add(path.field("inline"), "cannot be empty")
    elif which == "file" and not source.file:
        out.add(path.field("file"), "cannot be empty")


def _tls_agrees_with_skip_mtls(config: Any) -> bool:
    skip = bool(config.skipMTLS.value)
    mode = config.tls.mode
    return (not skip and mode == PrometheusTlsConfig.activeMTLSBackend) or (
        skip and mode == PrometheusTlsConfig.disabled
    )


def check_prometheus_conf(out: Violations, path: Path, conf: Any) -> None:
    """The `conf` of a "prometheus" metrics backend, on a Mesh or a Dataplane."""
    config = typed_conf(out, path, conf, PrometheusMetricsBackendConfig)
    if config is None:
        return
    # As Kuma: a conflicting TLS setting or a broken regex is the only thing said about the conf.
    if config.HasField("skipMTLS") and config.HasField("tls") and not _tls_agrees_with_skip_mtls(config):
        out.add(path, "skipMTLS and tls configuration cannot be defined together")
        return
    try:
        re.compile(config.envoy.filterRegex)
    except re.error as err:
        out.add(path.field("envoy").field("filterRegex"), f"provided regexp isn't correct: {err}")
        return
    seen: set[str] = set()
    for i, aggregate in enumerate(config.aggregate):
        if aggregate.name in seen:
            out.add(
                path.field("aggregate").index(i).field("name"),
                f"duplicate entry: {aggregate.name}, values have to be unique",
            )
        seen.add(aggregate.name)
