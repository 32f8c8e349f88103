"""The `kuma-gateway` container: Kuma's `DataplaneProxyFactory.NewContainer` plus the gateway controller's changes.

Kuma builds the gateway container with the same factory that its sidecar injector uses, reading the *instance's*
annotations, then the controller renames it, swaps in the instance's `resources`, appends
`KUMA_DATAPLANE_RESOURCES_MAX_MEMORY_BYTES`, lets it bind low ports and mounts `/tmp`. This module does all of
that in one pure function. The factory's inputs that come from Kuma's injector configuration come from
`ZoneSettings`; the controller always passes `waitForDataplane=false` and `sidecarContainersEnabled=false`, so
there is no startup probe and, unless the instance's annotation asks for it, no postStart hook.

The container declares no `ports`: neither Kuma's factory nor its controller sets any (the Service targets the
listener ports directly).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshgate.k8s.duration import format_duration, parse_duration
from meshgate.k8s.instance import (
    ANNOTATION_ENVOY_ADMIN_PORT,
    ANNOTATION_ENVOY_COMPONENT_LOG_LEVEL,
    ANNOTATION_ENVOY_LOG_LEVEL,
    ANNOTATION_SIDECAR_CONCURRENCY,
    ANNOTATION_SIDECAR_DRAIN_TIME,
    ANNOTATION_SIDECAR_ENV_VARS,
    ANNOTATION_WAIT_FOR_DATAPLANE_READY,
    MeshGatewayInstance,
    annotation_enabled,
    annotation_uint32,
    parse_env_vars,
)
from meshgate.k8s.quantity import canonical, milli_value
from meshgate.k8s.settings import Probe, ZoneSettings

__all__ = ["CONTAINER_NAME", "gateway_container"]

CONTAINER_NAME = "kuma-gateway"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # noqa: S105 - a path, not a secret


def _field_ref(path: str) -> dict[str, Any]:
    return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}


def _env(instance: MeshGatewayInstance, mesh: str, settings: ZoneSettings) -> list[dict[str, Any]]:
    """Kuma's sidecarEnvVars: defaults, then the zone's extra variables, then the annotation's; sorted by name."""
    annotations = instance.annotations
    drain = settings.drain_time_ns
    if ANNOTATION_SIDECAR_DRAIN_TIME in annotations:
        drain = parse_duration(annotations[ANNOTATION_SIDECAR_DRAIN_TIME])
    env: dict[str, dict[str, Any]] = {
        "POD_NAME": {"name": "POD_NAME", "valueFrom": _field_ref("metadata.name")},
        "POD_NAMESPACE": {"name": "POD_NAMESPACE", "valueFrom": _field_ref("metadata.namespace")},
        "INSTANCE_IP": {"name": "INSTANCE_IP", "valueFrom": _field_ref("status.podIP")},
    }

    def plain(name: str, value: str) -> None:
        # Go's EnvVar.Value is `omitempty`: an empty value is sent as a name alone.
        env[name] = {"name": name, "value": value} if value else {"name": name}

    plain("KUMA_CONTROL_PLANE_URL", settings.control_plane_url)
    plain("KUMA_DATAPLANE_MESH", mesh)
    plain("KUMA_DATAPLANE_DRAIN_TIME", format_duration(drain))
    plain("KUMA_DATAPLANE_RUNTIME_TOKEN_PATH", TOKEN_PATH)
    plain("KUMA_CONTROL_PLANE_CA_CERT", settings.ca_cert)
    dns = settings.builtin_dns
    if dns.enabled:
        plain("KUMA_DNS_ENABLED", "true")
        plain("KUMA_DNS_ENABLE_LOGGING", "true" if dns.logging else "false")
        plain("KUMA_DNS_CORE_DNS_PORT", str(dns.port))
        plain("KUMA_DNS_CORE_DNS_EMPTY_PORT", str(dns.port + 1))
        plain("KUMA_DNS_ENVOY_DNS_PORT", str(dns.port + 2))
        plain("KUMA_DNS_CORE_DNS_BINARY_PATH", "coredns")
    else:
        plain("KUMA_DNS_ENABLED", "false")
    if ANNOTATION_ENVOY_LOG_LEVEL in annotations:
        plain("KUMA_DATAPLANE_RUNTIME_ENVOY_LOG_LEVEL", annotations[ANNOTATION_ENVOY_LOG_LEVEL])
    if ANNOTATION_ENVOY_COMPONENT_LOG_LEVEL in annotations:
        plain("KUMA_DATAPLANE_RUNTIME_ENVOY_COMPONENT_LOG_LEVEL", annotations[ANNOTATION_ENVOY_COMPONENT_LOG_LEVEL])
    for name, value in settings.env_vars.items():
        plain(name, value)
    if ANNOTATION_SIDECAR_ENV_VARS in annotations:
        for name, value in (parse_env_vars(annotations[ANNOTATION_SIDECAR_ENV_VARS]) or {}).items():
            plain(name, value)
    # Go's sort.Stable by name compares bytes, as Python's str ordering does for these ASCII names.
    result = [env[name] for name in sorted(env)]
    result.append(
        {
            "name": "KUMA_DATAPLANE_RESOURCES_MAX_MEMORY_BYTES",
            "valueFrom": {"resourceFieldRef": {"containerName": CONTAINER_NAME, "resource": "limits.memory"}},
        }
    )
    return result


def _concurrency(annotations: Mapping[str, str], settings: ZoneSettings) -> int:
    explicit = annotation_uint32(annotations, ANNOTATION_SIDECAR_CONCURRENCY)
    if explicit is not None:
        return explicit
    # Kuma autotunes from the *configured* CPU limit, not the instance's, and never below 2 workers.
    return max(milli_value(settings.limits_cpu) // 1000, 2)


def _probe(probe: Probe, port: int, *, success_threshold: int | None = None) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/ready", "port": port},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "periodSeconds": probe.period_seconds,
        "successThreshold": probe.success_threshold if success_threshold is None else success_threshold,
        "failureThreshold": probe.failure_threshold,
    }


def _default_resources(settings: ZoneSettings) -> dict[str, Any]:
    return {
        "limits": {
            "cpu": canonical(settings.limits_cpu),
            "ephemeral-storage": "1G",  # resource.NewScaledQuantity(1, resource.Giga)
            "memory": canonical(settings.limits_memory),
        },
        "requests": {
            "cpu": canonical(settings.requests_cpu),
            "ephemeral-storage": "50M",  # resource.NewScaledQuantity(50, resource.Mega)
            "memory": canonical(settings.requests_memory),
        },
    }


def gateway_container(instance: MeshGatewayInstance, mesh: str, settings: ZoneSettings) -> dict[str, Any]:
    """The proxy container of an instance's Pods, with Go's field order (as Kuma serializes a Container)."""
    annotations = instance.annotations
    admin_port = annotation_uint32(annotations, ANNOTATION_ENVOY_ADMIN_PORT) or settings.admin_port
    args = ["run", "--log-level=info"]
    concurrency = _concurrency(annotations, settings)
    if concurrency > 0:
        args.append(f"--concurrency={concurrency}")

    security: dict[str, Any] = {
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "runAsUser": settings.uid,
        "runAsGroup": settings.gid,
    }
    if instance.pod_template.read_only_root_filesystem is not None:
        security["readOnlyRootFilesystem"] = instance.pod_template.read_only_root_filesystem
    security["allowPrivilegeEscalation"] = False

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.dataplane_image,
        "args": args,
        "env": _env(instance, mesh, settings),
        "resources": dict(instance.resources) if instance.resources is not None else _default_resources(settings),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - Kuma's emptyDir mount
        "livenessProbe": _probe(settings.liveness_probe, admin_port, success_threshold=1),
        "readinessProbe": _probe(settings.readiness_probe, admin_port),
    }
    if annotation_enabled(annotations, ANNOTATION_WAIT_FOR_DATAPLANE_READY, settings.wait_for_dataplane_ready):
        container["lifecycle"] = {
            "postStart": {
                "exec": {"command": ["kuma-dp", "wait", "--url", f"http://localhost:{admin_port}/ready"]},
            }
        }
    container["imagePullPolicy"] = "IfNotPresent"
    container["securityContext"] = security
    return container
