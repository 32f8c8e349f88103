"""Gateway policies: which policy shapes which listener, route and cluster (`matching`)."""

from __future__ import annotations

from meshgate.xds.policies.matching import Loser, Match

__all__ = ["Loser", "Match"]
