"""TrafficLog (Kuma 2.7 Universal, a connection policy): access logs on a gateway's filter chains, written to
one of the Mesh's `logging` backends.

Kuma's gateway (`plugins/runtime/gateway/filter_chain_generator.go:243-263` for HTTP, `:340-352` for TCP) adds
to each filter chain's HCM or TCP proxy the access log of the TrafficLog matched for the gateway's
pass-through service (`module.PASS_THROUGH`: a listener reaches many destinations), with the gateway's service
as source and `*` as destination. The backend is the one the policy's `conf.backend` names, or the Mesh's
`logging.defaultBackend` when it names none (`xds/context/context.go:98-110`, `mesh_helpers.go:49-58`); no
backend, no access log. The line (`xds/envoy/listeners/v3/access_log_configurer.go:55-115`):

- format: the backend's `format`, else Kuma's default for HTTP (`http_access_log_configurer.go:8`) or TCP
  (`network_access_log_configurer.go:8`);
- `%KUMA_*%` commands replaced here: source address (`<address>:0`) and address without port, source service,
  destination service (`*`), mesh, traffic direction (`INBOUND`); a newline is appended;
- a `file` backend: `envoy.access_loggers.file` at the backend's `conf.path`;
- a `tcp` backend (`:73-78`): the same file logger, at the pipe the proxy's data plane process reads
  (`LogSite.access_log_socket`: the `accessLogSocketPath` the proxy sent in its node metadata, else Kuma's name
  for it, `meshgate.sockets`), each line prefixed with the backend's `conf.address` and `;` (`<address>;<line>`,
  the address not interpolated). meshgate-dp's streamer (`meshgate.dp.access_logs`) splits the address off and
  sends the line, newline-terminated, to that address over TCP, as kuma-dp's does.
"""

from __future__ import annotations

from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from google.protobuf import json_format

from meshgate.xds.clusters import pack
from meshgate.xds.policies.matching import Match
from meshgate.xds.policies.module import LogSite, PolicyModule, conf

__all__ = ["DEFAULT_HTTP_FORMAT", "DEFAULT_TCP_FORMAT", "KIND", "MODULE", "backend", "interpolate"]

KIND = "TrafficLog"
DEFAULT_HTTP_FORMAT = (
    '[%START_TIME%] %KUMA_MESH% "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% '
    "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
    '"%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" "%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%" "%REQ(X-REQUEST-ID)%" '
    '"%REQ(:AUTHORITY)%" "%KUMA_SOURCE_SERVICE%" "%KUMA_DESTINATION_SERVICE%" "%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%" '
    '"%UPSTREAM_HOST%"'
)
DEFAULT_TCP_FORMAT = (
    "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->"
    "%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, "
    "received: %BYTES_RECEIVED% bytes"
)
_DESTINATION = "*"  # mesh_proto.MatchAllTag: a gateway's destination depends on the route
_DIRECTION = "INBOUND"


def interpolate(fmt: str, site: LogSite) -> str:
    """Kuma's `InterpolateKumaValues`, in its order (the address with port before the one without)."""
    for command, value in (
        ("%KUMA_SOURCE_ADDRESS%", f"{site.address}:0"),
        ("%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", site.address),
        ("%KUMA_SOURCE_SERVICE%", site.service),
        ("%KUMA_DESTINATION_SERVICE%", _DESTINATION),
        ("%KUMA_MESH%", site.mesh_name),
        ("%KUMA_TRAFFIC_DIRECTION%", _DIRECTION),
    ):
        fmt = fmt.replace(command, value)
    return fmt


def backend(mesh: Any, name: str) -> dict[str, Any] | None:
    """The Mesh's logging backend `name` (Kuma's JSON), or its default one when `name` is empty."""
    if mesh is None:
        return None
    logging = json_format.MessageToDict(mesh.spec).get("logging", {})
    wanted = name or logging.get("defaultBackend", "")
    found = [b for b in logging.get("backends", []) if b.get("name") == wanted]
    return found[-1] if found else None  # Kuma's map keeps the last of a name


def _destination(found: dict[str, Any], site: LogSite) -> tuple[str, str] | None:
    """(the file Envoy writes, the prefix of each line) for a backend, or None when it has nowhere to go."""
    backend_conf = found.get("conf", {})
    if found.get("type") == "file":
        path = backend_conf.get("path")
        return (path, "") if isinstance(path, str) and path else None
    if found.get("type") == "tcp":
        address = backend_conf.get("address")
        if not isinstance(address, str) or not address or not site.access_log_socket:
            return None
        return site.access_log_socket, f"{address};"
    return None  # the Mesh validator allows no other type


def _access_log(match: Match, site: LogSite) -> accesslog_pb2.AccessLog | None:
    name = conf(match.winner).get("backend", "")
    found = backend(site.mesh, name if isinstance(name, str) else "")
    destination = None if found is None else _destination(found, site)
    if found is None or destination is None:
        return None
    path, prefix = destination
    fmt = found.get("format") or (DEFAULT_HTTP_FORMAT if site.http else DEFAULT_TCP_FORMAT)
    config = file_pb2.FileAccessLog(path=path)
    config.log_format.text_format_source.inline_string = prefix + interpolate(fmt, site) + "\n"
    return accesslog_pb2.AccessLog(name="envoy.access_loggers.file", typed_config=pack(config))


MODULE = PolicyModule(KIND, access_log=_access_log)
