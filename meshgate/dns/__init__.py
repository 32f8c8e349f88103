"""`.mesh` DNS: names from Dataplanes and MeshGateways, stable VIPs per mesh, and the DNS server.

`names` and `vips` are pure; `responder` is the pure DNS core; `server` is the only module with sockets, and
is imported on its own (`meshgate.dns.server`) so that importing the core never pulls in socket code.
"""

from __future__ import annotations

from meshgate.dns.errors import DnsError, InvalidConfigError, VipExhaustedError
from meshgate.dns.names import SERVICE_PORT, NameSet, VipEntry, mesh_names
from meshgate.dns.responder import TTL, Table, answer
from meshgate.dns.vips import Allocation, allocate

__all__ = [
    "SERVICE_PORT",
    "TTL",
    "Allocation",
    "DnsError",
    "InvalidConfigError",
    "NameSet",
    "Table",
    "VipEntry",
    "VipExhaustedError",
    "allocate",
    "answer",
    "mesh_names",
]
