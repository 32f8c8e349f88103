"""The zone's settings for the gateway proxies it provisions: where they find the control plane, which image
they run, and the container defaults that Kuma takes from its injector configuration.

The proxies run `meshgate-dp` from the project's own image (`Dockerfile`), `meshgate:<version>` unless the zone
is given another (`--dataplane-image`, Kuma's `KUMA_INJECTOR_SIDECAR_CONTAINER_IMAGE`), as the image's user
(uid/gid 10001). The other defaults are Kuma 2.7's (`kuma-cp.defaults.yaml`,
`runtime.kubernetes.injector.sidecarContainer`, `bootstrapServer.params.adminPort`, `dpServer.port`). Kuma's
gateway controller builds the control-plane URL as `https://<controlPlaneServiceName>.<systemNamespace>:<port>`;
so does `ZoneSettings.control_plane_url` unless one is given outright.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from meshgate import __version__
from meshgate.k8s.token_review import TOKEN_AUDIENCE
from meshgate.resources.duration import SECOND

__all__ = ["DEFAULT_DATAPLANE_IMAGE", "Probe", "ZoneSettings"]

DEFAULT_DATAPLANE_IMAGE = f"meshgate:{__version__}"
# The image's user (Dockerfile: `USER 10001:10001`), so files the image owns stay readable.
IMAGE_UID = 10001


@dataclass(frozen=True, slots=True)
class Probe:
    initial_delay_seconds: int
    timeout_seconds: int
    period_seconds: int
    success_threshold: int
    failure_threshold: int


@dataclass(frozen=True, slots=True)
class ZoneSettings:
    dataplane_image: str = DEFAULT_DATAPLANE_IMAGE
    system_namespace: str = "meshgate-system"
    control_plane_service: str = "meshgate-zone"
    dp_server_port: int = 5678
    # Overrides the URL built from the three fields above.
    control_plane_url_override: str = ""
    # The PEM text of the CA that signed the xDS port's certificate (the zone's generated `xds-ca.crt` unless
    # given); it reaches the Pods in an annotation mounted as a file. "": the proxies trust the image's roots.
    ca_cert: str = ""
    # The projected service account token each proxy presents: its audience, and how long the kubelet makes it.
    token_audience: str = TOKEN_AUDIENCE
    token_expiration_seconds: int = 86400
    admin_port: int = 9901
    uid: int = IMAGE_UID
    gid: int = IMAGE_UID
    drain_time_ns: int = 30 * SECOND
    readiness_probe: Probe = Probe(1, 3, 5, 1, 12)
    liveness_probe: Probe = Probe(60, 3, 5, 1, 12)
    requests_cpu: str = "50m"
    requests_memory: str = "64Mi"
    limits_cpu: str = "1000m"
    limits_memory: str = "512Mi"
    env_vars: Mapping[str, str] = field(default_factory=dict)
    # Kuma's gateway controller passes waitForDataplane=false whatever the injector says; an instance can
    # still ask for it with the kuma.io/wait-for-dataplane-ready annotation.
    wait_for_dataplane_ready: bool = False

    @property
    def control_plane_url(self) -> str:
        if self.control_plane_url_override:
            return self.control_plane_url_override
        return f"https://{self.control_plane_service}.{self.system_namespace}:{self.dp_server_port}"
