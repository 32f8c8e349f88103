"""Flags the control planes share (global-cp, zone-cp; meshgate-dp takes the logging ones), each also a
MESHGATE_* environment variable (Kuma-style names)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, cast

import anyio
import typer

from meshgate.observability.logging import LogFormat, configure_logging
from meshgate.observability.process import BindError, StartupError, leaf_exceptions, run_until_signalled

__all__ = [
    "ApiLocalhostIsAdmin",
    "BindAddress",
    "DataDir",
    "DiagnosticsPort",
    "KdsMaxMsgSize",
    "LogFormatOpt",
    "LogLevel",
    "PortsFile",
    "StoreAllowVolatile",
    "StoreOpt",
    "parse_localhost_is_admin",
    "run_process",
    "setup_logging",
]

BindAddress = Annotated[
    str, typer.Option("--bind-address", envvar="MESHGATE_BIND_ADDRESS", help="Address every server binds.")
]
DiagnosticsPort = Annotated[
    int,
    typer.Option(
        "--diagnostics-port",
        envvar="MESHGATE_DIAGNOSTICS_PORT",
        help="Port of /ready, /healthy and /metrics.",
    ),
]
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store",
        envvar="MESHGATE_STORE",
        help=(
            "memory, sqlite (under --data-dir), sqlite:PATH, or redis://HOST:PORT/DB[?prefix=P] (shared by replicas)."
        ),
    ),
]
StoreAllowVolatile = Annotated[
    bool,
    typer.Option(
        "--store-allow-volatile",
        envvar="MESHGATE_STORE_ALLOW_VOLATILE",
        help="Start on a Redis store that persists nothing (no AOF, no RDB save rule), or whose persistence"
        " cannot be read; a Redis restart then loses every resource. For tests and throwaway setups.",
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="MESHGATE_DATA_DIR",
        help="Directory of the embedded store [default: data/global, or data/ZONE on a zone].",
    ),
]
LogFormatOpt = Annotated[str, typer.Option("--log-format", envvar="MESHGATE_LOG_FORMAT", help="console or json.")]
LogLevel = Annotated[
    str, typer.Option("--log-level", envvar="MESHGATE_LOG_LEVEL", help="debug, info, warning or error.")
]
PortsFile = Annotated[
    Path | None,
    typer.Option(
        "--ports-file",
        envvar="MESHGATE_PORTS_FILE",
        help="Write the bound ports as JSON here once serving (useful with port 0).",
    ),
]

# A string, not a typer bool: a bool would be a bare flag, and Kuma's setting is written `=false`.
ApiLocalhostIsAdmin = Annotated[
    str,
    typer.Option(
        "--api-localhost-is-admin",
        envvar="MESHGATE_API_LOCALHOST_IS_ADMIN",
        metavar="true|false",
        help="A direct loopback caller without a token is the admin user (false: every caller needs a token).",
    ),
]
KdsMaxMsgSize = Annotated[
    int,
    typer.Option(
        "--kds-max-msg-size",
        envvar="MESHGATE_KDS_MAX_MSG_SIZE",
        min=1024 * 1024,
        help="Largest KDS message, in bytes, sent or accepted (Kuma's KDS maxMsgSize). A Kuma zone reads the"
        " first response per kind as the whole state, so it is split only when larger than this; set the"
        " same value on the global and every zone.",
    ),
]
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def parse_localhost_is_admin(value: str) -> bool:
    """--api-localhost-is-admin as a bool, or a usage error naming the flag."""
    text = value.strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise typer.BadParameter(f"expected true or false, got {value!r}", param_hint="--api-localhost-is-admin")


def setup_logging(log_format: str, log_level: str, process: str) -> None:
    """Validates --log-format/--log-level and configures structlog, or fails naming the flag."""
    fmt = cast(LogFormat, check_log_format(log_format))
    try:
        configure_logging(fmt, log_level, process=process)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--log-level") from exc


def run_process(program: str, main: Callable[[], Awaitable[None]]) -> None:
    """Runs a control plane until SIGTERM/SIGINT; startup failures a user causes (a port in use, no
    cluster config) become one line on stderr and exit 1, not a traceback."""
    try:
        anyio.run(run_until_signalled, main)
    except* BindError as group:
        for failure in leaf_exceptions(group):
            typer.echo(f"{program}: {failure} (choose another port with the matching --*-port flag)", err=True)
        raise typer.Exit(1) from None
    except* StartupError as group:
        for failure in leaf_exceptions(group):
            typer.echo(f"{program}: {failure}", err=True)
        raise typer.Exit(1) from None


def check_log_format(value: str) -> str:
    if value not in ("console", "json"):
        raise typer.BadParameter(f"expected console or json, got {value!r}", param_hint="--log-format")
    return value
