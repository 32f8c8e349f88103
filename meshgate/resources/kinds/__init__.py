"""One module per resource kind, each with its descriptor (`DESCRIPTOR`) and its validator (`validate`)."""

from __future__ import annotations
