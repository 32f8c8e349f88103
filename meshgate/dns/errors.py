"""The error tree of `meshgate.dns`::

    DnsError
    ├── VipExhaustedError   the VIP CIDR has no free address left for some names of a mesh (reported, not raised:
    │                       the allocator returns it beside the allocations that fit)
    └── InvalidConfigError  a domain or CIDR that cannot work (raised at startup)

A malformed DNS packet is not an error here: the responder turns it into FORMERR or drops it.
"""

from __future__ import annotations

__all__ = ["DnsError", "InvalidConfigError", "VipExhaustedError"]


class DnsError(Exception):
    pass


class VipExhaustedError(DnsError):
    def __init__(self, mesh: str, cidr: str, names: tuple[str, ...]) -> None:
        self.mesh = mesh
        self.cidr = cidr
        self.names = names
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        super().__init__(f'mesh "{mesh}": VIP CIDR {cidr} is exhausted; no VIP for {shown}')


class InvalidConfigError(DnsError):
    pass
