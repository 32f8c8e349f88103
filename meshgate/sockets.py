"""The files Envoy and its data plane process share, named as Kuma names them, so that the zone (which writes
them into Envoy's config) and meshgate-dp (which makes and reads them) agree.

Kuma (`pkg/core/xds/sockets.go:10-35`): the access log pipe of Dataplane `name` in mesh `mesh` is
`<dir>/kuma-al-<name>-<mesh>`, cut to 98 bytes, plus `.sock` (a Unix socket path must fit in 104 bytes;
kuma-dp makes a FIFO there all the same); the metrics hijacker's socket (the Unix socket Envoy's
`kuma:metrics:hijacker` cluster reaches meshgate-dp's merged metrics on) is `<dir>/kuma-mh-<name>-<mesh>.sock`,
cut the same way, sent as `metricsSocketPath`. kuma-dp chooses `<dir>` (its socket directory, by default its
temporary config directory: `app/kuma-dp/cmd/run.go:117-119`) and sends the path in Envoy's node metadata,
`accessLogSocketPath` (`pkg/xds/bootstrap/template_v3.go:122`); the control plane uses that path, and names one
under its own temporary directory only when a proxy sends none (`pkg/core/xds/metadata.go:207-214`).

Pure: no I/O.
"""

from __future__ import annotations

import posixpath
from typing import Final

__all__ = [
    "DEFAULT_SOCKET_DIR",
    "FIELD_ACCESS_LOG_SOCKET_PATH",
    "FIELD_METRICS_SOCKET_PATH",
    "access_log_socket_name",
    "metrics_socket_name",
]

# Kuma's node metadata fields (pkg/core/xds/metadata.go:34-35).
FIELD_ACCESS_LOG_SOCKET_PATH: Final = "accessLogSocketPath"
FIELD_METRICS_SOCKET_PATH: Final = "metricsSocketPath"
# Where the zone names a proxy's pipe when the proxy sent no path: Go's os.TempDir() where TMPDIR is unset.
DEFAULT_SOCKET_DIR: Final = "/tmp"  # noqa: S108 - a name Envoy is told, not a file opened here
_MAX_STEM_BYTES: Final = 98


def access_log_socket_name(directory: str, name: str, mesh: str) -> str:
    """Kuma's `AccessLogSocketName(dir, name, mesh)`: the path joined and cleaned as Go's `filepath.Join`,
    cut to 98 bytes, then `.sock`."""
    return _socket_name(directory, f"kuma-al-{name}-{mesh}")


def metrics_socket_name(directory: str, name: str, mesh: str) -> str:
    """Kuma's `MetricsHijackerSocketName(dir, name, mesh)`, cut as `access_log_socket_name`."""
    return _socket_name(directory, f"kuma-mh-{name}-{mesh}")


def _socket_name(directory: str, base: str) -> str:
    stem = posixpath.normpath(posixpath.join(directory, base))
    # Go cuts bytes; a cut through a multi-byte character drops that character here.
    return stem.encode()[:_MAX_STEM_BYTES].decode(errors="ignore") + ".sock"
