"""How a meshgate-dp proxy registers with its zone: Kuma's way, on the authenticated xDS stream itself.

kuma-dp does not call the zone's API: it puts the Dataplane in Envoy's node metadata (`dataplane.resource`)
and its data plane token in the ADS call's `authorization` metadata. When the stream opens, the zone checks
the token against that Dataplane and registers it; when the last stream closes, the zone removes it
(Kuma's `dataplane_lifecycle.go`). So there is nothing to PUT or DELETE here, and nobody without a token
for that Dataplane can register it.

    node_metadata(dataplane, admin_port, access_log_socket, metrics_socket)
                                           -> {"dataplane.resource": JSON, "dataplane.admin.port": "N",
                                               "dataplane.proxyType": dataplane, ingress or egress,
                                               "accessLogSocketPath": the pipe of meshgate.dp.access_logs,
                                               "metricsSocketPath": the socket of meshgate.dp.metrics}
    read_token(token, token_file)          -> the token at start, or TokenSourceError naming the flag

Errors: `TokenSourceError` (fatal for startup; the message names the flag).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

from meshgate.resources import codec, kinds
from meshgate.resources.model import Resource
from meshgate.sockets import FIELD_ACCESS_LOG_SOCKET_PATH, FIELD_METRICS_SOCKET_PATH

__all__ = [
    "FIELD_ADMIN_PORT",
    "FIELD_DATAPLANE",
    "FIELD_PROXY_TYPE",
    "TokenSourceError",
    "node_metadata",
    "read_token",
]

# Kuma's node metadata fields (pkg/core/xds/metadata.go).
FIELD_DATAPLANE: Final = "dataplane.resource"
FIELD_ADMIN_PORT: Final = "dataplane.admin.port"
FIELD_PROXY_TYPE: Final = "dataplane.proxyType"
# kuma-dp's `--proxy-type` of each kind it registers (the zone tells a ZoneEgress from a ZoneIngress by it).
PROXY_TYPE_OF: Final = {kinds.DATAPLANE: "dataplane", kinds.ZONE_INGRESS: "ingress", kinds.ZONE_EGRESS: "egress"}
TOKEN_FILE_FLAG: Final = "--dataplane-token-file"  # noqa: S105 - a flag name, not a secret
TOKEN_FLAG: Final = "--dataplane-token"  # noqa: S105 - a flag name, not a secret


class TokenSourceError(ValueError):
    """The data plane token flags are contradictory, or the file cannot be read."""


def node_metadata(
    dataplane: Resource, admin_port: int, access_log_socket: str = "", metrics_socket: str = ""
) -> dict[str, str]:
    """Kuma's node metadata fields (`pkg/core/xds/metadata.go:20-39`): the Dataplane (or ZoneIngress, ZoneEgress),
    Envoy's admin port, the proxy type, the pipe TrafficLog lines for `tcp` backends go to and the metrics socket
    (each of the last two left out when "")."""
    doc = codec.encode(dataplane)
    for generated in ("creationTime", "modificationTime"):
        doc.pop(generated, None)
    out = {
        FIELD_DATAPLANE: json.dumps(doc, sort_keys=True),
        FIELD_ADMIN_PORT: str(admin_port),
        FIELD_PROXY_TYPE: PROXY_TYPE_OF[dataplane.kind],
    }
    if access_log_socket:
        out[FIELD_ACCESS_LOG_SOCKET_PATH] = access_log_socket
    if metrics_socket:
        out[FIELD_METRICS_SOCKET_PATH] = metrics_socket
    return out


def read_token(token: str, token_file: Path | None) -> str:
    """The token given inline or in a file (checked at start; Envoy re-reads a file, see meshgate.dp.token_file);
    "" when neither is given."""
    if token and token_file is not None:
        raise TokenSourceError(f"{TOKEN_FLAG} and {TOKEN_FILE_FLAG} are exclusive: give the token one way")
    if token_file is None:
        return token.strip()
    try:
        text = token_file.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TokenSourceError(f"{TOKEN_FILE_FLAG} {token_file}: cannot read the data plane token: {reason}") from None
    if not text:
        raise TokenSourceError(f"{TOKEN_FILE_FLAG} {token_file}: the file is empty, expected a data plane token")
    return text
