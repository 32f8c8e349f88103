"""Tag selectors and gateway selection (meshgate.resources.selectors): Kuma's SelectDataplanePolicyWithMatcher.

The same selection serves a MeshGatewayInstance's proxy tags (`select_gateway`) and a builtin gateway
Dataplane (`select_gateway_for`: its mesh, its inbounds' and gateway tags)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshgate.api.mesh.v1alpha1.dataplane_pb2 import Dataplane
from meshgate.api.mesh.v1alpha1.gateway_pb2 import MeshGateway
from meshgate.resources import codec
from meshgate.resources.model import Meta, Resource
from meshgate.resources.selectors import Rank, rank, select_gateway, select_gateway_for, selector_matches

TAGS = {"kuma.io/service": "edge", "version": "v2", "team": "a"}


def gw(name: str, *selectors: dict[str, str], created: int | None = None) -> Resource:
    spec = MeshGateway()
    for match in selectors:
        spec.selectors.add().match.update(match)
    when = datetime(2024, 1, created, tzinfo=UTC) if created else None
    return Resource("MeshGateway", Meta(name=name, mesh="default", creation_time=when), spec)


def name(resource: Resource | None) -> str | None:
    return resource.meta.name if resource else None


def test_selector_matching() -> None:
    assert selector_matches({"kuma.io/service": "edge"}, TAGS)
    assert selector_matches({"version": "*"}, TAGS)
    assert not selector_matches({"version": "v1"}, TAGS)
    assert not selector_matches({"zone": "*"}, TAGS)
    assert selector_matches({}, TAGS)


def test_rank_counts_tags_then_exact_ones() -> None:
    assert rank({"a": "1", "b": "*"}) == Rank(tags=2, exact=1)
    assert rank({"a": "1", "b": "2"}) > rank({"a": "1", "b": "*"})
    assert rank({"a": "*", "b": "*", "c": "1"}) > rank({"a": "1", "b": "2"})  # more tags beats more exact tags
    assert rank({"a": "*", "b": "1"}) == rank({"a": "1", "b": "*"})


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
    assert all(rank(sel) <= rank(winning_selector) for sel in matching)


# A builtin gateway Dataplane: selectors match its gateway tags or any inbound's tags, in its own mesh.


def one(text: str) -> Resource:
    (doc,) = codec.load_documents(text)
    return codec.decode(doc)


DATAPLANE = one("""
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags: {kuma.io/service: edge, env: prod}
""")


def yaml_gateway(name: str, selectors: str, *, created: int = 0) -> Resource:
    doc = one(f"""
type: MeshGateway
mesh: default
name: {name}
selectors: {selectors}
conf:
  listeners:
  - {{port: 8080, protocol: HTTP}}
""")
    return doc.with_meta(creation_time=datetime(2024, 1, 1, 0, 0, created, tzinfo=UTC))


@pytest.mark.parametrize(
    ("gateways", "winner"),
    [
        # More tags matched wins.
        ([("one-tag", "[{match: {kuma.io/service: edge}}]", 0),
          ("two-tags", "[{match: {kuma.io/service: edge, env: prod}}]", 0)], "two-tags"),
        # Same count: more exact (non-*) values win.
        ([("wild", "[{match: {kuma.io/service: edge, env: '*'}}]", 5),
          ("exact", "[{match: {kuma.io/service: edge, env: prod}}]", 0)], "exact"),
        # Same rank: the newest wins.
        ([("old", "[{match: {kuma.io/service: edge}}]", 0),
          ("new", "[{match: {kuma.io/service: edge}}]", 9)], "new"),
        # Same rank and time: the first by name.
        ([("b", "[{match: {kuma.io/service: edge}}]", 0),
          ("a", "[{match: {kuma.io/service: edge}}]", 0)], "a"),
        # A selector that does not match is no candidate, however specific.
        ([("other", "[{match: {kuma.io/service: edge, env: dev}}]", 9),
          ("mine", "[{match: {kuma.io/service: '*'}}]", 0)], "mine"),
        # Any matching selector of a gateway counts, with its own rank.
        ([("multi", "[{match: {kuma.io/service: x}}, {match: {kuma.io/service: edge, env: prod}}]", 0),
          ("single", "[{match: {kuma.io/service: edge}}]", 9)], "multi"),
    ],
)  # fmt: skip
def test_select_gateway_for_a_dataplane_best_match(gateways: list[tuple[str, str, int]], winner: str) -> None:
    candidates = [yaml_gateway(name, sel, created=t) for name, sel, t in gateways]
    chosen = select_gateway_for(DATAPLANE, candidates)
    assert chosen is not None
    assert chosen.meta.name == winner


def test_select_gateway_for_a_dataplane_none_and_other_meshes() -> None:
    elsewhere = yaml_gateway("x", "[{match: {kuma.io/service: edge}}]").with_meta(mesh="other")
    nope = yaml_gateway("y", "[{match: {kuma.io/service: nope}}]")
    assert select_gateway_for(DATAPLANE, [elsewhere, nope]) is None


def test_any_inbound_of_a_dataplane_is_matched_too() -> None:
    """Kuma's `Dataplane.Matches`: a selector matches when it matches the gateway tags or any inbound's tags."""
    with_inbound = one("""
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 192.168.0.1
  inbound:
  - {port: 9000, tags: {kuma.io/service: side, team: a}}
  gateway:
    type: BUILTIN
    tags: {kuma.io/service: edge, env: prod}
""")
    by_inbound = yaml_gateway("by-inbound", "[{match: {kuma.io/service: side, team: a}}]")
    by_gateway_tags = yaml_gateway("by-gateway-tags", "[{match: {kuma.io/service: edge}}]")
    assert name(select_gateway_for(with_inbound, [by_gateway_tags, by_inbound])) == "by-inbound"
    assert name(select_gateway_for(DATAPLANE, [by_gateway_tags, by_inbound])) == "by-gateway-tags"


@given(st.lists(selectors, min_size=1, max_size=6))
def test_a_dataplane_and_its_gateway_tags_select_the_same_gateway(all_selectors: list[dict[str, Any]]) -> None:
    """The two forms are one rule: a gateway Dataplane without inbounds selects as its gateway tags do."""
    spec = Dataplane()
    spec.networking.gateway.type = Dataplane.Networking.Gateway.BUILTIN
    spec.networking.gateway.tags.update(TAGS)
    dataplane = Resource("Dataplane", Meta(name="gw-1", mesh="default"), spec)
    gateways = [gw(f"g{i}", sel) for i, sel in enumerate(all_selectors)]
    assert name(select_gateway_for(dataplane, gateways)) == name(select_gateway(gateways, TAGS))
