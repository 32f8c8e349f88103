"""Exponential backoff with jitter: the pause between attempts at something that keeps failing.

Shared by the KDS client's reconnects (meshgate.transport.kds_client) and every store-watching loop's retries
(meshgate.store.watch). A plain value with no I/O: the caller sleeps for what `next_delay` returns.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    """Exponential backoff between reconnects, with jitter: the n-th delay is uniform in [cap/2, cap], cap =
    min(maximum, initial * 2**n). Kuma restarts its KDS client after 5 s growing to 1 min
    (pkg/config/app/kuma-cp/config.go, ResilientComponentBaseBackoff/MaxBackoff); meshgate retries sooner
    the first time (1 s) and caps at the same minute. Half the delay is jitter, spreading zones that lost a
    global together, and the other half a floor, so delays grow with every failure and never collapse to ~0
    (a zone never reconnects in a loop). The count restarts only after a session that lasted `stable_after`
    seconds past its first response (`session_ended`): a global that ends every session at once, or right
    after answering, keeps the zone backing off."""

    initial: float = 1.0
    maximum: float = 60.0
    stable_after: float = 5.0
    attempt: int = 0

    def next_delay(self) -> float:
        # 2**40 * initial is past any maximum: the exponent stops growing there (no float overflow).
        cap = min(self.maximum, self.initial * (2 ** min(self.attempt, 40)))
        self.attempt += 1
        return random.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempt = 0

    def session_ended(self, lasted: float | None) -> None:
        """A session ended `lasted` seconds after its first response (None: it never got one)."""
        if lasted is not None and lasted >= self.stable_after:
            self.reset()
