"""Which mesh an instance belongs to, and which MeshGateway its proxies will serve.

`mesh_of` is Kuma's `MeshOfByLabelOrAnnotation`: the instance's `kuma.io/mesh` label, then its (deprecated)
`kuma.io/mesh` annotation, then its Namespace's `kuma.io/mesh` annotation, then `default`.

`select_gateway` is Kuma's `SelectGateway` (`SelectDataplanePolicyWithMatcher`), applied to the MeshGateways
of that mesh and the instance's tags (with `kuma.io/service` defaulted):
- a selector matches when every one of its tags is among the instance's tags, with the same value or `*`;
- the best match has the most tags, then the most exact (non-`*`) tags;
- a tie goes to the gateway created later; with equal times the first by name wins (Kuma sorts by name first);
- a gateway with no selectors, or an empty selector, matches anything with the lowest rank.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from meshgate.k8s.instance import ANNOTATION_MESH, MeshGatewayInstance
from meshgate.resources.model import Resource

__all__ = ["DEFAULT_MESH", "Rank", "mesh_of", "rank", "select_gateway", "selector_matches"]

DEFAULT_MESH = "default"
MATCH_ALL = "*"
_EPOCH = datetime.min.replace(tzinfo=UTC)


def mesh_of(instance: MeshGatewayInstance, namespace_annotations: Mapping[str, str]) -> str:
    for source in (instance.labels, instance.annotations, namespace_annotations):
        mesh = source.get(ANNOTATION_MESH, "")
        if mesh:
            return mesh
    return DEFAULT_MESH


@dataclass(frozen=True, slots=True, order=False)
class Rank:
    """TagSelectorRank: how specific a matching selector is."""

    exact: int = 0
    wildcard: int = 0

    def compare(self, other: Rank) -> int:
        total, other_total = self.exact + self.wildcard, other.exact + other.wildcard
        if total == other_total:
            return self.exact - other.exact
        return total - other_total


def selector_matches(selector: Mapping[str, str], tags: Mapping[str, str]) -> bool:
    return all(key in tags and value in (tags[key], MATCH_ALL) for key, value in selector.items())


def rank(selector: Mapping[str, str]) -> Rank:
    wildcard = sum(1 for value in selector.values() if value == MATCH_ALL)
    return Rank(exact=len(selector) - wildcard, wildcard=wildcard)


def _created(gateway: Resource) -> datetime:
    return gateway.meta.creation_time or _EPOCH


def select_gateway(gateways: Sequence[Resource], tags: Mapping[str, str]) -> Resource | None:
    best: Resource | None = None
    best_rank = Rank()

    def same_rank_created_later(gateway: Resource, candidate: Rank) -> bool:
        return best is not None and candidate.compare(best_rank) == 0 and _created(gateway) > _created(best)

    for gateway in sorted(gateways, key=lambda g: g.meta.name):
        spec: Any = gateway.spec
        selectors = list(spec.selectors)
        if not selectors:
            if best is None or same_rank_created_later(gateway, Rank()):
                best = gateway
            continue
        for selector in selectors:
            match = dict(selector.match)
            if not match:
                if best is None or same_rank_created_later(gateway, Rank()):
                    best = gateway
                continue
            if selector_matches(match, tags):
                candidate = rank(match)
                if candidate.compare(best_rank) > 0 or same_rank_created_later(gateway, candidate):
                    best_rank = candidate
                    best = gateway
    return best
