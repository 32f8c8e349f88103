"""Moved to `meshgate.testing.processes`, which bench/ imports too; its names stay importable from here."""

from __future__ import annotations

from meshgate.testing.processes import (
    ROOT,
    CPProcess,
    ProcessGroup,
    free_port,
    global_argv,
    issue_zone_token,
    process_group,
    zone_argv,
    zone_security,
)

__all__ = [
    "ROOT",
    "CPProcess",
    "ProcessGroup",
    "free_port",
    "global_argv",
    "issue_zone_token",
    "process_group",
    "zone_argv",
    "zone_security",
]
