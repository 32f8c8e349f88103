"""Connection policy matching on a builtin gateway (issue 13, Deliver 2; Kuma 2.7 `gateway/match/policy.go`,
`connection_policy_generator.go`): hand-built selector tables, and the winner whatever the input order."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from google.protobuf import struct_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.resources.model import Meta, Resource
from meshgate.resources.selectors import Rank
from meshgate.xds.policies import matching
from meshgate.xds.policies.matching import best_for_cluster, best_for_route

T0 = datetime(2024, 1, 1, tzinfo=UTC)
LISTENER = {"kuma.io/service": "edge", "port": "8080"}
SVC_A = {"kuma.io/service": "a", "version": "v1"}
SVC_A2 = {"kuma.io/service": "a", "version": "v2"}
SVC_B = {"kuma.io/service": "b"}


def policy(
    name: str,
    *,
    sources: Sequence[Mapping[str, str]] = ({"kuma.io/service": "*"},),
    destinations: Sequence[Mapping[str, str]] = ({"kuma.io/service": "*"},),
    age: int = 0,
) -> Resource:
    """A policy created `age` minutes after T0, with a Struct spec as Kuma's Universal YAML has it."""
    spec = struct_pb2.Struct()
    spec.update(
        {
            "sources": [{"match": dict(s)} for s in sources],
            "destinations": [{"match": dict(d)} for d in destinations],
            "conf": {},
        }
    )
    return Resource("Timeout", Meta(name=name, mesh="default", creation_time=T0 + timedelta(minutes=age)), spec)


def reasons(match: matching.Match) -> dict[str, str]:
    return {loser.policy.meta.name: loser.reason for loser in match.losers}


# --- clusters -----------------------------------------------------------------------------------------------


def test_no_policy_matches_when_sources_or_destinations_miss() -> None:
    other_source = policy("src", sources=[{"kuma.io/service": "other"}])
    other_dest = policy("dst", destinations=[{"kuma.io/service": "b"}])
    assert best_for_cluster([other_source, other_dest], LISTENER, SVC_A) is None
    assert best_for_cluster([], LISTENER, SVC_A) is None


def test_an_exact_tag_beats_a_wildcard() -> None:
    wildcard = policy("wildcard", destinations=[{"kuma.io/service": "*"}], age=5)
    exact = policy("exact", destinations=[{"kuma.io/service": "a"}])
    found = best_for_cluster([wildcard, exact], LISTENER, SVC_A)
    assert found is not None
    assert found.winner is exact
    assert found.rank == Rank(tags=2, exact=1)  # source `*` (1 tag) plus destination `a` (1 exact tag)
    assert reasons(found) == {"wildcard": matching.LESS_SPECIFIC}


def test_more_tags_beat_fewer_even_when_they_are_wildcards() -> None:
    # Kuma's CompareTo: the number of tags first, exact ones only on a tie.
    one_exact = policy("one-exact", destinations=[{"kuma.io/service": "a"}])
    two_wild = policy("two-wild", destinations=[{"kuma.io/service": "*", "version": "*"}])
    found = best_for_cluster([one_exact, two_wild], LISTENER, SVC_A)
    assert found is not None
    assert found.winner is two_wild


def test_source_rank_counts_towards_the_rank() -> None:
    broad = policy("broad", sources=[{"kuma.io/service": "*"}], destinations=[{"kuma.io/service": "a"}], age=9)
    narrow = policy("narrow", sources=[{"kuma.io/service": "edge", "port": "8080"}])
    found = best_for_cluster([broad, narrow], LISTENER, SVC_A)
    assert found is not None
    assert found.winner is narrow  # 2 exact source tags + 1 wildcard beat 1 wildcard + 1 exact


def test_the_first_matching_selector_gives_the_rank_not_the_best() -> None:
    # Kuma's MatchSelector stops at the first selector that matches.
    first_broad = policy(
        "first-broad", destinations=[{"kuma.io/service": "*"}, {"kuma.io/service": "a", "version": "v1"}]
    )
    exact = policy("exact", destinations=[{"kuma.io/service": "a"}], age=-5)
    found = best_for_cluster([first_broad, exact], LISTENER, SVC_A)
    assert found is not None
    assert found.winner is exact


def test_on_equal_rank_the_newest_wins_a_cluster() -> None:
    old = policy("old", age=0)
    new = policy("new", age=10)
    found = best_for_cluster([old, new], LISTENER, SVC_A)
    assert found is not None
    assert found.winner is new
    assert reasons(found) == {"old": matching.OLDER}


def test_on_equal_rank_and_age_the_first_name_wins() -> None:
    b, a = policy("b"), policy("a")
    found = best_for_cluster([b, a], LISTENER, SVC_A)
    assert found is not None
    assert found.winner is a
    assert reasons(found) == {"b": matching.NAME_AFTER}


def test_losers_say_why() -> None:
    winner = policy("winner", destinations=[{"kuma.io/service": "a"}])
    found = best_for_cluster(
        [
            winner,
            policy("no-source", sources=[{"kuma.io/service": "nope"}]),
            policy("no-dest", destinations=[{"kuma.io/service": "b"}]),
            policy("broad"),
        ],
        LISTENER,
        SVC_A,
    )
    assert found is not None
    assert reasons(found) == {
        "broad": matching.LESS_SPECIFIC,
        "no-dest": matching.NO_DESTINATION,
        "no-source": matching.NO_SOURCE,
    }


# --- routes: the split heuristics ---------------------------------------------------------------------------


def test_a_route_to_one_service_takes_the_oldest_of_its_backends_winners() -> None:
    # One service, two versions, each backend with its own policy: the oldest of the two wins the route.
    v1 = policy("v1", destinations=[{"kuma.io/service": "a", "version": "v1"}], age=5)
    v2 = policy("v2", destinations=[{"kuma.io/service": "a", "version": "v2"}], age=1)
    found = best_for_route([v1, v2], LISTENER, [SVC_A, SVC_A2])
    assert found is not None
    assert found.winner is v2
    assert reasons(found) == {"v1": matching.NEWER}


def test_a_route_across_services_prefers_a_wildcard_destination() -> None:
    # For backend a, `for-a` is more specific; for b, only the wildcard matches. The route takes the wildcard,
    # though `for-a` is older.
    for_a = policy("for-a", destinations=[{"kuma.io/service": "a"}], age=0)
    wildcard = policy("wildcard", destinations=[{"kuma.io/service": "*"}], age=10)
    found = best_for_route([for_a, wildcard], LISTENER, [SVC_A, SVC_B])
    assert found is not None
    assert found.winner is wildcard
    assert reasons(found) == {"for-a": matching.NOT_WILDCARD}


def test_a_route_across_services_without_a_wildcard_takes_the_oldest() -> None:
    for_a = policy("for-a", destinations=[{"kuma.io/service": "a"}], age=3)
    for_b = policy("for-b", destinations=[{"kuma.io/service": "b"}], age=2)
    found = best_for_route([for_a, for_b], LISTENER, [SVC_A, SVC_B])
    assert found is not None
    assert found.winner is for_b


def test_a_route_and_its_clusters_may_be_shaped_by_different_policies() -> None:
    for_a = policy("for-a", destinations=[{"kuma.io/service": "a"}], age=0)
    wildcard = policy("wildcard", age=10)
    route = best_for_route([for_a, wildcard], LISTENER, [SVC_A, SVC_B])
    cluster = best_for_cluster([for_a, wildcard], LISTENER, SVC_A)
    assert route is not None
    assert cluster is not None
    assert (route.winner.meta.name, cluster.winner.meta.name) == ("wildcard", "for-a")


def test_a_winner_whose_destination_names_no_service_never_shapes_a_route() -> None:
    by_version = policy("by-version", destinations=[{"version": "v1"}])
    assert best_for_cluster([by_version], LISTENER, SVC_A) is not None
    assert best_for_route([by_version], LISTENER, [SVC_A]) is None


def test_route_losers_that_won_no_backend_say_so() -> None:
    wildcard = policy("wildcard")
    elsewhere = policy("elsewhere", sources=[{"kuma.io/service": "nope"}])
    found = best_for_route([wildcard, elsewhere], LISTENER, [SVC_A])
    assert found is not None
    assert reasons(found) == {"elsewhere": matching.NO_BACKEND_WON}


def test_route_ties_on_age_go_to_the_first_name() -> None:
    a = policy("a", destinations=[{"kuma.io/service": "a"}])
    b = policy("b", destinations=[{"kuma.io/service": "b"}])
    found = best_for_route([b, a], LISTENER, [SVC_B, SVC_A])
    assert found is not None
    assert found.winner is a
    assert reasons(found) == {"b": matching.ROUTE_NAME_AFTER}


# --- the winner does not depend on input order --------------------------------------------------------------

selector = st.dictionaries(
    st.sampled_from(["kuma.io/service", "version", "port"]),
    st.sampled_from(["a", "b", "edge", "v1", "v2", "8080", "*"]),
)
policies = st.lists(
    st.tuples(
        st.lists(selector, min_size=1, max_size=2), st.lists(selector, min_size=1, max_size=2), st.integers(0, 3)
    ),
    min_size=1,
    max_size=8,
).map(lambda rows: [policy(f"p{i}", sources=s, destinations=d, age=age) for i, (s, d, age) in enumerate(rows)])
backends = st.lists(st.sampled_from([SVC_A, SVC_A2, SVC_B]), min_size=1, max_size=3)


def _name(found: matching.Match | None) -> str | None:
    return None if found is None else found.winner.meta.name


@settings(max_examples=200, deadline=None)
@given(policies, backends, st.randoms(use_true_random=False))
def test_the_winner_is_independent_of_input_order(
    ps: list[Resource], route_backends: list[dict[str, str]], shuffle: random.Random
) -> None:
    shuffled = list(ps)
    shuffle.shuffle(shuffled)
    for backend in route_backends:
        first = best_for_cluster(ps, LISTENER, backend)
        second = best_for_cluster(shuffled, LISTENER, backend)
        assert _name(first) == _name(second)
        if first is not None and second is not None:
            assert [lo.policy.meta.name for lo in first.losers] == [lo.policy.meta.name for lo in second.losers]
    assert _name(best_for_route(ps, LISTENER, route_backends)) == _name(
        best_for_route(shuffled, LISTENER, route_backends)
    )


def test_selectors_read_protobuf_specs_as_struct_ones() -> None:
    # The real policy kinds are protobuf messages whose `sources`/`destinations` are Kuma `Selector`s; the same
    # message type backs MeshGatewayRoute's `selectors`.
    from meshgate.api.mesh.v1alpha1.gateway_route_pb2 import MeshGatewayRoute

    spec = MeshGatewayRoute()
    spec.selectors.add().match.update({"kuma.io/service": "edge", "port": "*"})
    route = Resource("MeshGatewayRoute", Meta(name="r", mesh="default"), spec)
    assert matching.selectors(route, "selectors") == [{"kuma.io/service": "edge", "port": "*"}]
    assert matching.selectors(policy("p"), "sources") == [{"kuma.io/service": "*"}]
    assert matching.selectors(policy("p"), "missing") == []


# --- the index changes nothing: a scan of every policy, as the rules are written, gives the same answers ------


def _first_rank(selectors: list[dict[str, str]], tags: Mapping[str, str]) -> Rank | None:
    for s in selectors:
        if all(k in tags and v in (tags[k], "*") for k, v in s.items()):
            return Rank(len(s), sum(1 for v in s.values() if v != "*"))
    return None


def _age(p: Resource) -> float:
    assert p.meta.creation_time is not None  # `policy` sets one
    return p.meta.creation_time.timestamp()


def _scan_cluster(ps: list[Resource], backend: Mapping[str, str]) -> tuple[str, Rank, dict[str, str]] | None:
    """Every policy considered, no index, losers listed eagerly: the reference for `best_for_cluster`."""
    ranked, why = [], {}
    for p in ps:
        src = _first_rank(matching.selectors(p, "sources"), LISTENER)
        dst = None if src is None else _first_rank(matching.selectors(p, "destinations"), backend)
        if src is None:
            why[p.meta.name] = matching.NO_SOURCE
        elif dst is None:
            why[p.meta.name] = matching.NO_DESTINATION
        else:
            ranked.append((p, Rank(src.tags + dst.tags, src.exact + dst.exact)))
    if not ranked:
        return None
    ranked.sort(key=lambda item: (-item[1].tags, -item[1].exact, -_age(item[0]), item[0].meta.name))
    (winner, best), rest = ranked[0], ranked[1:]
    for p, r in rest:
        if r != best:
            why[p.meta.name] = matching.LESS_SPECIFIC
        elif p.meta.creation_time != winner.meta.creation_time:
            why[p.meta.name] = matching.OLDER
        else:
            why[p.meta.name] = matching.NAME_AFTER
    return winner.meta.name, best, why


@settings(max_examples=300, deadline=None)
@given(policies, backends)
def test_the_indexed_cluster_match_equals_a_scan_of_every_policy(
    ps: list[Resource], route_backends: list[dict[str, str]]
) -> None:
    for backend in route_backends:
        found = best_for_cluster(ps, LISTENER, backend)
        expected = _scan_cluster(ps, backend)
        if expected is None:
            assert found is None
            continue
        assert found is not None
        assert (found.winner.meta.name, found.rank, reasons(found)) == expected
        assert [lo.policy.meta.name for lo in found.losers] == sorted(expected[2])


@settings(max_examples=300, deadline=None)
@given(policies, backends)
def test_the_route_winner_is_the_oldest_indexed_backend_winner(
    ps: list[Resource], route_backends: list[dict[str, str]]
) -> None:
    # The route rule restated over the scan: each backend's winner, taken once in backend order (Kuma indexes a
    # policy under the backend it first won), is indexed under the service of each of its destination selectors
    # naming that backend's service or `*`; `*` entries are preferred; the oldest wins.
    indexed: dict[str, set[str]] = {}
    by_name = {p.meta.name: p for p in ps}
    taken: set[str] = set()
    for backend in route_backends:
        won = _scan_cluster(ps, backend)
        if won is None or won[0] in taken:
            continue
        taken.add(won[0])
        for s in matching.selectors(by_name[won[0]], "destinations"):
            wanted = s.get("kuma.io/service", "")
            if wanted in (backend["kuma.io/service"], "*"):
                indexed.setdefault(wanted, set()).add(won[0])
    pool = indexed.get("*") or set().union(*indexed.values()) if indexed else set()
    found = best_for_route(ps, LISTENER, route_backends)
    if not pool:
        assert found is None
        return
    assert found is not None
    oldest = min(pool, key=lambda n: (by_name[n].meta.creation_time, n))
    assert found.winner.meta.name == oldest
    assert {lo.policy.meta.name for lo in found.losers} == set(by_name) - {oldest}
