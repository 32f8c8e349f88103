"""Which source/destination ("connection") policy of a kind shapes a builtin gateway's cluster or route. Pure.

Kuma 2.7 (`plugins/runtime/gateway/generator.go`, `connection_policy_generator.go`, `match/policy.go`,
`core/policy/match.go`; selectors and ranks as `meshgate.resources.selectors`):

- **Source.** A policy is a candidate on a listener when one of its `sources` selectors matches the listener's
  tags (the gateway Dataplane's tags, overridden by the MeshGateway's, overridden by the listener's). Its
  source rank is the rank of the *first* selector that matches (Kuma's `MatchSelector`, not the best one).
- **Cluster** (`best_for_cluster`; Kuma's `matchConnectionPolicy`). Of the candidates, those with a
  `destinations` selector matching the backend's tags (again the first that matches) rank by source rank plus
  destination rank. The highest rank wins; on a tie the policy created *later* wins (Kuma sorts the newest
  first); on a tie again the first name wins (Kuma's sort is unstable there; its sidecar matcher keeps the
  first name, and so does this).
- **Route** (`best_for_route`; Kuma's `BestConnectionPolicyForDestination`). Each backend of the route has its
  cluster winner. Each winner, taken once in backend order, is indexed by the `kuma.io/service` of each of its
  destination selectors that names either the service of the backend it first won or `*`. Winners indexed
  under `*` are the candidates if any (a route that splits across services has no one most specific policy,
  so a wildcard one is preferred); otherwise every indexed winner is. The *oldest* candidate wins; on a tie the
  first name. So when all backends are one service the oldest matching policy wins, and a winner whose
  destination names no service at all never shapes a route, as in Kuma.

`Match` records the winner and every loser with the reason it lost, for `meshgatectl inspect dataplane --type
policies`. Policies are any `Resource` whose spec has `sources` and `destinations`, lists of `{match: {tag:
value}}` (Kuma's `Selector`), as a protobuf message or a `google.protobuf.Struct`. Age is `Meta.creation_time`
(set by the store on create); a resource without one counts as the oldest possible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from google.protobuf import struct_pb2

from meshgate.resources.model import Resource
from meshgate.resources.selectors import MATCH_ALL, Rank, rank, selector_matches
from meshgate.resources.tags import TAG_SERVICE

__all__ = [
    "Candidates",
    "Loser",
    "Match",
    "best_for_cluster",
    "best_for_destination",
    "best_for_proxy",
    "best_for_route",
    "best_for_split",
    "by_source",
    "selectors",
]

_EPOCH = datetime.min.replace(tzinfo=UTC)

NO_SOURCE = "no source selector matches the listener's tags"
NO_DESTINATION = "no destination selector matches the backend's tags"
LESS_SPECIFIC = "less specific than the winner"
OLDER = "as specific as the winner, created earlier (the newest wins a cluster)"
NAME_AFTER = "as specific and as old as the winner, its name sorts after the winner's"
NO_SELECTOR = "no selector matches the proxy's tags"
PROXY_LESS_SPECIFIC = "its best selector is less specific than the winner's"
PROXY_OLDER = "as specific as the winner, created earlier (the newest wins a proxy)"
NO_BACKEND_WON = "not the best match for any backend of the route"
NOT_INDEXED = "its destination names neither the backend's service nor * (Kuma indexes route policies by service)"
NOT_WILDCARD = "a policy with a * service destination is preferred for a route"
NEWER = "created later than the winner (the oldest wins a route)"
ROUTE_NAME_AFTER = "as old as the winner, its name sorts after the winner's"


@dataclass(frozen=True, slots=True)
class Loser:
    policy: Resource
    reason: str


@dataclass(frozen=True, slots=True)
class Match:
    """The policy that shapes a cluster or route, its rank (source plus destination, on the backend it won), and
    every other policy of the kind with why it lost, by name."""

    winner: Resource
    rank: Rank
    losers: tuple[Loser, ...] = ()


@dataclass(frozen=True, slots=True)
class Candidates:
    """The policies of one kind whose sources match one listener (with their source rank), and those that do not.
    Computed once per listener (Kuma's `ConnectionPoliciesBySource`), then matched against each backend."""

    matched: tuple[tuple[Resource, Rank], ...]
    unmatched: tuple[Resource, ...]


def _created(policy: Resource) -> datetime:
    return policy.meta.creation_time or _EPOCH


class PerPolicy:
    """Values computed once per policy object (its selectors, its parsed conf), reused by every proxy of every
    regeneration that holds the same object: matching reads them for every backend of every route.

    Keyed by the object's id together with the object itself, so an id cannot be reused while its entry lives (the
    entry keeps the object alive); a store read makes new objects, so a changed policy is never served stale.
    Bounded: cleared when it reaches `limit` entries."""

    def __init__(self, limit: int = 200_000) -> None:
        self._limit = limit
        self._values: dict[tuple[int, str], tuple[Resource, Any]] = {}

    def get(self, policy: Resource, key: str, compute: Callable[[], Any]) -> Any:
        hit = self._values.get((id(policy), key))
        if hit is not None and hit[0] is policy:
            return hit[1]
        if len(self._values) >= self._limit:
            self._values.clear()
        value = compute()
        self._values[(id(policy), key)] = (policy, value)
        return value


CACHE = PerPolicy()


def selectors(policy: Resource, field: str) -> list[dict[str, str]]:
    """The `match` maps of a policy's `sources` or `destinations`, in order (computed once per policy object;
    callers only read them)."""
    value: list[dict[str, str]] = CACHE.get(policy, field, lambda: _selectors(policy, field))
    return value


def _selectors(policy: Resource, field: str) -> list[dict[str, str]]:
    spec: Any = policy.spec
    if isinstance(spec, struct_pb2.Struct):
        if field not in spec.fields:
            return []
        out = []
        for item in spec.fields[field].list_value.values:
            match = item.struct_value.fields["match"].struct_value.fields if item.HasField("struct_value") else {}
            out.append({key: match[key].string_value for key in match})
        return out
    return [dict(selector.match) for selector in getattr(spec, field)]


def _first_match(policy: Resource, field: str, tags: Mapping[str, str]) -> Rank | None:
    """Kuma's `MatchSelector`: the rank of the first selector that matches, or None."""
    for selector in selectors(policy, field):
        if selector_matches(selector, tags):
            return rank(selector)
    return None


def by_source(policies: Iterable[Resource], listener_tags: Mapping[str, str]) -> Candidates:
    matched: list[tuple[Resource, Rank]] = []
    unmatched: list[Resource] = []
    for policy in sorted(policies, key=lambda p: p.meta.name):
        found = _first_match(policy, "sources", listener_tags)
        if found is None:
            unmatched.append(policy)
        else:
            matched.append((policy, found))
    return Candidates(tuple(matched), tuple(unmatched))


def _cluster_order(item: tuple[Resource, Rank]) -> tuple[int, int, float, str]:
    policy, r = item
    # Highest rank first, then the newest, then the first name.
    return (-r.tags, -r.exact, -_created(policy).timestamp(), policy.meta.name)


def best_for_destination(candidates: Candidates, backend_tags: Mapping[str, str]) -> Match | None:
    """The cluster winner among `candidates` (one listener's) for a backend with `backend_tags`."""
    ranked: list[tuple[Resource, Rank]] = []
    losers: list[Loser] = [Loser(p, NO_SOURCE) for p in candidates.unmatched]
    for policy, source_rank in candidates.matched:
        found = _first_match(policy, "destinations", backend_tags)
        if found is None:
            losers.append(Loser(policy, NO_DESTINATION))
        else:
            ranked.append((policy, Rank(source_rank.tags + found.tags, source_rank.exact + found.exact)))
    if not ranked:
        return None
    ranked.sort(key=_cluster_order)
    winner, best = ranked[0]
    for policy, r in ranked[1:]:
        if r != best:
            reason = LESS_SPECIFIC
        elif _created(policy) != _created(winner):
            reason = OLDER
        else:
            reason = NAME_AFTER
        losers.append(Loser(policy, reason))
    return Match(winner, best, tuple(sorted(losers, key=lambda lo: lo.policy.meta.name)))


def best_for_cluster(
    policies: Iterable[Resource], listener_tags: Mapping[str, str], backend_tags: Mapping[str, str]
) -> Match | None:
    """The policy of one kind that shapes the cluster of a backend reached from a listener, or None."""
    return best_for_destination(by_source(policies, listener_tags), backend_tags)


def best_for_split(
    policies: Iterable[Resource], per_backend: Sequence[tuple[Mapping[str, str], Match | None]]
) -> Match | None:
    """The route winner, given each backend of the route (in the route's order) with its cluster match.
    `policies`: every policy of the kind, so that those that won no backend are listed as losers."""
    seen: set[str] = set()
    indexed: dict[str, list[tuple[Resource, Rank]]] = {}
    winners: dict[str, Resource] = {}
    for tags, found in per_backend:
        if found is None or found.winner.meta.name in seen:
            continue
        policy = found.winner
        seen.add(policy.meta.name)
        winners[policy.meta.name] = policy
        service = tags.get(TAG_SERVICE)
        for selector in selectors(policy, "destinations"):
            wanted = selector.get(TAG_SERVICE, "")
            if wanted in (service, MATCH_ALL):
                indexed.setdefault(wanted, []).append((policy, found.rank))
    wildcard = indexed.get(MATCH_ALL, [])
    pool = wildcard or [item for items in indexed.values() for item in items]
    if not pool:
        return None
    # The oldest first, then the first name; a policy indexed twice is the same candidate.
    unique = {policy.meta.name: (policy, r) for policy, r in pool}
    ordered = sorted(unique.values(), key=lambda item: (_created(item[0]), item[0].meta.name))
    winner, best = ordered[0]
    in_pool = set(unique)
    indexed_names = {policy.meta.name for items in indexed.values() for policy, _ in items}
    losers: list[Loser] = []
    for policy in sorted({p.meta.name: p for p in policies}.values(), key=lambda p: p.meta.name):
        name = policy.meta.name
        if name == winner.meta.name:
            continue
        if name not in winners:
            reason = NO_BACKEND_WON
        elif name not in indexed_names:
            reason = NOT_INDEXED
        elif name not in in_pool:
            reason = NOT_WILDCARD
        elif _created(policy) != _created(winner):
            reason = NEWER
        else:
            reason = ROUTE_NAME_AFTER
        losers.append(Loser(policy, reason))
    return Match(winner, best, tuple(losers))


def best_for_route(
    policies: Iterable[Resource], listener_tags: Mapping[str, str], backends: Sequence[Mapping[str, str]]
) -> Match | None:
    """The policy of one kind that shapes a route from a listener to `backends` (its forward destinations'
    tags, in order), or None."""
    policies = tuple(policies)
    candidates = by_source(policies, listener_tags)
    return best_for_split(policies, [(tags, best_for_destination(candidates, tags)) for tags in backends])


def best_for_proxy(policies: Iterable[Resource], tags: Mapping[str, str]) -> Match | None:
    """The dataplane policy (ProxyTemplate) that applies to a proxy with `tags`, or None. Kuma 2.7's
    `SelectDataplanePolicy` (`core/policy/dataplane_matcher.go:28-60`): in name order, a policy's matching
    selectors are ranked, no selectors or an empty one matching everything with rank 0; a higher rank, or an
    equal one created later, takes over."""
    best: tuple[Resource, Rank] | None = None
    ranked: list[tuple[Resource, Rank]] = []
    losers: list[Loser] = []
    for policy in sorted(policies, key=lambda p: p.meta.name):
        found = selectors(policy, "selectors")
        ranks = [rank(s) if s else Rank() for s in found if selector_matches(s, tags)] if found else [Rank()]
        if not ranks:
            losers.append(Loser(policy, NO_SELECTOR))
            continue
        for r in ranks:
            if best is None or r > best[1] or (r == best[1] and _created(policy) > _created(best[0])):
                best = (policy, r)
        ranked.append((policy, max(ranks)))
    if best is None:
        return None
    winner, top = best
    for policy, r in ranked:
        if policy is not winner:
            losers.append(Loser(policy, PROXY_LESS_SPECIFIC if r < top else PROXY_OLDER))
    return Match(winner, top, tuple(sorted(losers, key=lambda lo: lo.policy.meta.name)))
