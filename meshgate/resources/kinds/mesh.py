"""Mesh: a global kind (not mesh-scoped) created on the global and sent to every zone before anything in it.

Rules are Kuma 2.7's `mesh_validator.go` (mtls, logging, tracing, metrics, constraints, zoneEgress) and the
parts of its mesh manager that need no store: the 63-character name limit, the CA plugin `type` (builtin or
provided) and each plugin's `ValidateBackend` (builtin: the generated secret name; provided: cert and key data
sources). Every violation names the field Kuma names, even where that is not the field's JSON path:
`mtls.dpcert.rotation.expiration` (no backend index), `config` for a logging or tracing backend's `conf`, and
`mtls.backends[0].conf.mtls.backends.name` for a builtin CA's name.

Added: an mTLS backend needs a name, and the builtin CA's secret name is checked even with `skipValidation`
(meshgate creates that secret); unknown keys in a backend's conf are reported (Kuma drops them).
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from meshgate.api.mesh.v1alpha1.mesh_pb2 import (
    DatadogTracingBackendConfig,
    FileLoggingBackendConfig,
    Mesh,
    TcpLoggingBackendConfig,
    ZipkinTracingBackendConfig,
)
from meshgate.api.system.v1alpha1.datasource_pb2 import DataSource
from meshgate.resources import kinds
from meshgate.resources.descriptor import KindDescriptor, Scope, SyncDirection
from meshgate.resources.errors import Path, Violation, Violations, go_quote
from meshgate.resources.kinds._conf import (
    check_data_source,
    check_prometheus_conf,
    struct_json,
    typed_conf,
    typed_json,
)
from meshgate.resources.kinds._spec import validate_resource
from meshgate.resources.model import Resource
from meshgate.resources.network import check_port, is_dns_name, split_host_port
from meshgate.resources.structure import unknown_field
from meshgate.resources.tags import check_selector

__all__ = ["DESCRIPTOR", "validate"]

# Kuma ships one mTLS backend per mesh; switching CA means replacing it.
_MAX_MTLS_BACKENDS = 1
_CA_TYPES = ("builtin", "provided")
# The builtin CA stores its certificate in a Secret named after the mesh and backend, which must fit DNS.
_MAX_BUILTIN_SECRET_NAME = 255
# Kuma's own duration syntax for certificate lifetimes, e.g. "1d", "720h"; "0" needs no unit.
_KUMA_DURATION = re.compile(r"0|[0-9]+(y|w|d|h|m|s|ms)")
_ZIPKIN_API_VERSIONS = ("httpJsonV1", "httpJson", "httpProto")


def validate(resource: Resource) -> list[Violation]:
    return validate_resource(resource, Mesh, partial(_check_spec, mesh=resource.meta.name), mesh_scoped=False)


def _check_spec(out: Violations, spec: Any, *, mesh: str) -> None:
    # A mesh name becomes part of DNS labels and Kubernetes label values, which stop at 63 characters.
    if len(mesh) > 63:
        out.add(Path("name"), "cannot be longer than 63 characters")
    if spec.HasField("mtls"):
        _check_mtls(out, Path("mtls"), spec.mtls, mesh)
    if spec.HasField("logging"):
        _check_logging(out, Path("logging"), spec.logging)
    if spec.HasField("tracing"):
        _check_tracing(out, Path("tracing"), spec.tracing)
    if spec.HasField("metrics"):
        _check_metrics(out, Path("metrics"), spec.metrics)
    constraints = spec.constraints.dataplaneProxy
    constraints_path = Path("constraints").field("dataplaneProxy")
    for field in ("requirements", "restrictions"):
        for i, rule in enumerate(getattr(constraints, field)):
            check_selector(out, constraints_path.field(field).index(i).field("tags"), rule.tags, require_tag=True)
    # Zone egress carries cross-zone traffic identified by mTLS certificates.
    if spec.routing.zoneEgress and not spec.mtls.enabledBackend:
        out.add(Path("mtls"), "has to be set when zoneEgress enabled")


def _already_used(name: str) -> str:
    return f"{go_quote(name)} name is already used for another backend"


def _check_mtls(out: Violations, path: Path, mtls: Any, mesh: str) -> None:
    backends = path.field("backends")
    if len(mtls.backends) > _MAX_MTLS_BACKENDS:
        out.add(backends, f"cannot have more than {_MAX_MTLS_BACKENDS} backends")
    used: set[str] = set()
    for i, backend in enumerate(mtls.backends):
        if backend.name == "":
            out.add(backends.index(i).field("name"), "cannot be empty")
        elif backend.name in used:
            out.add(backends.index(i).field("name"), _already_used(backend.name))
        used.add(backend.name)
    if mtls.enabledBackend and mtls.enabledBackend not in used:
        out.add(path.field("enabledBackend"), "has to be set to one of the backends in the mesh")
    for backend in mtls.backends:
        if backend.HasField("dpCert") and not _KUMA_DURATION.fullmatch(backend.dpCert.rotation.expiration):
            out.add(path.field("dpcert").field("rotation").field("expiration"), "has to be a valid format")

    # Kuma's mesh manager: each backend's CA plugin, stopping at the first backend that has none.
    for i, backend in enumerate(mtls.backends):
        backend_path = backends.index(i)
        if backend.type not in _CA_TYPES:
            out.add(backend_path.field("type"), "could not find installed plugin for this type")
            break
        if backend.type == "builtin":
            _check_builtin_ca(out, backend_path.field("conf"), backend, mesh)
        elif not mtls.skipValidation:
            _check_provided_ca(out, backend_path.field("conf"), backend.conf)


def _check_builtin_ca(out: Violations, path: Path, backend: Any, mesh: str) -> None:
    """`path` is the backend's `conf`: Kuma's mesh manager roots every violation of a CA plugin there, and the
    builtin plugin names the backend's name `mtls.backends.name` below it."""
    name_path = path.field("mtls").field("backends").field("name")
    secret_name = f"{mesh}.ca-builtin-cert-{backend.name}"
    if len(secret_name) > _MAX_BUILTIN_SECRET_NAME:
        out.add(name_path, f"Backend name is too long. Max length: {_MAX_BUILTIN_SECRET_NAME}")
    if not is_dns_name(secret_name) or secret_name != secret_name.lower():
        out.add(name_path, f"{go_quote(backend.name)} name must be valid dns name")
    # BuiltinCertificateAuthorityConfig{caCert{RSAbits, expiration}}, held in a Struct.
    for key, value in struct_json(backend.conf).items():
        if key != "caCert":
            out.add(path.field(key), unknown_field(key))
        elif not isinstance(value, dict):
            out.add(path.field(key), "must be an object")
        else:
            _check_builtin_ca_cert(out, path.field(key), value)


def _check_builtin_ca_cert(out: Violations, path: Path, ca_cert: dict[str, Any]) -> None:
    for key, value in ca_cert.items():
        if key == "RSAbits":
            is_number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (is_number and float(value).is_integer() and 0 <= value <= 2**32 - 1):
                out.add(path.field(key), "must be an integer in the range [0, 4294967295]")
        elif key == "expiration":
            if not isinstance(value, str) or not _KUMA_DURATION.fullmatch(value):
                out.add(path.field(key), "has to be a valid format")
        else:
            out.add(path.field(key), unknown_field(key))


def _check_provided_ca(out: Violations, path: Path, conf: Any) -> None:
    # ProvidedCertificateAuthorityConfig{cert, key}: two data sources, held in a Struct.
    doc = struct_json(conf)
    for key in doc:
        if key not in ("cert", "key"):
            out.add(path.field(key), unknown_field(key))
    for key in ("cert", "key"):
        if doc.get(key) is None:
            out.add(path.field(key), "has to be defined")
            continue
        source = typed_json(out, path.field(key), doc[key], DataSource)
        if source is not None:
            check_data_source(out, path.field(key), source)


def _check_backend_names(out: Violations, backends_path: Path, backends: Any) -> set[str]:
    used: set[str] = set()
    for i, backend in enumerate(backends):
        if backend.name in used:
            out.add(backends_path.index(i).field("name"), _already_used(backend.name))
        used.add(backend.name)
    return used


def _check_logging(out: Violations, path: Path, logging: Any) -> None:
    backends = path.field("backends")
    for i, backend in enumerate(logging.backends):
        backend_path = backends.index(i)
        if backend.name == "":
            out.add(backend_path.field("name"), "cannot be empty")
        conf_path = backend_path.field("config")  # Kuma's name for `conf` here
        if backend.type == "file":
            file_conf = typed_conf(out, conf_path, backend.conf, FileLoggingBackendConfig)
            if file_conf is not None and file_conf.path == "":
                out.add(conf_path.field("path"), "cannot be empty")
        elif backend.type == "tcp":
            tcp_conf = typed_conf(out, conf_path, backend.conf, TcpLoggingBackendConfig)
            if tcp_conf is None:
                continue
            if tcp_conf.address == "":
                out.add(conf_path.field("address"), "cannot be empty")
                continue
            host_port = split_host_port(tcp_conf.address)
            if host_port is None or "" in host_port:
                out.add(conf_path.field("address"), "has to be in format of HOST:PORT")
        else:
            out.add(backend_path.field("type"), 'unknown backend type. Available backends: "tcp", "file"')
    used = _check_backend_names(out, backends, logging.backends)
    if logging.defaultBackend and logging.defaultBackend not in used:
        out.add(path.field("defaultBackend"), "has to be set to one of the logging backend in mesh")


def _check_tracing(out: Violations, path: Path, tracing: Any) -> None:
    backends = path.field("backends")
    for i, backend in enumerate(tracing.backends):
        backend_path = backends.index(i)
        if backend.name == "":
            out.add(backend_path.field("name"), "cannot be empty")
        if not 0.0 <= backend.sampling.value <= 100.0:
            out.add(backend_path.field("sampling"), "has to be in [0.0 - 100.0] range")
        conf_path = backend_path.field("config")  # Kuma's name for `conf` here
        if backend.type == "zipkin":
            _check_zipkin(out, conf_path, backend.conf)
        elif backend.type == "datadog":
            datadog = typed_conf(out, conf_path, backend.conf, DatadogTracingBackendConfig)
            if datadog is not None:
                if datadog.address == "":
                    out.add(conf_path.field("address"), "cannot be empty")
                check_port(out, conf_path.field("port"), datadog.port)
        else:
            out.add(backend_path.field("type"), 'unknown backend type. Available backends: "zipkin", "datadog"')
    used = _check_backend_names(out, backends, tracing.backends)
    if tracing.defaultBackend and tracing.defaultBackend not in used:
        out.add(path.field("defaultBackend"), "has to be set to one of the tracing backend in mesh")


def _check_zipkin(out: Violations, path: Path, conf: Any) -> None:
    zipkin = typed_conf(out, path, conf, ZipkinTracingBackendConfig)
    if zipkin is None:
        return
    if zipkin.apiVersion and zipkin.apiVersion not in _ZIPKIN_API_VERSIONS:
        out.add(
            path.field("apiVersion"),
            f"has invalid value. Allowed values: {', '.join(_ZIPKIN_API_VERSIONS)}",
        )
    url = path.field("url")
    if zipkin.url == "":
        out.add(url, "cannot be empty")
        return
    parts = urlsplit(zipkin.url)
    try:
        port = parts.port
    except ValueError:
        out.add(url, "invalid URL")
        return
    if not (zipkin.url.startswith("/") or parts.scheme):
        out.add(url, "invalid URL")
    elif port is None:
        out.add(url, "port has to be explicitly specified")


def _check_metrics(out: Violations, path: Path, metrics: Any) -> None:
    backends = path.field("backends")
    used: set[str] = set()
    for i, backend in enumerate(metrics.backends):
        backend_path = backends.index(i)
        if backend.name in used:
            out.add(backend_path.field("name"), _already_used(backend.name))
        used.add(backend.name)
        if backend.type != "prometheus":
            out.add(backend_path.field("type"), 'unknown backend type. Available backends: "prometheus"')
        else:
            check_prometheus_conf(out, backend_path.field("conf"), backend.conf)
    if metrics.enabledBackend and metrics.enabledBackend not in used:
        out.add(path.field("enabledBackend"), "has to be set to one of the backends in the mesh")


DESCRIPTOR = KindDescriptor(
    name=kinds.MESH,
    singular="mesh",
    plural="meshes",
    spec_type=Mesh,
    scope=Scope.GLOBAL,
    sync=SyncDirection.GLOBAL_TO_ZONE,
    validate=validate,
    writable_on_global=True,
    writable_on_zone=False,
)
