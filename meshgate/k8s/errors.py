"""The errors of `meshgate.k8s`.

Error tree::

    KubeError
    ├── KubeConfigError        no in-cluster service account and no usable KUBECONFIG: fatal at startup
    ├── KubeUnavailableError   the API server could not be reached (connection, TLS, timeout): retry later
    ├── KubeApiError           the API server answered with a failure Status (code, reason, message)
    │   ├── KubeConflictError  409: a conflicting write (for example a field another manager owns)
    │   └── KubeGoneError      410: a watch's resourceVersion is too old: list again, then watch
    └── NotControlledError     a Deployment or Service of the instance's name exists but another owner
                               controls it; meshgate never takes it over (Kuma fails the same way)

An instance that merely has a bad spec is not an error: `parse_instance` returns its violations, and the
reconciler writes them into the instance's `Ready` condition.
"""

from __future__ import annotations

from meshgate.observability.process import StartupError

__all__ = [
    "KubeApiError",
    "KubeConfigError",
    "KubeConflictError",
    "KubeError",
    "KubeGoneError",
    "KubeUnavailableError",
    "NotControlledError",
]


class KubeError(Exception):
    pass


class KubeConfigError(KubeError, StartupError):
    """Also a StartupError: the zone process prints it as one line and exits 1."""


class KubeUnavailableError(KubeError):
    pass


class KubeApiError(KubeError):
    def __init__(self, code: int, reason: str, message: str) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        super().__init__(f"{code} {reason}: {message}" if reason else f"{code}: {message}")


class KubeConflictError(KubeApiError):
    pass


class KubeGoneError(KubeApiError):
    pass


class NotControlledError(KubeError):
    def __init__(self, kind: str, namespace: str, name: str) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        super().__init__(
            f"{kind} {namespace}/{name} exists and is not controlled by MeshGatewayInstance {namespace}/{name}"
        )


def api_error(code: int, reason: str, message: str) -> KubeApiError:
    """The most specific error class for an API Status."""
    if code == 409:
        return KubeConflictError(code, reason, message)
    if code == 410:
        return KubeGoneError(code, reason, message)
    return KubeApiError(code, reason, message)
