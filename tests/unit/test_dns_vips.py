"""VIP allocation: stability, lowest-first reuse, no duplicates, per-mesh isolation, exhaustion (Hypothesis)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from meshgate.dns.vips import allocate, host_range

# A /28 has 14 hosts: small enough that Hypothesis reaches exhaustion and reuse often.
SMALL = IPv4Network("10.0.0.0/28")
NAMES = st.sets(st.sampled_from([f"svc-{i}.mesh" for i in range(24)]), max_size=20)


def fill(names: set[str], cidr: IPv4Network = SMALL, mesh: str = "default") -> dict[str, IPv4Address]:
    return dict(allocate(mesh, cidr, {}, names).vips)


@settings(max_examples=300)
@given(before=NAMES, after=NAMES)
def test_a_name_that_stays_keeps_its_vip(before: set[str], after: set[str]) -> None:
    """Stability: whatever comes and goes, a name present in both states has the same VIP."""
    first = fill(before)
    second = allocate("default", SMALL, first, after).vips
    for name in after & first.keys():
        assert second[name] == first[name]


@settings(max_examples=300)
@given(before=NAMES, after=NAMES)
def test_no_two_names_share_a_vip_and_all_are_hosts(before: set[str], after: set[str]) -> None:
    second = allocate("default", SMALL, fill(before), after).vips
    assert len(set(second.values())) == len(second)
    hosts = host_range(SMALL)
    assert all(int(vip) in hosts for vip in second.values())
    assert set(second) <= after


@settings(max_examples=300)
@given(before=NAMES, after=NAMES)
def test_new_names_take_the_lowest_free_addresses(before: set[str], after: set[str]) -> None:
    """Lowest-first reuse: the new names, in sorted order, get the lowest addresses nobody kept."""
    first = fill(before)
    result = allocate("default", SMALL, first, after)
    kept = {first[n] for n in after & first.keys()}
    free = [IPv4Address(a) for a in host_range(SMALL) if IPv4Address(a) not in kept]
    new = sorted(after - first.keys())
    expected = dict(zip(new, free, strict=False))
    assert {n: result.vips[n] for n in new if n in result.vips} == expected


@settings(max_examples=200)
@given(before=NAMES, after=NAMES)
def test_exhaustion_names_the_mesh_and_keeps_existing(before: set[str], after: set[str]) -> None:
    first = fill(before, mesh="payments")
    result = allocate("payments", SMALL, first, after)
    hosts = len(host_range(SMALL))
    if len(after) <= hosts:
        assert result.error is None
        assert set(result.vips) == after
    else:
        assert result.error is not None
        assert 'mesh "payments"' in str(result.error)
        assert len(result.vips) == hosts
        assert set(result.error.names) == after - set(result.vips)
        for name in after & first.keys():
            assert result.vips[name] == first[name]


@settings(max_examples=200)
@given(a=NAMES, b_before=NAMES, b_after=NAMES)
def test_meshes_are_isolated(a: set[str], b_before: set[str], b_after: set[str]) -> None:
    """One mesh's allocations depend on that mesh's inputs only."""
    mesh_a = fill(a, mesh="a")
    fill(b_before, mesh="b")
    fill(b_after, mesh="b")
    assert fill(a, mesh="a") == mesh_a


def test_network_and_broadcast_are_never_used() -> None:
    vips = fill({f"n{i}" for i in range(20)}, IPv4Network("10.0.0.0/29"))
    assert sorted(str(v) for v in vips.values()) == [f"10.0.0.{i}" for i in range(1, 7)]


def test_a_freed_address_is_reused_first() -> None:
    first = fill({"a", "b", "c"})
    assert [str(first[n]) for n in "abc"] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    without_b = allocate("default", SMALL, first, {"a", "c"}).vips
    again = allocate("default", SMALL, without_b, {"a", "c", "d"}).vips
    assert str(again["d"]) == "10.0.0.2"


def test_an_address_outside_a_changed_cidr_is_allocated_again() -> None:
    moved = allocate("default", IPv4Network("240.0.0.0/4"), {"a": IPv4Address("10.0.0.5")}, {"a"}).vips
    assert str(moved["a"]) == "240.0.0.1"


def test_ten_thousand_names_fit_the_default_cidr_quickly() -> None:
    names = {f"svc-{i}" for i in range(10_000)}
    result = allocate("default", IPv4Network("240.0.0.0/4"), {}, names)
    assert result.error is None
    assert len(set(result.vips.values())) == 10_000
