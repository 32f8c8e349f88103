"""What the command lines of meshgate's processes (`global-cp`, `zone-cp`, `meshgate-dp`) share.

    flags.py   the flags the control planes share (each also a MESHGATE_* variable), logging setup from
               them, and `run_process`: a startup failure a user causes becomes one line on stderr

`meshgatectl`'s own flags are in `meshgate/cli`; signals, startup errors and the ports file in
`meshgate/observability/process.py`.
"""

from __future__ import annotations

from meshgate.process.flags import (
    ApiLocalhostIsAdmin,
    BindAddress,
    DataDir,
    DiagnosticsPort,
    KdsMaxMsgSize,
    LogFormatOpt,
    LogLevel,
    PortsFile,
    StoreAllowVolatile,
    StoreOpt,
    parse_localhost_is_admin,
    run_process,
    setup_logging,
)

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
