"""Kubernetes mode of a zone (`meshgate-zone run --environment kubernetes`): the MeshGatewayInstance reconciler.

The zone keeps its resources in its own store as in Universal mode; only MeshGatewayInstances (and the
Deployments and Services made from them) live in the cluster. `prepare()` finds the API configuration before
anything starts, so a zone with no cluster to talk to fails at once with one line (`KubeConfigError`).

The proxies' settings come from the environment (Kuma's defaults otherwise; see `meshgate.k8s.settings`); the
image is the zone's `--dataplane-image` flag (`MESHGATE_DATAPLANE_IMAGE`), `meshgate:<version>` by default:

| variable                                   | default                                                  |
|--------------------------------------------|----------------------------------------------------------|
| `MESHGATE_K8S_CONTROL_PLANE_URL`           | `https://<service>.<namespace>:5678`                     |
| `MESHGATE_K8S_CONTROL_PLANE_SERVICE`       | `meshgate-zone`                                          |
| `MESHGATE_K8S_SYSTEM_NAMESPACE`            | the pod's namespace, else `meshgate-system`              |
| `MESHGATE_K8S_CA_CERT_FILE`                | the CA of the xDS port's certificate (`xds-ca.crt`)      |
| `MESHGATE_K8S_RESYNC_INTERVAL` (seconds)   | 60                                                       |

The same API connection serves the reconciler and the xDS gate's TokenReviews (`meshgate.k8s.token_review`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.abc
import structlog
from lightkube import KubeConfig

from meshgate.k8s.api import KubeApi
from meshgate.k8s.client import SERVICE_ACCOUNT_DIR, load_config, open_api
from meshgate.k8s.errors import KubeConfigError
from meshgate.k8s.reconciler import Reconciler, ReconcilerOptions
from meshgate.k8s.settings import ZoneSettings
from meshgate.store.protocol import ResourceStore

__all__ = ["KubernetesZone", "prepare", "run_reconciler", "settings_from_env"]

log = structlog.get_logger(__name__)


def settings_from_env(environ: Mapping[str, str], service_account: Path = SERVICE_ACCOUNT_DIR) -> ZoneSettings:
    defaults = ZoneSettings()
    namespace = environ.get("MESHGATE_K8S_SYSTEM_NAMESPACE", "")
    if not namespace and (service_account / "namespace").is_file():
        namespace = (service_account / "namespace").read_text().strip()
    ca_cert = ""
    if ca_file := environ.get("MESHGATE_K8S_CA_CERT_FILE", ""):
        try:
            ca_cert = Path(ca_file).read_text()
        except OSError as exc:
            raise KubeConfigError(f"MESHGATE_K8S_CA_CERT_FILE {ca_file}: {exc.strerror or exc}") from exc
    return ZoneSettings(
        system_namespace=namespace or defaults.system_namespace,
        control_plane_service=environ.get("MESHGATE_K8S_CONTROL_PLANE_SERVICE", "") or defaults.control_plane_service,
        control_plane_url_override=environ.get("MESHGATE_K8S_CONTROL_PLANE_URL", ""),
        ca_cert=ca_cert,
    )


def _options_from_env(environ: Mapping[str, str]) -> ReconcilerOptions:
    text = environ.get("MESHGATE_K8S_RESYNC_INTERVAL", "")
    if not text:
        return ReconcilerOptions()
    try:
        interval = float(text)
    except ValueError:
        interval = 0.0
    if interval <= 0:
        raise KubeConfigError(f"MESHGATE_K8S_RESYNC_INTERVAL must be a positive number of seconds, not {text!r}")
    return ReconcilerOptions(resync_interval=interval)


@dataclass(frozen=True, slots=True)
class KubernetesZone:
    config: KubeConfig
    settings: ZoneSettings
    options: ReconcilerOptions

    def open_api(self) -> AbstractAsyncContextManager[KubeApi]:
        return open_api(self.config)

    @property
    def control_plane_host(self) -> str:
        """The host the proxies dial, which the xDS port's generated certificate must name."""
        return urlsplit(self.settings.control_plane_url).hostname or ""

    async def run(
        self,
        store: ResourceStore,
        api: KubeApi,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        await run_reconciler(store, api, self.settings, options=self.options, task_status=task_status)


def prepare(environ: Mapping[str, str] | None = None) -> KubernetesZone:
    """Reads the cluster configuration and the proxy settings; raises KubeConfigError (one line) if unusable."""
    env = os.environ if environ is None else environ
    return KubernetesZone(load_config(env), settings_from_env(env), _options_from_env(env))


async def run_reconciler(
    store: ResourceStore,
    api: KubeApi,
    settings: ZoneSettings,
    *,
    options: ReconcilerOptions | None = None,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    reconciler = Reconciler(api, store, settings, options=options)
    log.info("zone.kubernetes.starting", image=settings.dataplane_image, control_plane=settings.control_plane_url)
    await reconciler.run(task_status=task_status)
