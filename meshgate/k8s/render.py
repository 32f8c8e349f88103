"""MeshGatewayInstance -> the Service and Deployment Kuma 2.7 would create for it. Pure functions, no I/O.

`render(instance, gateways, settings, namespace_annotations)` resolves the instance's mesh, selects its
MeshGateway among `gateways` (the zone store's MeshGateways; `meshgate.resources.selectors`) and returns a
`Rendering`: the objects to server-side apply, in Go's field order so that they read like Kuma's.

What Kuma's `GatewayInstanceReconciler` does, and so what this module does:
- **Service** `<instance name>` in the instance's namespace: annotations `kuma.io/gateway: builtin` plus
  `serviceTemplate.metadata.annotations`, labels from `serviceTemplate.metadata.labels` (none of its own),
  selector `app: <name>`, `type: <serviceType>`, `loadBalancerIP` from the template when set, and one TCP port
  per distinct listener port of the MeshGateway in listener order, named after the port, with
  `targetPort` = `port`, and `nodePort` = `port` too when the type is NodePort (Kuma's choice: a listener port
  outside the cluster's node-port range is refused by the API server, for Kuma as for meshgate).
- **Deployment** `<instance name>`: `replicas`, selector `app: <name>`, Pods labelled `app: <name>` and
  `kuma.io/sidecar-injection: disabled` (then `podTemplate.metadata.labels`), annotated `kuma.io/gateway:
  builtin`, `kuma.io/tags: <tags as compact JSON>` (where the default service tag `<name>_<namespace>_svc`
  lives), `kuma.io/mesh: <mesh>` (then `podTemplate.metadata.annotations`); a pod security context that lets
  the proxy bind ports below 1024 (`net.ipv4.ip_unprivileged_port_start=0`) with the template's `fsGroup`, the
  template's service account, an emptyDir `/tmp`, and the `kuma-gateway` container (`meshgate.k8s.container`).
- meshgate's own additions to the Pod: the projected service account token the proxy authenticates with and
  the zone's xDS CA (annotation `meshgate.io/xds-ca`, mounted through the downward API; it wins over a template
  annotation of that name), and `automountServiceAccountToken: false`: the proxy never calls the API server, so
  it gets no token the API server would accept.
- Both carry a controller owner reference to the instance (`controller: true, blockOwnerDeletion: true`), so
  Kubernetes' garbage collector removes them with it.
- **No MeshGateway matched**: Kuma creates no Service, leaves an existing one untouched (a gateway renamed for a
  moment must not drop traffic), and only reconciles the Deployment when that Service exists.
  `Rendering.service` is then None; the reconciler applies the Deployment only if the Service is there.

Where meshgate differs, and why:
- Kuma computes labels and annotations by merging into the live object's; meshgate server-side applies with
  its own field manager, so fields that other managers set survive by the API's rules instead, and a label
  removed from `serviceTemplate` is removed from the Service (Kuma would keep it).
- The proxy container is Kuma's sidecar-injector container; its configuration (image, probes, default
  resources, DNS) comes from `ZoneSettings`, not from an injector config file.
- Zero values that Go's encoder writes but that carry no setting (`creationTimestamp: null`, `status: {}`,
  `divisor: "0"`) are left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from meshgate.k8s.container import ANNOTATION_XDS_CA, gateway_container, gateway_volumes
from meshgate.k8s.instance import ANNOTATION_MESH, API_VERSION, KIND, MeshGatewayInstance, ServiceType, mesh_of
from meshgate.k8s.settings import ZoneSettings
from meshgate.resources import kinds
from meshgate.resources.model import Resource
from meshgate.resources.selectors import select_gateway

__all__ = [
    "ANNOTATION_GATEWAY",
    "ANNOTATION_TAGS",
    "LABEL_SIDECAR_INJECTION",
    "Rendering",
    "owner_reference",
    "render",
    "render_deployment",
    "render_service",
    "service_ports",
    "tags_annotation",
]

ANNOTATION_GATEWAY = "kuma.io/gateway"
ANNOTATION_TAGS = "kuma.io/tags"
LABEL_SIDECAR_INJECTION = "kuma.io/sidecar-injection"
GATEWAY_BUILTIN = "builtin"
SELECTOR_LABEL = "app"


@dataclass(frozen=True, slots=True)
class Rendering:
    mesh: str
    gateway: Resource | None
    # None when no MeshGateway matched: Kuma creates no Service then, and keeps an existing one as it is.
    service: dict[str, Any] | None
    # Applied only when the Service exists (Kuma reconciles the Deployment only then).
    deployment: dict[str, Any]


def render(
    instance: MeshGatewayInstance,
    gateways: Sequence[Resource],
    settings: ZoneSettings,
    namespace_annotations: Mapping[str, str] | None = None,
) -> Rendering:
    """`gateways` may span meshes; only those in the instance's mesh are candidates."""
    mesh = mesh_of(instance, namespace_annotations or {})
    candidates = [g for g in gateways if g.kind == kinds.MESH_GATEWAY and g.meta.mesh == mesh]
    gateway = select_gateway(candidates, instance.proxy_tags())
    return Rendering(
        mesh=mesh,
        gateway=gateway,
        service=render_service(instance, gateway) if gateway is not None else None,
        deployment=render_deployment(instance, mesh, settings),
    )


def owner_reference(instance: MeshGatewayInstance) -> dict[str, Any]:
    """controllerutil.SetControllerReference's entry."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": instance.name,
        "uid": instance.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(
    instance: MeshGatewayInstance, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": instance.name, "namespace": instance.namespace}
    if labels:
        meta["labels"] = _sorted(labels)
    if annotations:
        meta["annotations"] = _sorted(annotations)
    meta["ownerReferences"] = [owner_reference(instance)]
    return meta


def service_ports(gateway: Resource, service_type: ServiceType) -> list[dict[str, Any]]:
    """One port per distinct listener port, in listener order: listeners sharing a port differ by hostname."""
    ports: list[dict[str, Any]] = []
    seen: set[int] = set()
    spec: Any = gateway.spec
    for listener in spec.conf.listeners:
        port = int(listener.port)
        if port in seen:
            continue
        seen.add(port)
        entry: dict[str, Any] = {"name": str(port), "protocol": "TCP", "port": port, "targetPort": port}
        if service_type is ServiceType.NODE_PORT:
            entry["nodePort"] = port
        ports.append(entry)
    return ports


def render_service(instance: MeshGatewayInstance, gateway: Resource) -> dict[str, Any]:
    template = instance.service_template
    annotations = {ANNOTATION_GATEWAY: GATEWAY_BUILTIN, **template.metadata.annotations}
    spec: dict[str, Any] = {
        "ports": service_ports(gateway, instance.service_type),
        "selector": {SELECTOR_LABEL: instance.name},
        "type": instance.service_type.value,
    }
    if template.load_balancer_ip:
        spec["loadBalancerIP"] = template.load_balancer_ip
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(instance, template.metadata.labels, annotations),
        "spec": spec,
    }


def tags_annotation(tags: Mapping[str, str]) -> str:
    """Go's json.Marshal of a map[string]string: sorted keys, no spaces, HTML characters escaped."""
    text = json.dumps(dict(tags), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    for char in "<>&\u2028\u2029":
        text = text.replace(char, f"\\u{ord(char):04x}")
    return text


def render_deployment(instance: MeshGatewayInstance, mesh: str, settings: ZoneSettings) -> dict[str, Any]:
    template = instance.pod_template
    pod_labels = {SELECTOR_LABEL: instance.name, LABEL_SIDECAR_INJECTION: "disabled", **template.metadata.labels}
    pod_annotations = {
        ANNOTATION_GATEWAY: GATEWAY_BUILTIN,
        ANNOTATION_TAGS: tags_annotation(instance.proxy_tags()),
        ANNOTATION_MESH: mesh,
        **template.metadata.annotations,
    }
    if settings.ca_cert:
        pod_annotations[ANNOTATION_XDS_CA] = settings.ca_cert
    security: dict[str, Any] = {}
    if template.fs_group is not None:
        security["fsGroup"] = template.fs_group
    security["sysctls"] = [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]
    pod_spec: dict[str, Any] = {
        "volumes": [{"name": "tmp", "emptyDir": {}}, *gateway_volumes(settings)],
        "containers": [gateway_container(instance, mesh, settings)],
    }
    if template.service_account_name:
        pod_spec["serviceAccountName"] = template.service_account_name
    pod_spec["automountServiceAccountToken"] = False
    pod_spec["securityContext"] = security
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(instance, {}, {}),
        "spec": {
            "replicas": instance.replicas,
            "selector": {"matchLabels": {SELECTOR_LABEL: instance.name}},
            "template": {
                "metadata": {"labels": _sorted(pod_labels), "annotations": _sorted(pod_annotations)},
                "spec": pod_spec,
            },
        },
    }


def _sorted(items: Mapping[str, str]) -> dict[str, str]:
    # Go encodes maps with sorted keys.
    return {key: items[key] for key in sorted(items)}
