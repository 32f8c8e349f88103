"""Which mesh an instance is in, and which MeshGateway it serves (Kuma's SelectDataplanePolicyWithMatcher)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.k8s.instance import MeshGatewayInstance
from meshgate.k8s.selection import Rank, mesh_of, rank, select_gateway, selector_matches
from meshgate.resources.model import Meta, Resource

TAGS = {"kuma.io/service": "edge", "version": "v2", "team": "a"}


def gw(name: str, *selectors: dict[str, str], created: int | None = None) -> Resource:
    spec = MeshGateway()
    for match in selectors:
        spec.selectors.add().match.update(match)
    when = datetime(2024, 1, created, tzinfo=UTC) if created else None
    return Resource("MeshGateway", Meta(name=name, mesh="default", creation_time=when), spec)


def name(resource: Resource | None) -> str | None:
    return resource.meta.name if resource else None


def test_mesh_label_then_annotation_then_namespace_then_default() -> None:
    both = MeshGatewayInstance("gw", "ns", labels={"kuma.io/mesh": "l"}, annotations={"kuma.io/mesh": "a"})
    assert mesh_of(both, {"kuma.io/mesh": "n"}) == "l"
    annotated = MeshGatewayInstance("gw", "ns", annotations={"kuma.io/mesh": "a"})
    assert mesh_of(annotated, {"kuma.io/mesh": "n"}) == "a"
    plain = MeshGatewayInstance("gw", "ns", labels={"kuma.io/mesh": ""})
    assert mesh_of(plain, {"kuma.io/mesh": "n"}) == "n"
    assert mesh_of(plain, {}) == "default"


def test_selector_matching() -> None:
    assert selector_matches({"kuma.io/service": "edge"}, TAGS)
    assert selector_matches({"version": "*"}, TAGS)
    assert not selector_matches({"version": "v1"}, TAGS)
    assert not selector_matches({"zone": "*"}, TAGS)
    assert selector_matches({}, TAGS)


def test_rank_counts_tags_then_exact_ones() -> None:
    assert rank({"a": "1", "b": "*"}) == Rank(exact=1, wildcard=1)
    assert Rank(2, 0).compare(Rank(1, 1)) > 0
    assert Rank(1, 2).compare(Rank(2, 0)) > 0  # more tags beats more exact tags
    assert Rank(1, 1).compare(Rank(1, 1)) == 0


def test_no_candidate_matches() -> None:
    assert select_gateway([gw("a", {"kuma.io/service": "other"})], TAGS) is None
    assert select_gateway([], TAGS) is None


def test_the_most_specific_selector_wins_whatever_the_order() -> None:
    generic = gw("z-generic", {"kuma.io/service": "edge"})
    specific = gw("a-specific", {"kuma.io/service": "edge", "version": "v2"})
    assert name(select_gateway([generic, specific], TAGS)) == "a-specific"
    assert name(select_gateway([specific, generic], TAGS)) == "a-specific"


def test_each_selector_of_a_gateway_counts_on_its_own() -> None:
    multi = gw("multi", {"kuma.io/service": "nope"}, {"kuma.io/service": "edge", "version": "v2", "team": "a"})
    other = gw("other", {"kuma.io/service": "edge", "version": "v2"})
    assert name(select_gateway([other, multi], TAGS)) == "multi"


def test_a_tie_goes_to_the_newer_gateway_and_equal_times_to_the_first_name() -> None:
    older = gw("a", {"kuma.io/service": "edge"}, created=1)
    newer = gw("b", {"kuma.io/service": "edge"}, created=2)
    assert name(select_gateway([newer, older], TAGS)) == "b"
    same_a = gw("a", {"kuma.io/service": "edge"}, created=1)
    same_b = gw("b", {"kuma.io/service": "edge"}, created=1)
    assert name(select_gateway([same_b, same_a], TAGS)) == "a"


def test_a_gateway_without_selectors_matches_with_the_lowest_rank() -> None:
    catch_all = gw("catch-all")
    empty_selector = gw("empty", {})
    ranked = gw("ranked", {"kuma.io/service": "edge"})
    assert name(select_gateway([catch_all], TAGS)) == "catch-all"
    assert name(select_gateway([catch_all, empty_selector], TAGS)) == "catch-all"
    assert name(select_gateway([catch_all, ranked], TAGS)) == "ranked"


selectors = st.dictionaries(
    st.sampled_from(["kuma.io/service", "version", "team", "zone"]),
    st.sampled_from(["edge", "v2", "a", "*", "x"]),
    min_size=1,
)


@given(st.lists(selectors, min_size=1, max_size=6))
def test_the_winner_matches_and_no_loser_outranks_it(all_selectors: list[dict[str, Any]]) -> None:
    gateways = [gw(f"g{i}", sel) for i, sel in enumerate(all_selectors)]
    winner = select_gateway(gateways, TAGS)
    matching = [sel for sel in all_selectors if selector_matches(sel, TAGS)]
    if not matching:
        assert winner is None
        return
    assert winner is not None
    (winning_selector,) = [dict(s.match) for s in winner.spec.selectors]  # type: ignore[attr-defined]
    assert selector_matches(winning_selector, TAGS)
    assert all(rank(sel).compare(rank(winning_selector)) <= 0 for sel in matching)
