"""Stable virtual IPs: a pure, deterministic allocator over one CIDR, run once per mesh.

Rules (gateway.md, "DNS and VIPs"):
- a name that keeps existing keeps its VIP, whatever else comes or goes;
- a new name takes the lowest free host address of the CIDR, so a freed address is the first one reused;
- the network and broadcast addresses are never handed out;
- when the CIDR runs out, the names that already had a VIP keep it, the names that fit are allocated, and
  the rest are reported in one `VipExhaustedError` that names the mesh. Nothing is raised: the caller keeps
  serving what fits and reports the error.

Meshes are isolated: each mesh's allocations are computed from that mesh's own state only, so the same
address may serve a name in two meshes. New names are allocated in sorted order, so the result depends on
the inputs only, never on iteration order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from meshgate.dns.errors import VipExhaustedError

__all__ = ["Allocation", "allocate", "host_range"]


@dataclass(frozen=True, slots=True)
class Allocation:
    """name -> VIP for every desired name that has one, and the error for those that do not."""

    mesh: str
    vips: Mapping[str, IPv4Address] = field(default_factory=dict)
    error: VipExhaustedError | None = None


def host_range(cidr: IPv4Network) -> range:
    """The integer addresses that may be handed out: every address but the network and broadcast ones."""
    return range(int(cidr.network_address) + 1, int(cidr.broadcast_address))


def allocate(mesh: str, cidr: IPv4Network, current: Mapping[str, IPv4Address], desired: Iterable[str]) -> Allocation:
    """New allocations for `mesh` from its `current` ones and the names that should exist now."""
    hosts = host_range(cidr)
    wanted = sorted(set(desired))
    kept: dict[str, IPv4Address] = {}
    used: set[int] = set()
    # Sorted, so that if a corrupted record gave two names one address, which one keeps it is deterministic.
    for name in wanted:
        vip = current.get(name)
        if vip is None or int(vip) not in hosts or int(vip) in used:
            continue
        kept[name] = vip
        used.add(int(vip))
    fresh = [name for name in wanted if name not in kept]
    # One upward walk: each new name takes the next address that is neither kept nor just given out.
    candidate = hosts.start
    missing: list[str] = []
    for name in fresh:
        while candidate in used:
            candidate += 1
        if candidate >= hosts.stop:
            missing.append(name)
            continue
        kept[name] = IPv4Address(candidate)
        used.add(candidate)
        candidate += 1
    error = VipExhaustedError(mesh, str(cidr), tuple(missing)) if missing else None
    return Allocation(mesh, dict(sorted(kept.items())), error)
