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
    "CACHE",
    "Candidates",
    "Compiled",
    "KindIndex",
    "Loser",
    "Match",
    "TagsKey",
    "best_for_cluster",
    "best_for_dataplane",
    "best_for_destination",
    "best_for_proxy",
    "best_for_route",
    "best_for_split",
    "by_source",
    "compiled",
    "index_of",
    "selectors",
    "tags_key",
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


class Match:
    """The policy that shapes a cluster or route, its rank (source plus destination, on the backend it won), and
    every other policy of the kind with why it lost, by name.

    The losers are worked out when first read (`meshgatectl inspect`), not when the winner is: generation matches
    every backend of every route and never reads them, and listing them costs a pass over every policy of the
    kind, which would make matching O(policies) per backend instead of O(policies naming the backend's service)."""

    __slots__ = ("_losers", "rank", "winner")

    def __init__(self, winner: Resource, rank: Rank, losers: tuple[Loser, ...] | None = ()) -> None:
        self.winner = winner
        self.rank = rank
        self._losers = losers  # None: `_explain` works them out when first read

    @property
    def losers(self) -> tuple[Loser, ...]:
        if self._losers is None:
            self._losers = self._explain()
        return self._losers

    def _explain(self) -> tuple[Loser, ...]:
        return ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Match):
            return NotImplemented
        return (self.winner, self.rank, self.losers) == (other.winner, other.rank, other.losers)

    def __hash__(self) -> int:
        return hash((self.winner.meta.mesh, self.winner.meta.name, self.rank))

    def __repr__(self) -> str:
        return f"Match(winner={self.winner.meta.name!r}, rank={tuple(self.rank)})"


def _created(policy: Resource) -> datetime:
    return policy.meta.creation_time or _EPOCH


class PerPolicy:
    """Values computed once per object (a policy's selectors, its parsed conf; a kind's index), reused by every
    proxy of every regeneration that holds the same object: matching reads them for every backend of every route.

    Keyed by the object's id together with the object itself, so an id cannot be reused while its entry lives (the
    entry keeps the object alive); a store read makes new objects, so a changed policy is never served stale.
    Bounded: cleared when it reaches `limit` entries."""

    def __init__(self, limit: int = 200_000) -> None:
        self._limit = limit
        self._values: dict[tuple[int, str], tuple[object, Any]] = {}

    def get(self, policy: object, key: str, compute: Callable[..., Any], *args: Any) -> Any:
        """The value under `key` for `policy`, `compute(*args)` the first time (no closure per call: this runs
        for every backend of every route)."""
        hit = self._values.get((id(policy), key))
        if hit is not None and hit[0] is policy:
            return hit[1]
        if len(self._values) >= self._limit:
            self._values.clear()
        value = compute(*args)
        self._values[(id(policy), key)] = (policy, value)
        return value


CACHE = PerPolicy()


def selectors(policy: Resource, field: str) -> list[dict[str, str]]:
    """The `match` maps of a policy's `sources` or `destinations`, in order (computed once per policy object;
    callers only read them)."""
    value: list[dict[str, str]] = CACHE.get(policy, field, _selectors, policy, field)
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


Ranked = tuple[tuple[dict[str, str], Rank], ...]
TagsKey = tuple[tuple[str, str], ...]  # a tag map as its sorted items: hashable, a cache key


def tags_key(tags: Mapping[str, str]) -> TagsKey:
    return tuple(sorted(tags.items()))


@dataclass(frozen=True, slots=True)
class Compiled:
    """One connection policy as matching reads it: its selectors with their ranks, its age, and the services its
    destinations name (None when one of them names no service or `*`: it may match any backend)."""

    policy: Resource
    name: str
    created: datetime
    sources: Ranked
    destinations: Ranked
    services: frozenset[str] | None


def compiled(policy: Resource) -> Compiled:
    """`policy` compiled, once per policy object."""
    value: Compiled = CACHE.get(policy, "compiled", _compile, policy)
    return value


def _compile(policy: Resource) -> Compiled:
    sources = tuple((s, rank(s)) for s in selectors(policy, "sources"))
    destinations = tuple((s, rank(s)) for s in selectors(policy, "destinations"))
    named = [s.get(TAG_SERVICE, MATCH_ALL) for s, _ in destinations]
    services = None if MATCH_ALL in named else frozenset(named)
    return Compiled(policy, policy.meta.name, _created(policy), sources, destinations, services)


def _first(ranked: Ranked, tags: Mapping[str, str]) -> Rank | None:
    """Kuma's `MatchSelector`: the rank of the first selector that matches, or None."""
    for selector, found in ranked:
        if selector_matches(selector, tags):
            return found
    return None


class KindIndex:
    """One kind's policies of a mesh, compiled, in name order, and indexed by the service their destinations
    name, so that a backend is matched against the policies that can match it (those naming its service, and
    those naming none or `*`), not against every policy of the kind. Built once per regeneration (`index_of`)."""

    def __init__(self, policies: Iterable[Resource]) -> None:
        self.policies = tuple(sorted((compiled(p) for p in policies), key=lambda c: c.name))
        self._anywhere = tuple(c for c in self.policies if c.services is None)
        by_service: dict[str, list[Compiled]] = {}
        for c in self.policies:
            for service in sorted(c.services or ()):
                by_service.setdefault(service, []).append(c)
        self._by_service = {service: tuple(found) for service, found in by_service.items()}

    def for_backend(self, tags: Mapping[str, str]) -> tuple[Compiled, ...]:
        """The policies whose destinations may match a backend with `tags` (a superset of those that do)."""
        specific = self._by_service.get(tags.get(TAG_SERVICE, ""), ())
        return self._anywhere + specific if specific else self._anywhere


def index_of(policies: tuple[Resource, ...]) -> KindIndex:
    """The index of one kind's policies, once per tuple object (a `MeshContext` holds one per kind, shared by the
    proxies of a regeneration)."""
    value: KindIndex = CACHE.get(policies, "index", KindIndex, policies)
    return value


def _index(policies: Iterable[Resource] | KindIndex) -> KindIndex:
    if isinstance(policies, KindIndex):
        return policies
    return index_of(policies) if isinstance(policies, tuple) else KindIndex(policies)


_NO_MATCH = Rank(-1, -1)  # a cached "no source selector matches"


class Candidates:
    """The policies of one kind as seen from one listener: each with the rank of its first source selector that
    matches the listener's tags, or None (Kuma's `ConnectionPoliciesBySource`). One per listener; a policy's
    source rank is worked out when a backend first asks for it, since a listener reaches a few of the services
    that a mesh's policies name."""

    __slots__ = ("_ranks", "index", "tags")

    def __init__(self, index: KindIndex, tags: Mapping[str, str] | None) -> None:
        """`tags`: the listener's; None makes every policy a candidate with the lowest rank."""
        self.index = index
        self.tags = tags
        self._ranks: dict[str, Rank] = {}

    @classmethod
    def every(cls, policies: Iterable[Resource] | KindIndex) -> Candidates:
        """Every policy, each with the lowest source rank: selection by destination only (TrafficPermission)."""
        return cls(_index(policies), None)

    def source(self, policy: Compiled) -> Rank | None:
        found = self._ranks.get(policy.name)
        if found is None:
            found = Rank() if self.tags is None else _first(policy.sources, self.tags)
            if found is None:
                found = _NO_MATCH
            self._ranks[policy.name] = found
        return None if found is _NO_MATCH else found


def by_source(policies: Iterable[Resource] | KindIndex, listener_tags: Mapping[str, str]) -> Candidates:
    return Candidates(_index(policies), listener_tags)


_SUMS: dict[tuple[Rank, Rank], Rank] = {}


def _sum(source: Rank, destination: Rank) -> Rank:
    """A source rank plus a destination rank, one object per value (a generation keeps one per match: a NamedTuple
    stays tracked by the garbage collector, unlike a plain tuple of ints, and there are few distinct values)."""
    key = (source, destination)
    found = _SUMS.get(key)
    if found is None:
        found = _SUMS[key] = Rank(source.tags + destination.tags, source.exact + destination.exact)
    return found


def best_for_destination(candidates: Candidates, backend_tags: Mapping[str, str]) -> Match | None:
    """The cluster winner among `candidates` (one listener's) for a backend with `backend_tags`: the highest
    rank, then the newest, then the first name."""
    best: Compiled | None = None
    best_rank = Rank()
    for c in candidates.index.for_backend(backend_tags):
        source = candidates.source(c)
        if source is None:
            continue
        found = _first(c.destinations, backend_tags)
        if found is None:
            continue
        r = _sum(source, found)
        if (
            best is None
            or r > best_rank
            or (r == best_rank and (c.created > best.created or (c.created == best.created and c.name < best.name)))
        ):
            best, best_rank = c, r
    if best is None:
        return None
    return _ClusterMatch(best.policy, best_rank, candidates, backend_tags)


class _ClusterMatch(Match):
    """A cluster's Match, holding what its losers are worked out from (references only: a generation keeps one
    per backend, and a closure or tuple per Match would be more objects for the garbage collector to walk)."""

    __slots__ = ("_candidates", "_tags")

    def __init__(self, winner: Resource, rank: Rank, candidates: Candidates, tags: Mapping[str, str]) -> None:
        super().__init__(winner, rank, None)
        self._candidates = candidates
        self._tags = tags

    def _explain(self) -> tuple[Loser, ...]:
        return _cluster_losers(self._candidates, self._tags, compiled(self.winner), self.rank)


def _cluster_losers(
    candidates: Candidates, backend_tags: Mapping[str, str], winner: Compiled, best: Rank
) -> tuple[Loser, ...]:
    losers = []
    for c in candidates.index.policies:
        if c is winner:
            continue
        source = candidates.source(c)
        found = None if source is None else _first(c.destinations, backend_tags)
        if source is None:
            reason = NO_SOURCE
        elif found is None:
            reason = NO_DESTINATION
        elif _sum(source, found) != best:
            reason = LESS_SPECIFIC
        elif c.created != winner.created:
            reason = OLDER
        else:
            reason = NAME_AFTER
        losers.append(Loser(c.policy, reason))
    return tuple(losers)


def best_for_cluster(
    policies: Iterable[Resource], listener_tags: Mapping[str, str], backend_tags: Mapping[str, str]
) -> Match | None:
    """The policy of one kind that shapes the cluster of a backend reached from a listener, or None."""
    return best_for_destination(by_source(policies, listener_tags), backend_tags)


def best_for_split(
    candidates: Candidates, backends: Sequence[TagsKey], matches: Sequence[Match | None] | None = None
) -> Match | None:
    """The route winner from the listener of `candidates` to `backends` (each as its sorted tags, in the route's
    order); `matches`: each backend's cluster match, when the caller has them."""
    if matches is None:
        matches = [best_for_destination(candidates, dict(b)) for b in backends]
    sole = _sole(backends, matches)
    if sole is not None:  # the common case, decided without building the index
        won, first = sole
        if first is None:
            return None
        return _RouteMatch(won.winner, won.rank, candidates, backends)
    found = _split(backends, matches)
    if found is None:
        return None
    winner, best, _, _ = found
    return _RouteMatch(winner.policy, best, candidates, backends)


def _sole(backends: Sequence[TagsKey], matches: Sequence[Match | None]) -> tuple[Match, TagsKey | None] | None:
    """When one policy won every backend that has a winner: its first Match, with the backend it first won if it
    is indexed there (a destination naming that backend's service or `*`), else None; `_split` decides the same.
    None when the backends have different winners or none."""
    first: Match | None = None
    at: TagsKey = ()
    for tags, found in zip(backends, matches, strict=True):
        if found is None:
            continue
        if first is None:
            first, at = found, tags
        elif found.winner is not first.winner:
            return None
    if first is None:
        return None
    service = _service(at)
    for selector, _ in compiled(first.winner).destinations:
        if selector.get(TAG_SERVICE, "") in (service, MATCH_ALL):
            return first, at
    return first, None


class _RouteMatch(Match):
    """A route's Match, holding what its losers are worked out from (see `_ClusterMatch`)."""

    __slots__ = ("_backends", "_candidates")

    def __init__(self, winner: Resource, rank: Rank, candidates: Candidates, backends: Sequence[TagsKey]) -> None:
        super().__init__(winner, rank, None)
        self._candidates = candidates
        self._backends = backends

    def _explain(self) -> tuple[Loser, ...]:
        return _split_losers(self._candidates, self._backends)


Pool = list[tuple[Compiled, Rank]]


def _service(tags: TagsKey) -> str | None:
    for key, value in tags:
        if key == TAG_SERVICE:
            return value
    return None


def _split(
    backends: Sequence[TagsKey], matches: Sequence[Match | None]
) -> tuple[Compiled, Rank, dict[str, Pool], Pool] | None:
    """The route winner with its rank, each backend's winner indexed by the service it was indexed under, and the
    pool the winner was chosen from; None when no winner is indexed."""
    seen: set[str] = set()
    indexed: dict[str, Pool] = {}
    for tags, found in zip(backends, matches, strict=True):
        if found is None or found.winner.meta.name in seen:
            continue
        policy = compiled(found.winner)
        seen.add(policy.name)
        service = _service(tags)
        for selector, _ in policy.destinations:
            wanted = selector.get(TAG_SERVICE, "")
            if wanted in (service, MATCH_ALL):
                indexed.setdefault(wanted, []).append((policy, found.rank))
    wildcard = indexed.get(MATCH_ALL, [])
    pool = wildcard or [item for items in indexed.values() for item in items]
    if not pool:
        return None
    # The oldest first, then the first name; a policy indexed twice is the same candidate.
    winner, best = min(pool, key=lambda item: (item[0].created, item[0].name))
    return winner, best, indexed, pool


def _split_losers(candidates: Candidates, backends: Sequence[TagsKey]) -> tuple[Loser, ...]:
    matches = [best_for_destination(candidates, dict(b)) for b in backends]
    found = _split(backends, matches)
    assert found is not None  # a Match was made from the same input
    winner, _, indexed, pool = found
    won = {m.winner.meta.name for m in matches if m is not None}
    indexed_names = {c.name for items in indexed.values() for c, _ in items}
    in_pool = {c.name for c, _ in pool}
    losers = []
    for c in candidates.index.policies:
        if c.name == winner.name:
            continue
        if c.name not in won:
            reason = NO_BACKEND_WON
        elif c.name not in indexed_names:
            reason = NOT_INDEXED
        elif c.name not in in_pool:
            reason = NOT_WILDCARD
        elif c.created != winner.created:
            reason = NEWER
        else:
            reason = ROUTE_NAME_AFTER
        losers.append(Loser(c.policy, reason))
    return tuple(losers)


def best_for_route(
    policies: Iterable[Resource], listener_tags: Mapping[str, str], backends: Sequence[Mapping[str, str]]
) -> Match | None:
    """The policy of one kind that shapes a route from a listener to `backends` (its forward destinations'
    tags, in order), or None."""
    return best_for_split(by_source(tuple(policies), listener_tags), [tags_key(b) for b in backends])


def best_for_proxy(policies: Iterable[Resource], tags: Mapping[str, str]) -> Match | None:
    """The dataplane policy (ProxyTemplate) that applies to a proxy with `tags`, or None. Kuma 2.7's
    `SelectDataplanePolicy` (`core/policy/dataplane_matcher.go:28-60`): in name order, a policy's matching
    selectors are ranked, no selectors or an empty one matching everything with rank 0; a higher rank, or an
    equal one created later, takes over."""
    return best_for_dataplane(policies, (tags,))


def best_for_dataplane(policies: Iterable[Resource], tag_sets: Sequence[Mapping[str, str]]) -> Match | None:
    """`best_for_proxy` for a Dataplane that a selector matches when any of its `tag_sets` has all its tags:
    Kuma's `Dataplane.Matches` (a gateway's tags, else each inbound's), as TrafficTrace is selected."""
    best: tuple[Resource, Rank] | None = None
    ranked: list[tuple[Resource, Rank]] = []
    losers: list[Loser] = []
    for policy in sorted(policies, key=lambda p: p.meta.name):
        found = selectors(policy, "selectors")
        ranks = (
            [rank(s) if s else Rank() for s in found if any(selector_matches(s, tags) for tags in tag_sets)]
            if found
            else [Rank()]
        )
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
