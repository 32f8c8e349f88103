"""The zone's settings for the gateway proxies it provisions: where they find the control plane, which image
they run, and the container defaults that Kuma takes from its injector configuration.

Every default is Kuma 2.7's (`kuma-cp.defaults.yaml`, `runtime.kubernetes.injector.sidecarContainer` and
`builtinDNS`, `bootstrapServer.params.adminPort`, `dpServer.port`). Kuma's gateway controller builds the
control-plane URL as `https://<controlPlaneServiceName>.<systemNamespace>:<dpServer.port>`; so does
`ZoneSettings.control_plane_url` unless one is given outright.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshgate.k8s.duration import SECOND

__all__ = ["BuiltinDNS", "Probe", "ZoneSettings"]


@dataclass(frozen=True, slots=True)
class Probe:
    initial_delay_seconds: int
    timeout_seconds: int
    period_seconds: int
    success_threshold: int
    failure_threshold: int


@dataclass(frozen=True, slots=True)
class BuiltinDNS:
    enabled: bool = True
    port: int = 15053
    logging: bool = False


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    dataplane_image: str = "kuma/kuma-dp:2.7.29"
    system_namespace: str = "meshgate-system"
    control_plane_service: str = "meshgate-zone"
    dp_server_port: int = 5678
    # Overrides the URL built from the three fields above.
    control_plane_url_override: str = ""
    # The PEM text of the CA that signed the control plane's certificate; "" to let the proxy fetch it.
    ca_cert: str = ""
    admin_port: int = 9901
    uid: int = 5678
    gid: int = 5678
    drain_time_ns: int = 30 * SECOND
    readiness_probe: Probe = Probe(1, 3, 5, 1, 12)
    liveness_probe: Probe = Probe(60, 3, 5, 1, 12)
    requests_cpu: str = "50m"
    requests_memory: str = "64Mi"
    limits_cpu: str = "1000m"
    limits_memory: str = "512Mi"
    env_vars: Mapping[str, str] = field(default_factory=dict)
    builtin_dns: BuiltinDNS = BuiltinDNS()
    # Kuma's gateway controller passes waitForDataplane=false whatever the injector says; an instance can
    # still ask for it with the kuma.io/wait-for-dataplane-ready annotation.
    wait_for_dataplane_ready: bool = False

    @property
    def control_plane_url(self) -> str:
        if self.control_plane_url_override:
            return self.control_plane_url_override
        return f"https://{self.control_plane_service}.{self.system_namespace}:{self.dp_server_port}"
