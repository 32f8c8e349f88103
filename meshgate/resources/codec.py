"""The Universal form of a resource, as `kumactl apply` reads it and Kuma's REST API writes it:

    type: MeshGateway            the kind name
    mesh: default                mesh-scoped kinds only
    name: edge
    creationTime: ...            RFC 3339, written on output, ignored on input
    modificationTime: ...
    labels: {k: v}               optional
    selectors: [...]             the spec's fields, inline, by their JSON (lowerCamelCase) names
    conf: {...}

`decode` checks structure (every problem at once, with paths) and builds a `Resource`; `validate` applies the
kind's rules; `load` does both. Durations are read as Kuma reads them, in Go's form (`1h`, `200ms`) or
protobuf's (`3600s`), and written in protobuf's (`proto_json.py`). Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import yaml
from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor

from meshgate.resources import registry
from meshgate.resources.descriptor import KindDescriptor
from meshgate.resources.errors import Path, UnknownKindError, ValidationError, Violation, Violations
from meshgate.resources.model import Meta, Resource
from meshgate.resources.proto_json import parse_dict
from meshgate.resources.structure import check_fields, json_kind

__all__ = ["META_KEYS", "decode", "encode", "load", "load_documents", "rfc3339", "spec_bytes", "validate"]

# Top-level keys that are metadata, not spec fields. No spec message has a field with one of these names.
META_KEYS = frozenset({"type", "mesh", "name", "labels", "creationTime", "modificationTime"})


def _resolve(doc: Mapping[Any, Any], kind: str | None, out: Violations) -> KindDescriptor | None:
    expected = registry.get(kind) if kind is not None else None
    written = doc.get("type")
    if written is None or written == "":
        out.add(Path("type"), "cannot be empty")
        return expected
    if not isinstance(written, str):
        out.add(Path("type"), f"must be a string, not {json_kind(written)}")
        return expected
    if expected is not None:
        if written != expected.name:
            out.add(Path("type"), f'must be "{expected.name}"')
        return expected
    try:
        return registry.get(written)
    except UnknownKindError:
        allowed = ", ".join(d.name for d in registry.KINDS)
        out.add(Path("type"), f'unknown type "{written}". Allowed values: {allowed}')
        return None


def _string(doc: Mapping[Any, Any], key: str, out: Violations) -> str:
    value = doc.get(key)
    if value is None or value == "":
        out.add(Path(key), "cannot be empty")
        return ""
    if not isinstance(value, str):
        out.add(Path(key), f"must be a string, not {json_kind(value)}")
        return ""
    return value


def _labels(doc: Mapping[Any, Any], out: Violations) -> dict[str, str]:
    value = doc.get("labels")
    path = Path("labels")
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        out.add(path, f"must be an object, not {json_kind(value)}")
        return {}
    labels: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            out.add(path.key(str(key)), f"key must be a string, not {json_kind(key)}")
        elif not isinstance(item, str):
            out.add(path.key(key), f"must be a string, not {json_kind(item)}")
        else:
            labels[key] = item
    return labels


def decode(doc: Mapping[str, Any], *, kind: str | None = None) -> Resource:
    """Build a Resource from its Universal form, or raise ValidationError listing every structural problem.

    `kind` (an exact kind name) is what the caller expects, e.g. from a REST path; `type` must then agree.
    The kind's own rules are not applied here: see `validate` and `load`.
    """
    if not isinstance(doc, Mapping):
        raise ValidationError([Violation("", f"must be an object, not {json_kind(doc)}")])
    out = Violations()
    descriptor = _resolve(doc, kind, out)
    name = _string(doc, "name", out)
    labels = _labels(doc, out)
    if descriptor is None:  # `type` is missing or unknown, and `out` says so: the spec cannot be read
        raise ValidationError(out)
    mesh = ""
    if descriptor.mesh_scoped:
        mesh = _string(doc, "mesh", out)
    elif doc.get("mesh") not in (None, ""):
        out.add(Path("mesh"), f"must not be set: {descriptor.name} is not mesh-scoped")
    spec_doc = {key: value for key, value in doc.items() if key not in META_KEYS}
    check_fields(spec_doc, cast(Descriptor, descriptor.spec_type.DESCRIPTOR), Path(), out)
    out.raise_if_any()
    spec = descriptor.spec_type()
    try:
        parse_dict(spec_doc, spec)  # durations in Go's form too, as Kuma's jsonpb reads them
    except json_format.ParseError as err:  # the structure walker should have caught it first
        raise ValidationError([Violation("", str(err))]) from err
    return Resource(kind=descriptor.name, meta=Meta(name=name, mesh=mesh, labels=labels), spec=spec)


def validate(resource: Resource) -> list[Violation]:
    """Every violation of the name rules and the kind's rules; empty when the resource is valid."""
    return registry.get(resource.kind).validate(resource)


def load(doc: Mapping[str, Any], *, kind: str | None = None) -> Resource:
    """`decode`, then `validate`; raises ValidationError with all violations of whichever step failed."""
    resource = decode(doc, kind=kind)
    violations = validate(resource)
    if violations:
        raise ValidationError(violations)
    return resource


def rfc3339(moment: datetime) -> str:
    """Go's RFC3339Nano in UTC, as Kuma writes times: no trailing zeros in the fraction, and a 'Z'."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def encode(resource: Resource) -> dict[str, Any]:
    """The Universal form: metadata, then the spec inline without fields at their defaults (as Kuma)."""
    descriptor = registry.get(resource.kind)
    meta = resource.meta
    doc: dict[str, Any] = {"type": resource.kind}
    if descriptor.mesh_scoped:
        doc["mesh"] = meta.mesh
    doc["name"] = meta.name
    if meta.creation_time is not None:
        doc["creationTime"] = rfc3339(meta.creation_time)
    if meta.modification_time is not None:
        doc["modificationTime"] = rfc3339(meta.modification_time)
    if meta.labels:
        doc["labels"] = dict(sorted(meta.labels.items()))
    doc.update(json_format.MessageToDict(resource.spec, preserving_proto_field_name=False))
    return doc


def spec_bytes(resource: Resource) -> bytes:
    """The spec's canonical bytes: deterministic, so equal specs give equal bytes and equal version hashes."""
    return resource.spec.SerializeToString(deterministic=True)


class _Loader(yaml.SafeLoader):
    """YAML 1.1 as Kuma reads it, except that unquoted timestamps stay strings, as in Kuma."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_documents(text: str) -> list[dict[str, Any]]:
    """The documents of a multi-document YAML (or JSON) text, skipping empty ones."""
    try:
        documents = list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ValidationError([Violation("", f"invalid YAML{where}: {problem}")], "Could not parse YAML") from err
    out = Violations()
    result: list[dict[str, Any]] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        if isinstance(document, dict):
            result.append(document)
        else:
            out.add(Path(), f"document {number} must be an object, not {json_kind(document)}")
    out.raise_if_any("Could not parse YAML")
    return result
