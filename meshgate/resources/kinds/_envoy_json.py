"""Envoy resources written as YAML inside a ProxyTemplate (`value`, `resource`), read as Kuma reads them.

Kuma converts the YAML to JSON and reads it with golang/protobuf's jsonpb (`util_proto.FromYAML`; durations in
Go's form too, `proto_json.py`) into the Envoy message the modification names (a Cluster, a Listener, a network
Filter, an HttpFilter, a VirtualHost), or, for a raw resource, into an `Any` whose `@type` names it. An `Any`
inside (a filter's `typed_config`) needs its message type known: the module of the type's proto package is
imported on demand, so nothing is loaded until a ProxyTemplate names it.

Kuma also applies Envoy's protoc-gen-validate rules to an added resource; meshgate has no such rules, so an
added resource is only checked to be well formed. The error text is Python protobuf's, not Go's.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from typing import Any, TypeVar

import yaml
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from meshgate.resources.proto_json import parse_dict

__all__ = ["envoy_any", "envoy_message", "parse_envoy", "parse_envoy_any"]

_M = TypeVar("_M", bound=Message)

_UNKNOWN_TYPE = re.compile(r"Can not find message descriptor by type_url: type\.googleapis\.com/([\w.]+)")
# A resource's Anys nest (a listener's filter's typed_config's …): at most this many packages are loaded.
_MAX_IMPORTS = 8
# The packages Envoy's API types live in (xds-protos): the only ones a type URL may cause to be imported.
_ENVOY_PACKAGES = ("envoy.", "xds.", "udpa.")


def _json(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text  # Kuma hands the text to its JSON reader as it is, which then says what is wrong


def _import_package_of(full_name: str) -> bool:
    """Import every module of the proto package that defines `full_name`; False when there is none.

    Only the Envoy API's packages: a type URL is user input, and importing a module runs its code."""
    package = full_name.rpartition(".")[0]
    if not package.startswith(_ENVOY_PACKAGES):
        return False
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
    return True


def _parse(doc: Any, message: Message) -> None:
    for _ in range(_MAX_IMPORTS):
        try:
            # Durations are rewritten on every attempt: an Any's type is only known once its package is loaded.
            parse_dict(doc, message)
            return
        except json_format.ParseError as err:
            unknown = _UNKNOWN_TYPE.search(str(err))
            if unknown is None or not _import_package_of(unknown.group(1)):
                raise
            message.Clear()
    parse_dict(doc, message)


def envoy_message(text: str, message_type: type[_M]) -> _M:
    """`text` (YAML or JSON) as a `message_type`; raises ValueError (a ParseError is one) when it is not."""
    doc = _json(text)
    if not isinstance(doc, dict):
        raise ValueError(f"expected an object, got {type(doc).__name__}")
    out = message_type()
    _parse(doc, out)
    return out


def parse_envoy(text: str, message_type: type[Message]) -> str | None:
    """None when `text` is a `message_type` in YAML or JSON; else why not."""
    doc = _json(text)
    if not isinstance(doc, dict):
        return f"expected an object, got {type(doc).__name__}"
    try:
        _parse(doc, message_type())
    except (json_format.ParseError, TypeError, ValueError) as err:
        return str(err)
    return None


def envoy_any(text: str) -> any_pb2.Any:
    """`text` (YAML or JSON), an Envoy resource with its `@type`, as an `Any`; raises ValueError when it is not."""
    doc = _json(text)
    if not isinstance(doc, dict):
        raise ValueError(f"expected an object, got {type(doc).__name__}")
    out = any_pb2.Any()
    _parse(doc, out)
    return out


def parse_envoy_any(text: str) -> str | None:
    """None when `text` is an Envoy resource with its `@type`; else why not (Kuma's `ResourceFromYaml`)."""
    doc = _json(text)
    if not isinstance(doc, dict):
        return f"expected an object, got {type(doc).__name__}"
    try:
        _parse(doc, any_pb2.Any())
    except (json_format.ParseError, TypeError, ValueError) as err:
        return str(err)
    return None
