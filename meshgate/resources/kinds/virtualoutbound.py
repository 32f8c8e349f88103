"""VirtualOutbound: extra hostnames and ports (Go templates over a proxy's tags) for the services it selects.

Rules are Kuma 2.7's `virtual_outbound_validator.go`: at least one selector with a tag; `conf` has a host and a
port template; parameters name distinct alphanumeric template keys, read valid tag names, and one of them
reads `kuma.io/service`; each template, evaluated with dummy values, gives a DNS name and a port.

Kuma evaluates the templates with Go's text/template. Only the form VirtualOutbounds use is evaluated here,
`{{.key}}` (with optional spaces and `-` trim markers); for anything else in an action the answer follows what
Go's parser says first: `function "x" not defined` for a bare word, `unclosed action` for a missing `}}`.
"""

from __future__ import annotations

import re
from typing import Any

from meshgate.api.mesh.v1alpha1.virtual_outbound_pb2 import VirtualOutbound
from meshgate.resources import kinds
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.kinds._policy import HAS_TO_BE_DEFINED, check_any_selectors, policy_descriptor
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import is_dns_name
from meshgate.resources.tags import TAG_SERVICE

__all__ = ["DESCRIPTOR", "validate"]

_TAG_NAME = re.compile(r"[a-zA-Z0-9.\-_:/]*")
_PARAMETER_NAME = re.compile(r"[a-zA-Z0-9]+")
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _TemplateError(Exception):
    pass


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, VirtualOutbound, _check_spec, mesh_scoped=True)


def _check_spec(out: Violations, spec: Any) -> None:
    check_any_selectors(out, Path("selectors"), spec.selectors)
    root = Path("conf")
    if not spec.HasField("conf"):
        out.add(root, HAS_TO_BE_DEFINED)
        return
    conf = spec.conf
    _check_parameters(out, root.field("parameters"), conf.parameters)
    _check_host(out, root.field("host"), conf)
    _check_port(out, root.field("port"), conf)


def _check_parameters(out: Violations, path: Path, parameters: Any) -> None:
    has_service = False
    names: set[str] = set()
    for i, parameter in enumerate(parameters):
        at = path.index(i)
        if parameter.name in names:
            out.add(at.field("name"), "name is already used")
        names.add(parameter.name)
        if parameter.tag_key:
            has_service = has_service or parameter.tag_key == TAG_SERVICE
            if not _TAG_NAME.fullmatch(parameter.tag_key):
                out.add(at.field("tagKey"), "must be a valid tag name")
        elif not _TAG_NAME.fullmatch(parameter.name):
            out.add(at.field("name"), "must be a valid tag name if you are not setting tagKey")
        if not _PARAMETER_NAME.fullmatch(parameter.name):
            out.add(at.field("name"), "must consist of alphanumeric characters to be used as a gotemplate key")
    if not has_service:
        out.add(path, f"must contain a parameter with {TAG_SERVICE} as a tagKey")


def _evaluate(template: str, values: dict[str, str]) -> str:
    """`template` with each `{{.key}}` replaced; raises _TemplateError with Go's compile error otherwise."""
    result: list[str] = []
    rest = template
    while (start := rest.find("{{")) >= 0:
        text, rest = rest[:start], rest[start + 2 :]
        if rest.startswith("- "):
            text, rest = text.rstrip(), rest[2:]
        result.append(text)
        end = rest.find("}}")
        action = (rest if end < 0 else rest[:end]).strip()
        if action.endswith(" -") and end >= 0:
            action = action[:-2].strip()
        word = _WORD.match(action)
        if word is not None:
            raise _TemplateError(f'template: :1: function "{word.group()}" not defined')
        if end < 0:
            raise _TemplateError("template: :1: unclosed action")
        field = _FIELD.fullmatch(action)
        if field is None:
            raise _TemplateError(f"template: :1: unexpected {go_quote(action)} in command")
        # Go prints a missing map key as "<no value>".
        result.append(values.get(field.group(1), "<no value>"))
        trim_right = rest[:end].rstrip().endswith(" -")
        rest = rest[end + 2 :]
        if trim_right:
            rest = rest.lstrip()
    result.append(rest)
    return "".join(result)


def _eval(conf: Any, template: str, dummy: str) -> str:
    """Kuma's evalTemplate with every parameter's tag set to `dummy`; raises _TemplateError with Kuma's text."""
    values = {parameter.name: dummy for parameter in conf.parameters}
    try:
        return _evaluate(template, values)
    except _TemplateError as err:
        raise _TemplateError(f"failed compiling gotemplate error={go_quote(str(err))}") from None


def _check_host(out: Violations, path: Path, conf: Any) -> None:
    if not conf.host:
        out.add(path, HAS_TO_BE_DEFINED)
        return
    try:
        host = _eval(conf, conf.host, "dummy")
        if not is_dns_name(host):
            raise _TemplateError(
                f"evaluation of template with parameters didn't return a valid dns name result={go_quote(host)}"
            )
    except _TemplateError as err:
        out.add(path, f"template pre evaluation failed with error={go_quote(str(err))}")


def _check_port(out: Violations, path: Path, conf: Any) -> None:
    if not conf.port:
        out.add(path, HAS_TO_BE_DEFINED)
        return
    try:
        text = _eval(conf, conf.port, "1")
        if not re.fullmatch(r"[+-]?[0-9]+", text) or not -(2**63) <= int(text) < 2**63:
            raise _TemplateError(
                f"evaluation of template with parameters didn't evaluate to a parsable number result={go_quote(text)}"
            )
        port = int(text)
        if port <= 0 or port > 65535:
            raise _TemplateError(
                f"evaluation of template returned a port outside of the range [1..65535] result={port}"
            )
    except _TemplateError as err:
        out.add(path, f"template pre evaluation failed with error={go_quote(str(err))}")


DESCRIPTOR = policy_descriptor(
    name=kinds.VIRTUAL_OUTBOUND,
    singular="virtual-outbound",
    plural="virtual-outbounds",
    spec_type=VirtualOutbound,
    validate=validate,
)
