"""The MeshGatewayInstance custom resource (kuma.io/v1alpha1) as a typed value, parsed from its JSON form.

`parse_instance(obj)` never raises on a bad spec: it returns the instance (bad fields replaced by their
defaults, so the reconciler can still name it and write its status) together with every violation found, each
with a field path. Kuma's admission webhook rejects such an instance before its controller sees it; meshgate
has no webhook, so the reconciler reports the violations in the instance's `Ready` condition instead.

What is checked, beyond the CRD schema (which the API server enforces):
- `spec.tags`: Kuma's tag rules (the webhook's `ValidateTags`). Kuma 2.7's webhook also *requires*
  `kuma.io/service`, while its controller defaults it to `<name>_<namespace>_svc` and logs that setting it
  is deprecated; meshgate follows the controller and does not require it.
- `metadata.name`: a DNS-1035 label of at most 63 characters. The Service takes the instance's name and the
  `app` label takes it as its value, so a longer or dotted name would fail at the API server (as it does
  for Kuma); meshgate says so up front.
- Quantities in `spec.resources`, and the annotations Kuma reads into the proxy container
  (`kuma.io/sidecar-proxy-concurrency`, `kuma.io/envoy-admin-port`, `kuma.io/sidecar-drain-time`,
  `kuma.io/wait-for-dataplane-ready`, `kuma.io/sidecar-env-vars`), with Kuma's parsers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from meshgate.k8s.status import Condition, parse_conditions
from meshgate.resources import kinds
from meshgate.resources.duration import DurationError, parse_duration
from meshgate.resources.errors import Path, Violation, Violations
from meshgate.resources.kinds.meshgatewayinstance import ServiceType
from meshgate.resources.quantity import QuantityError, canonical
from meshgate.resources.tags import TAG_SERVICE, check_tags

__all__ = [
    "ANNOTATION_ENVOY_ADMIN_PORT",
    "ANNOTATION_ENVOY_COMPONENT_LOG_LEVEL",
    "ANNOTATION_ENVOY_LOG_LEVEL",
    "ANNOTATION_MESH",
    "ANNOTATION_SIDECAR_CONCURRENCY",
    "ANNOTATION_SIDECAR_DRAIN_TIME",
    "ANNOTATION_SIDECAR_ENV_VARS",
    "ANNOTATION_WAIT_FOR_DATAPLANE_READY",
    "API_VERSION",
    "DEFAULT_MESH",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "MeshGatewayInstance",
    "ObjectMetadata",
    "ParsedInstance",
    "PodTemplate",
    "ServiceTemplate",
    "ServiceType",
    "mesh_of",
    "parse_instance",
    "service_tag",
]

GROUP = "kuma.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = kinds.MESH_GATEWAY_INSTANCE
PLURAL = "meshgatewayinstances"
DEFAULT_MESH = "default"

# Kuma's pkg/plugins/runtime/k8s/metadata: the annotations that shape the proxy container.
ANNOTATION_MESH = "kuma.io/mesh"
ANNOTATION_SIDECAR_CONCURRENCY = "kuma.io/sidecar-proxy-concurrency"
ANNOTATION_ENVOY_ADMIN_PORT = "kuma.io/envoy-admin-port"
ANNOTATION_SIDECAR_DRAIN_TIME = "kuma.io/sidecar-drain-time"
ANNOTATION_WAIT_FOR_DATAPLANE_READY = "kuma.io/wait-for-dataplane-ready"
ANNOTATION_SIDECAR_ENV_VARS = "kuma.io/sidecar-env-vars"
ANNOTATION_ENVOY_LOG_LEVEL = "kuma.io/envoy-log-level"
ANNOTATION_ENVOY_COMPONENT_LOG_LEVEL = "kuma.io/envoy-component-log-level"

_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1
_BOOLEAN_ANNOTATION = {"true": True, "yes": True, "enabled": True, "false": False, "no": False, "disabled": False}


@dataclass(frozen=True, slots=True)
class ObjectMetadata:
    """MeshGatewayObjectMetadata: what the instance adds to the Service's or the Pod's metadata."""

    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceTemplate:
    metadata: ObjectMetadata = field(default_factory=ObjectMetadata)
    load_balancer_ip: str = ""


@dataclass(frozen=True, slots=True)
class PodTemplate:
    metadata: ObjectMetadata = field(default_factory=ObjectMetadata)
    service_account_name: str = ""
    fs_group: int | None = None
    read_only_root_filesystem: bool | None = None


@dataclass(frozen=True, slots=True)
class MeshGatewayInstance:
    name: str
    namespace: str
    uid: str = ""
    generation: int = 0
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    replicas: int = 1
    service_type: ServiceType = ServiceType.LOAD_BALANCER
    # ResourceRequirements as JSON with canonical quantities; None keeps the zone's default. Kuma replaces the
    # default whole when the field is present at all, even as `{}`.
    resources: Mapping[str, Any] | None = None
    service_template: ServiceTemplate = field(default_factory=ServiceTemplate)
    pod_template: PodTemplate = field(default_factory=PodTemplate)
    tags: Mapping[str, str] = field(default_factory=dict)
    conditions: tuple[Condition, ...] = ()
    load_balancer: Mapping[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.name)

    def proxy_tags(self) -> dict[str, str]:
        """The tags the gateway Dataplanes carry: `spec.tags`, with `kuma.io/service` defaulted."""
        tags = dict(self.tags)
        tags.setdefault(TAG_SERVICE, service_tag(self.name, self.namespace))
        return tags


@dataclass(frozen=True, slots=True)
class ParsedInstance:
    instance: MeshGatewayInstance
    violations: tuple[Violation, ...] = ()


def service_tag(name: str, namespace: str) -> str:
    """Kuma's k8s_util.ServiceTag without a port: `<name>_<namespace>_svc`."""
    return f"{name}_{namespace}_svc"


def mesh_of(instance: MeshGatewayInstance, namespace_annotations: Mapping[str, str]) -> str:
    """Kuma's `MeshOfByLabelOrAnnotation`: the instance's `kuma.io/mesh` label, then its (deprecated)
    `kuma.io/mesh` annotation, then its Namespace's `kuma.io/mesh` annotation, then `default`."""
    for source in (instance.labels, instance.annotations, namespace_annotations):
        mesh = source.get(ANNOTATION_MESH, "")
        if mesh:
            return mesh
    return DEFAULT_MESH


def parse_instance(obj: Mapping[str, Any]) -> ParsedInstance:
    out = Violations()
    meta = _mapping(out, Path("metadata"), obj.get("metadata"))
    spec = _mapping(out, Path("spec"), obj.get("spec"))
    status = obj.get("status") if isinstance(obj.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)

    name = _string(out, Path("metadata").field("name"), meta.get("name"))
    if not name:
        out.add(Path("metadata").field("name"), "cannot be empty")
    elif len(name) > 63 or not _DNS1035_LABEL.fullmatch(name):
        out.add(
            Path("metadata").field("name"),
            "must be a DNS-1035 label of at most 63 characters (the Service and the app label take it as is)",
        )
    namespace = _string(out, Path("metadata").field("namespace"), meta.get("namespace"))
    if not namespace:
        out.add(Path("metadata").field("namespace"), "cannot be empty")
    annotations = _string_map(out, Path("metadata").field("annotations"), meta.get("annotations"))
    _check_annotations(out, annotations)

    tags = _string_map(out, Path("spec").field("tags"), spec.get("tags"))
    check_tags(out, Path("spec").field("tags"), tags)

    instance = MeshGatewayInstance(
        name=name,
        namespace=namespace,
        uid=_string(out, Path("metadata").field("uid"), meta.get("uid")),
        generation=_integer(out, Path("metadata").field("generation"), meta.get("generation"), 0, minimum=0),
        labels=_string_map(out, Path("metadata").field("labels"), meta.get("labels")),
        annotations=annotations,
        replicas=_integer(out, Path("spec").field("replicas"), spec.get("replicas"), 1, minimum=1, maximum=_INT32_MAX),
        service_type=_service_type(out, spec.get("serviceType")),
        resources=_resources(out, Path("spec").field("resources"), spec.get("resources")),
        service_template=_service_template(out, Path("spec").field("serviceTemplate"), spec.get("serviceTemplate")),
        pod_template=_pod_template(out, Path("spec").field("podTemplate"), spec.get("podTemplate")),
        tags=tags,
        conditions=parse_conditions(status.get("conditions")),
        load_balancer=status.get("loadBalancer") if isinstance(status.get("loadBalancer"), Mapping) else None,
    )
    return ParsedInstance(instance, tuple(out))


def _mapping(out: Violations, path: Path, value: object) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        out.add(path, "must be an object")
        return {}
    return value


def _string(out: Violations, path: Path, value: object, default: str = "") -> str:
    if value is None:
        return default
    if not isinstance(value, str):
        out.add(path, "must be a string")
        return default
    return value


def _string_map(out: Violations, path: Path, value: object) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, item in _mapping(out, path, value).items():
        if isinstance(key, str) and isinstance(item, str):
            result[key] = item
        else:
            out.add(path.key(str(key)), "must be a string")
    return result


def _integer(
    out: Violations, path: Path, value: object, default: int, *, minimum: int, maximum: int = 2**63 - 1
) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        out.add(path, "must be an integer")
        return default
    if not minimum <= value <= maximum:
        out.add(path, f"must be between {minimum} and {maximum}")
        return default
    return value


def _boolean(out: Violations, path: Path, value: object) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    out.add(path, "must be a boolean")
    return None


def _service_type(out: Violations, value: object) -> ServiceType:
    if value is None:
        return ServiceType.LOAD_BALANCER
    try:
        return ServiceType(str(value))
    except ValueError:
        allowed = ", ".join(t.value for t in ServiceType)
        out.add(Path("spec").field("serviceType"), f"must be one of {allowed}")
        return ServiceType.LOAD_BALANCER


def _resources(out: Violations, path: Path, value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    raw = _mapping(out, path, value)
    result: dict[str, Any] = {}
    # Go's struct field order for ResourceRequirements: limits, requests, claims.
    for key in ("limits", "requests"):
        if key not in raw:
            continue
        quantities: dict[str, str] = {}
        for resource, quantity in sorted(_mapping(out, path.field(key), raw[key]).items()):
            try:
                if isinstance(quantity, bool) or not isinstance(quantity, str | int | float):
                    raise QuantityError("must be a quantity")
                quantities[resource] = canonical(quantity)
            except QuantityError as exc:
                out.add(path.field(key).key(resource), str(exc))
        if quantities:
            result[key] = quantities
    claims = raw.get("claims")
    if claims:
        if isinstance(claims, list) and all(isinstance(c, Mapping) and isinstance(c.get("name"), str) for c in claims):
            result["claims"] = [dict(c) for c in claims]
        else:
            out.add(path.field("claims"), "must be a list of objects with a name")
    return result


def _metadata(out: Violations, path: Path, value: object) -> ObjectMetadata:
    raw = _mapping(out, path, value)
    return ObjectMetadata(
        annotations=_string_map(out, path.field("annotations"), raw.get("annotations")),
        labels=_string_map(out, path.field("labels"), raw.get("labels")),
    )


def _service_template(out: Violations, path: Path, value: object) -> ServiceTemplate:
    raw = _mapping(out, path, value)
    spec = _mapping(out, path.field("spec"), raw.get("spec"))
    return ServiceTemplate(
        metadata=_metadata(out, path.field("metadata"), raw.get("metadata")),
        load_balancer_ip=_string(out, path.field("spec").field("loadBalancerIP"), spec.get("loadBalancerIP")),
    )


def _pod_template(out: Violations, path: Path, value: object) -> PodTemplate:
    raw = _mapping(out, path, value)
    spec_path = path.field("spec")
    spec = _mapping(out, spec_path, raw.get("spec"))
    security = _mapping(out, spec_path.field("securityContext"), spec.get("securityContext"))
    container = _mapping(out, spec_path.field("container"), spec.get("container"))
    container_security_path = spec_path.field("container").field("securityContext")
    container_security = _mapping(out, container_security_path, container.get("securityContext"))
    fs_group = security.get("fsGroup")
    if fs_group is not None:
        fs_group = _integer(out, spec_path.field("securityContext").field("fsGroup"), fs_group, 0, minimum=-(2**63))
    return PodTemplate(
        metadata=_metadata(out, path.field("metadata"), raw.get("metadata")),
        service_account_name=_string(out, spec_path.field("serviceAccountName"), spec.get("serviceAccountName")),
        fs_group=fs_group,
        read_only_root_filesystem=_boolean(
            out,
            container_security_path.field("readOnlyRootFilesystem"),
            container_security.get("readOnlyRootFilesystem"),
        ),
    )


def _check_annotations(out: Violations, annotations: Mapping[str, str]) -> None:
    """Kuma's annotation parsers fail the whole reconcile on a bad value; meshgate reports which one."""
    path = Path("metadata").field("annotations")
    for key in (ANNOTATION_SIDECAR_CONCURRENCY, ANNOTATION_ENVOY_ADMIN_PORT):
        if key in annotations and not _is_uint32(annotations[key]):
            out.add(path.key(key), f"failed to parse annotation {key!r}: must be an unsigned 32-bit integer")
    if ANNOTATION_SIDECAR_DRAIN_TIME in annotations:
        try:
            parse_duration(annotations[ANNOTATION_SIDECAR_DRAIN_TIME])
        except DurationError as exc:
            out.add(path.key(ANNOTATION_SIDECAR_DRAIN_TIME), str(exc))
    value = annotations.get(ANNOTATION_WAIT_FOR_DATAPLANE_READY)
    if value is not None and value not in _BOOLEAN_ANNOTATION:
        out.add(
            path.key(ANNOTATION_WAIT_FOR_DATAPLANE_READY),
            f'annotation "{ANNOTATION_WAIT_FOR_DATAPLANE_READY}" has wrong value "{value}"',
        )
    env_vars = annotations.get(ANNOTATION_SIDECAR_ENV_VARS)
    if env_vars is not None and parse_env_vars(env_vars) is None:
        out.add(
            path.key(ANNOTATION_SIDECAR_ENV_VARS),
            f"invalid format. Map in {ANNOTATION_SIDECAR_ENV_VARS!r} has to be provided in the following format: "
            "key1=value1;key2=value2",
        )


def _is_uint32(text: str) -> bool:
    # Go's strconv.ParseUint(text, 10, 32): ASCII digits only, no sign, no spaces.
    return text.isascii() and text.isdigit() and int(text) <= _UINT32_MAX


def annotation_uint32(annotations: Mapping[str, str], key: str) -> int | None:
    """A validated unsigned annotation, or None when absent."""
    value = annotations.get(key)
    return int(value) if value is not None and _is_uint32(value) else None


def annotation_enabled(annotations: Mapping[str, str], key: str, default: bool) -> bool:
    return _BOOLEAN_ANNOTATION.get(annotations.get(key, ""), default)


def parse_env_vars(text: str) -> dict[str, str] | None:
    """Kuma's `GetMap`: `K1=v1;K2=v2`, each pair exactly one `=`; None when malformed."""
    result: dict[str, str] = {}
    for pair in text.split(";"):
        parts = pair.split("=")
        if len(parts) != 2:
            return None
        result[parts[0]] = parts[1]
    return result
