"""The upstream resolver that names outside the DNS domain are forwarded to (`--dns-upstream`). No sockets.

An upstream is an IP address and a port, never a host name: resolving a name here would go through the
system resolver, which may well be this very server, and would cost a lookup per forwarded query.
`meshgate.dns.server` does the forwarding; this module holds the address and the check of what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address

__all__ = ["DEFAULT_PORT", "Upstream", "is_reply_to"]

DEFAULT_PORT = 53
_QR = 0x80  # in the third header byte


@dataclass(frozen=True, slots=True)
class Upstream:
    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, text: str) -> Upstream:
        """`IP`, `IP:PORT`, `[IPv6]` or `[IPv6]:PORT` (a bare IPv6 address too); the port defaults to 53.

        Raises ValueError, saying what was expected, for anything else."""
        text = text.strip()
        expected = f"expected IP[:PORT] or [IPv6][:PORT], got {text!r}"
        if text.startswith("["):
            host, sep, rest = text[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")):
                raise ValueError(expected)
            port_text = rest[1:] if rest else None
        elif text.count(":") > 1:
            host, port_text = text, None  # a bare IPv6 address: its colons are not a port separator
        else:
            host, sep, port_text_or_empty = text.partition(":")
            port_text = port_text_or_empty if sep else None
        try:
            address = ip_address(host)
        except ValueError:
            raise ValueError(expected + " (an IP address: host names are not resolved)") from None
        if port_text is None:
            return cls(str(address), DEFAULT_PORT)
        if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
            raise ValueError(f"{expected} (the port must be 1-65535)")
        return cls(str(address), int(port_text))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_reply_to(query: bytes, reply: bytes) -> bool:
    """Whether `reply` can be the upstream's response to `query`: a whole header, QR set, the query's ID.

    Anything else (garbage, a query, a reply to some other query) is not relayed: the client gets SERVFAIL."""
    return len(reply) >= 12 and reply[:2] == query[:2] and bool(reply[2] & _QR)
