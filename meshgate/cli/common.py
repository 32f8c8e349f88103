"""Flags both control planes share, each also a MESHGATE_* environment variable (Kuma-style names)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = [
    "BindAddress",
    "DataDir",
    "DiagnosticsPort",
    "LogFormatOpt",
    "LogLevel",
    "PortsFile",
    "StoreOpt",
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


def check_log_format(value: str) -> str:
    if value not in ("console", "json"):
        raise typer.BadParameter(f"expected console or json, got {value!r}", param_hint="--log-format")
    return value
