"""The `kuma-gateway` container: `meshgate-dp run` against the zone, in the shape of Kuma's gateway container.

Kuma builds the gateway container with its sidecar injector's factory, reading the *instance's* annotations;
meshgate keeps that shape (name, resources, probes, security context, the `/tmp` mount, the annotations that
tune the proxy) but runs `meshgate-dp` from the project's image, with kuma-dp's settings as flags:

    KUMA_CONTROL_PLANE_URL              --cp-address=https://<zone service>.<namespace>:5678
    KUMA_CONTROL_PLANE_CA_CERT          --ca-cert-file=/var/run/secrets/meshgate.io/xds-ca/ca.crt, a downward API
                                        file of the pod annotation `meshgate.io/xds-ca` (the zone's xDS CA)
    KUMA_DATAPLANE_RUNTIME_TOKEN_PATH   --dataplane-token-file=/var/run/secrets/meshgate.io/token/token, a
                                        projected service account token for the zone's audience
    (the Pod's Dataplane)               --dataplane={... "name": "$(POD_NAME).$(POD_NAMESPACE)", "address":
                                        "$(INSTANCE_IP)", builtin gateway with the instance's tags}; the kubelet
                                        expands `$(VAR)` from the container's env, `$$` is a literal `$`
    kuma.io/envoy-admin-port            --admin-port
    kuma.io/sidecar-proxy-concurrency   --concurrency (autotuned from the CPU limit as Kuma does)
    kuma.io/sidecar-drain-time          --drain-timeout (seconds)
    kuma.io/envoy-log-level             --envoy-log-level

`kuma.io/envoy-component-log-level` and Kuma's builtin DNS have no meshgate-dp counterpart and are not rendered.
Envoy's admin listens on 127.0.0.1 only (it can stop Envoy and dump secrets), which the kubelet's httpGet
probes cannot reach: the probes (and the optional postStart wait) run the image's Python against `/ready`.

The container declares no `ports`: neither Kuma's factory nor its controller sets any (the Service targets the
listener ports directly).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from meshgate.k8s.instance import (
    ANNOTATION_ENVOY_ADMIN_PORT,
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
from meshgate.k8s.settings import Probe, ZoneSettings
from meshgate.resources import kinds
from meshgate.resources.duration import SECOND, parse_duration
from meshgate.resources.quantity import canonical, milli_value

__all__ = [
    "ANNOTATION_XDS_CA",
    "CA_CERT_PATH",
    "CONTAINER_NAME",
    "TOKEN_PATH",
    "gateway_container",
    "gateway_volumes",
]

CONTAINER_NAME = "kuma-gateway"
COMMAND = "meshgate-dp"
# The zone's xDS CA, as a pod annotation that a downward API volume turns into a file: no ConfigMap to create in
# every instance namespace (nor RBAC for one), and a new CA rolls the Pods like any template change.
ANNOTATION_XDS_CA = "meshgate.io/xds-ca"
TOKEN_VOLUME = "meshgate-dp-token"  # noqa: S105 - a volume name, not a secret
CA_VOLUME = "meshgate-xds-ca"
TOKEN_DIR = "/var/run/secrets/meshgate.io/token"  # noqa: S105 - a path, not a secret
CA_DIR = "/var/run/secrets/meshgate.io/xds-ca"
TOKEN_PATH = f"{TOKEN_DIR}/token"
CA_CERT_PATH = f"{CA_DIR}/ca.crt"
_READY_CHECK = "import sys, urllib.request as u; sys.exit(u.urlopen('{url}', timeout=2).status != 200)"
_READY_WAIT = (
    "import time, urllib.request as u\n"
    "deadline = time.monotonic() + 300\n"
    "while True:\n"
    "    try:\n"
    "        if u.urlopen('{url}', timeout=2).status == 200: break\n"
    "    except OSError:\n"
    "        if time.monotonic() > deadline: raise\n"
    "    time.sleep(1)\n"
)


def _field_ref(path: str) -> dict[str, Any]:
    return {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}


def _env(instance: MeshGatewayInstance, settings: ZoneSettings) -> list[dict[str, Any]]:
    """What `--dataplane` refers to, then the zone's extra variables, then the annotation's; sorted by name."""
    annotations = instance.annotations
    env: dict[str, dict[str, Any]] = {
        "POD_NAME": {"name": "POD_NAME", "valueFrom": _field_ref("metadata.name")},
        "POD_NAMESPACE": {"name": "POD_NAMESPACE", "valueFrom": _field_ref("metadata.namespace")},
        "INSTANCE_IP": {"name": "INSTANCE_IP", "valueFrom": _field_ref("status.podIP")},
    }

    def plain(name: str, value: str) -> None:
        # Go's EnvVar.Value is `omitempty`: an empty value is sent as a name alone.
        env[name] = {"name": name, "value": value} if value else {"name": name}

    for name, value in settings.env_vars.items():
        plain(name, value)
    if ANNOTATION_SIDECAR_ENV_VARS in annotations:
        for name, value in (parse_env_vars(annotations[ANNOTATION_SIDECAR_ENV_VARS]) or {}).items():
            plain(name, value)
    # Go's sort.Stable by name compares bytes, as Python's str ordering does for these ASCII names.
    return [env[name] for name in sorted(env)]


def _escape(text: str) -> str:
    """A literal for the kubelet's `$(VAR)` expansion of args."""
    return text.replace("$", "$$")


def dataplane_arg(instance: MeshGatewayInstance, mesh: str) -> str:
    """The Pod's Dataplane for `--dataplane`, named as Kuma names a Pod's (`<pod>.<namespace>`)."""
    doc = {
        "type": kinds.DATAPLANE,
        "mesh": _escape(mesh),
        "name": "$(POD_NAME).$(POD_NAMESPACE)",
        "networking": {
            "address": "$(INSTANCE_IP)",
            "gateway": {
                "type": "BUILTIN",
                "tags": {_escape(k): _escape(v) for k, v in sorted(instance.proxy_tags().items())},
            },
        },
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def gateway_volumes(settings: ZoneSettings) -> list[dict[str, Any]]:
    """The token and CA volumes the container mounts (after Kuma's `tmp`)."""
    token = {
        "serviceAccountToken": {
            "audience": settings.token_audience,
            "expirationSeconds": settings.token_expiration_seconds,
            "path": "token",
        }
    }
    volumes: list[dict[str, Any]] = [{"name": TOKEN_VOLUME, "projected": {"sources": [token]}}]
    if settings.ca_cert:
        item = {
            "path": "ca.crt",
            "fieldRef": {"apiVersion": "v1", "fieldPath": f"metadata.annotations['{ANNOTATION_XDS_CA}']"},
        }
        volumes.append({"name": CA_VOLUME, "downwardAPI": {"items": [item]}})
    return volumes


def _concurrency(annotations: Mapping[str, str], settings: ZoneSettings) -> int:
    explicit = annotation_uint32(annotations, ANNOTATION_SIDECAR_CONCURRENCY)
    if explicit is not None:
        return explicit
    # Kuma autotunes from the *configured* CPU limit, not the instance's, and never below 2 workers.
    return max(milli_value(settings.limits_cpu) // 1000, 2)


def _ready_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/ready"


def _probe(probe: Probe, port: int, *, success_threshold: int | None = None) -> dict[str, Any]:
    return {
        "exec": {"command": ["python", "-c", _READY_CHECK.format(url=_ready_url(port))]},
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


def _seconds(ns: int) -> str:
    seconds = ns / SECOND
    return str(int(seconds)) if seconds == int(seconds) else str(seconds)


def gateway_container(instance: MeshGatewayInstance, mesh: str, settings: ZoneSettings) -> dict[str, Any]:
    """The proxy container of an instance's Pods, with Go's field order (as Kuma serializes a Container)."""
    annotations = instance.annotations
    admin_port = annotation_uint32(annotations, ANNOTATION_ENVOY_ADMIN_PORT) or settings.admin_port
    drain = settings.drain_time_ns
    if ANNOTATION_SIDECAR_DRAIN_TIME in annotations:
        drain = parse_duration(annotations[ANNOTATION_SIDECAR_DRAIN_TIME])
    args = ["run", f"--cp-address={settings.control_plane_url}"]
    if settings.ca_cert:
        args.append(f"--ca-cert-file={CA_CERT_PATH}")
    args += [
        f"--dataplane-token-file={TOKEN_PATH}",
        f"--dataplane={dataplane_arg(instance, mesh)}",
        f"--admin-port={admin_port}",
    ]
    concurrency = _concurrency(annotations, settings)
    if concurrency > 0:
        args.append(f"--concurrency={concurrency}")
    args.append(f"--drain-timeout={_seconds(drain)}")
    if ANNOTATION_ENVOY_LOG_LEVEL in annotations:
        args.append(f"--envoy-log-level={_escape(annotations[ANNOTATION_ENVOY_LOG_LEVEL])}")

    security: dict[str, Any] = {
        "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        "runAsUser": settings.uid,
        "runAsGroup": settings.gid,
        "runAsNonRoot": True,
    }
    if instance.pod_template.read_only_root_filesystem is not None:
        security["readOnlyRootFilesystem"] = instance.pod_template.read_only_root_filesystem
    security["allowPrivilegeEscalation"] = False

    mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 - Kuma's emptyDir mount
        {"name": TOKEN_VOLUME, "readOnly": True, "mountPath": TOKEN_DIR},
    ]
    if settings.ca_cert:
        mounts.append({"name": CA_VOLUME, "readOnly": True, "mountPath": CA_DIR})
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": settings.dataplane_image,
        "command": [COMMAND],
        "args": args,
        "env": _env(instance, settings),
        "resources": dict(instance.resources) if instance.resources is not None else _default_resources(settings),
        "volumeMounts": mounts,
        "livenessProbe": _probe(settings.liveness_probe, admin_port, success_threshold=1),
        "readinessProbe": _probe(settings.readiness_probe, admin_port),
    }
    if annotation_enabled(annotations, ANNOTATION_WAIT_FOR_DATAPLANE_READY, settings.wait_for_dataplane_ready):
        wait = _READY_WAIT.format(url=_ready_url(admin_port))
        container["lifecycle"] = {"postStart": {"exec": {"command": ["python", "-c", wait]}}}
    container["imagePullPolicy"] = "IfNotPresent"
    container["securityContext"] = security
    return container
