"""Kubernetes zone mode: MeshGatewayInstance custom resources become the Deployment and Service Kuma 2.7 creates.

    instance.py    the custom resource as a typed value and its mesh; parse with violations, never raise
    selection.py   a re-export kept for zone_cp/provisioning.py (selection is meshgate.resources.selectors)
    container.py   the `kuma-gateway` proxy container
    render.py      Service + Deployment, pure                      } no I/O in any of these
    status.py      the Ready condition and its status patch, pure  }
    api.py         the KubeApi Protocol the reconciler needs
    client.py      KubeApi on lightkube (the only module that talks to an API server)
    workqueue.py   coalescing, never-concurrent-per-key work queue
    reconciler.py  level-triggered reconciler (anyio task group: watches, store events, resync, workers)
    token_review.py  a gateway Pod's service account token -> the MeshGatewayInstance it proves (TokenReview)
    testing.py     FakeKubeApi, for tests

Error tree::

    KubeError
    ├── KubeConfigError        no in-cluster service account and no usable KUBECONFIG: fatal at startup
    ├── KubeUnavailableError   the API server could not be reached: retry later
    ├── KubeApiError           the API server answered with a failure Status
    │   ├── KubeConflictError  409
    │   └── KubeGoneError      410: list again, then watch
    └── NotControlledError     an object of the instance's name exists under another controller

    ServiceAccountTokenRefused   (token_review.py; not a KubeError) a proxy's token does not prove its Dataplane
"""

from __future__ import annotations

from meshgate.k8s.api import FIELD_MANAGER, Kind, KubeApi, KubeObject, ObjectList, WatchEvent, WatchEventType
from meshgate.k8s.errors import (
    KubeApiError,
    KubeConfigError,
    KubeConflictError,
    KubeError,
    KubeGoneError,
    KubeUnavailableError,
    NotControlledError,
)
from meshgate.k8s.instance import MeshGatewayInstance, ParsedInstance, ServiceType, mesh_of, parse_instance, service_tag
from meshgate.k8s.reconciler import Outcome, Reconciler, ReconcileResult, ReconcilerOptions
from meshgate.k8s.render import Rendering, render, render_deployment, render_service
from meshgate.k8s.settings import ZoneSettings
from meshgate.k8s.status import Condition, compute_ready

__all__ = [
    "FIELD_MANAGER",
    "Condition",
    "Kind",
    "KubeApi",
    "KubeApiError",
    "KubeConfigError",
    "KubeConflictError",
    "KubeError",
    "KubeGoneError",
    "KubeObject",
    "KubeUnavailableError",
    "MeshGatewayInstance",
    "NotControlledError",
    "ObjectList",
    "Outcome",
    "ParsedInstance",
    "ReconcileResult",
    "Reconciler",
    "ReconcilerOptions",
    "Rendering",
    "ServiceType",
    "WatchEvent",
    "WatchEventType",
    "ZoneSettings",
    "compute_ready",
    "mesh_of",
    "parse_instance",
    "render",
    "render_deployment",
    "render_service",
    "service_tag",
]
