"""Tag selectors: whether one matches a proxy's tags, how specific it is, and which MeshGateway a gateway serves.

Kuma 2.7 (`api/mesh/v1alpha1/selectors.go`, `core/policy/dataplane_matcher.go`, `xds/topology/gateway.go`):

- **Matching.** A selector matches a tag map when every one of its keys is present with an equal value or
  `*`. The empty selector matches everything.
- **Rank** (`TagSelectorRank`). A matching selector ranks by the number of its tags, then by the number of
  exact (non-`*`) values: more tags beat more exact tags.
- **Gateway selection** (`SelectGateway`, which is `SelectDataplanePolicyWithMatcher`). Of the candidate
  MeshGateways, each selector that matches ranks on its own; the best rank wins. On a tie the gateway created
  later wins, and gateways are visited in name order so that equal times keep the first name. A gateway with
  no selectors, or an empty selector, matches with the lowest rank.

Both callers use `select_gateway`: xDS generation binds a builtin gateway Dataplane (`select_gateway_for`:
its mesh's gateways, matched against any inbound's tags or its gateway tags, as Kuma's `Dataplane.Matches`),
and the zone's gateway provisioning checks a MeshGatewayInstance's proxy tags (Kubernetes and Universal).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from meshgate.resources.model import Resource

__all__ = ["MATCH_ALL", "Rank", "rank", "select_gateway", "select_gateway_for", "selector_matches"]

MATCH_ALL = "*"
_EPOCH = datetime.min.replace(tzinfo=UTC)


class Rank(NamedTuple):
    """Kuma's TagSelectorRank. Compared as a tuple, (tags, exact), which is Kuma's CompareTo."""

    tags: int = 0
    exact: int = 0


_LOWEST = Rank()


def selector_matches(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    """Kuma's TagSelector.Matches: every key present, with an equal value or `*`; empty matches all."""
    # A plain loop: xDS generation runs this for every endpoint of every destination, and `all(<genexpr>)`
    # costs twice as much.
    for key, value in selector.items():  # noqa: SIM110 - see above
        if key not in tags or (value != tags[key] and value != MATCH_ALL):
            return False
    return True


def rank(selector: Mapping[str, str]) -> Rank:
    """How specific a selector is: (tags, exact tags); the larger ranks higher."""
    exact = sum(1 for value in selector.values() if value != MATCH_ALL)
    return Rank(len(selector), exact)


def select_gateway(gateways: Iterable[Resource], *tag_sets: Mapping[str, str]) -> Resource | None:
    """The MeshGateway among `gateways` whose selector best matches any of `tag_sets`, or None.

    `gateways` are the candidates as given (the caller keeps them to one mesh). A selector matches when it
    matches any one of the tag sets."""
    best: Resource | None = None
    best_rank = _LOWEST
    best_time = _EPOCH
    for gateway in sorted(gateways, key=lambda g: g.meta.name):
        created = gateway.meta.creation_time or _EPOCH
        spec: Any = gateway.spec
        ranks: list[Rank] = []
        if not spec.selectors:
            ranks.append(_LOWEST)
        for selector in spec.selectors:
            if not selector.match or any(selector_matches(selector.match, tags) for tags in tag_sets):
                ranks.append(rank(selector.match))
        for candidate in ranks:
            if best is None or candidate > best_rank or (candidate == best_rank and created > best_time):
                best, best_rank, best_time = gateway, candidate, created
    return best


def select_gateway_for(dataplane: Resource, gateways: Iterable[Resource]) -> Resource | None:
    """The one MeshGateway of the Dataplane's mesh that best matches its inbounds' or gateway tags, or None."""
    networking: Any = dataplane.spec.networking  # type: ignore[attr-defined]
    tag_sets = [*(inbound.tags for inbound in networking.inbound), networking.gateway.tags]
    return select_gateway((g for g in gateways if g.meta.mesh == dataplane.meta.mesh), *tag_sets)
