"""What every process shares to be seen and run: logs, metrics, diagnostics, and its lifecycle.

    logging.py       structlog setup: console for people, JSON lines behind `--log-format json`
    metrics.py       KDS metrics under Kuma's names, rendered as Kuma's Go exporter writes them
    diagnostics.py   /ready, /healthy and /metrics on their own port (aiohttp: import it from its module, so
                     that a process without that server, meshgate-dp, does not load aiohttp)
    process.py       signals (drain on SIGTERM/SIGINT), startup errors, the ports file

Error tree::

    StartupError     a process cannot start for a reason its user can fix; printed as one line
    BindError        (an OSError) a server could not listen on its address
"""

from __future__ import annotations

from meshgate.observability.logging import LogFormat, configure_logging
from meshgate.observability.metrics import KDSMetrics
from meshgate.observability.process import (
    BindError,
    StartupError,
    leaf_exceptions,
    run_until_signalled,
    write_ports_file,
)

__all__ = [
    "BindError",
    "KDSMetrics",
    "LogFormat",
    "StartupError",
    "configure_logging",
    "leaf_exceptions",
    "run_until_signalled",
    "write_ports_file",
]
