"""Dataplanes relayed from one zone, through the global, to every other zone; and the `.mesh` name trace."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from global_cp.trace_names import _why_not, name_sources, zone_verdict
from meshgate.delta import Entry, KindSnapshot, compute_delta
from meshgate.kds.envelope import to_wire
from meshgate.kds.ownership import synced_from_global, zone_accepts, zone_sends
from meshgate.resources import codec, registry
from meshgate.resources.descriptor import SyncDirection
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from tests.support.thing import thing


def zoned(name: str, zone: str, value: str = "v") -> Entry:
    r = thing(name, value, **({"kuma.io/origin": "zone", "kuma.io/zone": zone} if zone else {}))
    return Entry.of(to_wire(r), zone)


def test_a_zone_s_view_leaves_out_what_it_sent_and_keeps_revision_and_log() -> None:
    snap = KindSnapshot.of("Thing", [zoned("a", "zone-1"), zoned("b", "zone-2"), zoned("g", "")])
    view = snap.without_zone("zone-1")
    assert sorted(view.entries) == ["b.default", "g.default"]
    assert (view.revision, view.history) == (snap.revision, snap.history)
    assert snap.without_zone("zone-3") is snap  # nothing of zone-3's: the shared snapshot itself


def test_a_change_to_a_zone_s_own_resource_sends_that_zone_nothing() -> None:
    s1 = KindSnapshot.of("Thing", [zoned("a", "zone-1"), zoned("b", "zone-2")])
    s2 = s1.evolve({"a.default": zoned("a", "zone-1", "changed")})
    known = {"b.default": s1.entries["b.default"].version}  # zone-1 holds zone-2's b, never its own a
    d = compute_delta(s2.without_zone("zone-1"), known, since_revision=s1.revision)
    assert d.empty
    assert d.complete
    d2 = compute_delta(s2.without_zone("zone-2"), {"a.default": s1.entries["a.default"].version}, since_revision=1)
    assert [e.name for e in d2.upserts] == ["a.default"]


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([f"r{i}" for i in range(8)]),
        st.tuples(st.sampled_from(["zone-1", "zone-2", ""]), st.sampled_from(["x", "y"])),
        max_size=8,
    ),
    st.sampled_from(["zone-1", "zone-2"]),
)
def test_a_zone_converges_to_everything_but_its_own(content: dict[str, tuple[str, str]], zone: str) -> None:
    snap = KindSnapshot.of("Thing", [zoned(n, z, v) for n, (z, v) in content.items()])
    d = compute_delta(snap.without_zone(zone), {})
    assert {e.name for e in d.upserts} == {f"{n}.default" for n, (z, _) in content.items() if z != zone}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from([f"r{i}" for i in range(6)]),
            st.none() | st.tuples(st.sampled_from(["zone-1", "zone-2", ""]), st.sampled_from(["x", "y"])),
            max_size=6,
        ),
        max_size=6,
    )
)
def test_a_zone_s_view_after_any_changes_equals_filtering_every_entry(steps: list[dict[str, object]]) -> None:
    """The snapshot counts its entries per zone as it evolves, so `without_zone` need not scan them all."""
    snap = KindSnapshot("Thing")
    for step in steps:
        changes = {f"{n}.default": None if c is None else zoned(n, *c) for n, c in step.items()}  # type: ignore[misc]
        snap = snap.evolve(changes)
        for zone in ("zone-1", "zone-2", "zone-3"):
            view = snap.without_zone(zone)
            assert view.entries == {n: e for n, e in snap.entries.items() if e.zone != zone}
            assert (view is snap) == all(e.zone != zone for e in snap.entries.values())
            assert view.without_zone(zone) is view


def test_only_dataplanes_and_zone_ingresses_are_relayed_between_zones() -> None:
    relayed = {d.name for d in registry.KINDS if d.relayed_between_zones}
    # ZoneIngress: Kuma's ZoneToGlobalFlag | GlobalToAllButOriginalZoneFlag (zz_generated.resources.go:3153).
    assert relayed == {"Dataplane", "ZoneIngress"}
    dp = registry.get("Dataplane")
    assert dp.sync is SyncDirection.ZONE_TO_ALL
    assert dp.sends_to_zone()
    assert dp.sends_to_global()
    assert dp.writable_on_zone


def dataplane(name: str, service: str, labels: dict[str, str] | None = None, mesh: str = "default") -> Resource:
    return resource(factory.dataplane(name, service, mesh=mesh, labels=labels))


def from_zone(zone: str) -> dict[str, str]:
    return {"kuma.io/origin": "zone", "kuma.io/zone": zone, "kuma.io/display-name": "web-1"}


def test_what_a_zone_counts_as_its_own() -> None:
    mine = dataplane("web-1", "web", {"kuma.io/origin": "zone"})
    theirs = dataplane("web-1-abc", "web", from_zone("zone-2"))
    stamped_mine = dataplane("web-2", "web", from_zone("zone-1"))
    from_global = dataplane("g", "web", {"kuma.io/origin": "global"})
    assert [synced_from_global("zone-1", r) for r in (mine, theirs, stamped_mine, from_global)] == [
        False,
        True,
        False,
        True,
    ]
    assert [zone_sends("zone-1", r) for r in (mine, theirs, stamped_mine, from_global)] == [True, False, True, False]


def test_a_zone_accepts_other_zones_dataplanes_and_refuses_its_own_or_unlabelled_ones() -> None:
    assert zone_accepts("zone-1", dataplane("web-1-abc", "web", from_zone("zone-2"))) is None
    own = zone_accepts("zone-1", dataplane("web-1-abc", "web", from_zone("zone-1")))
    assert own is not None
    assert "own Dataplane came back" in own
    unlabelled = zone_accepts("zone-1", dataplane("x", "web", {"kuma.io/origin": "zone"}))
    assert unlabelled is not None
    assert "kuma.io/zone" in unlabelled
    mesh = codec.load({"type": "Mesh", "name": "m", "labels": {"kuma.io/origin": "zone", "kuma.io/zone": "z"}})
    refused = zone_accepts("zone-1", mesh)
    assert refused is not None
    assert 'must be "global"' in refused


def test_name_sources_find_every_resource_that_makes_a_name() -> None:
    dps = [
        dataplane("echo-1-aaa", "echo_default_svc_80", {**from_zone("zone-2"), "kuma.io/display-name": "echo-1"}),
        dataplane("echo-2", "echo_default_svc_80"),
        dataplane("web-1", "web"),
        dataplane("echo-x", "echo_default_svc_80", mesh="other"),
    ]
    gw = codec.load(
        {
            "type": "MeshGateway",
            "mesh": "default",
            "name": "edge",
            "selectors": [{"match": {"kuma.io/service": "edge"}}],
            "conf": {"listeners": [{"port": 8080, "protocol": "HTTP", "crossMesh": True}]},
        }
    )
    found = name_sources("Echo.Default.Svc.80.mesh.", [d for d in dps if d.meta.mesh == "default"], [gw])
    assert [(s.kind, s.name, s.global_name, s.zone, s.port) for s in found] == [
        ("Dataplane", "echo-2", "echo-2", "", 80),
        ("Dataplane", "echo-1", "echo-1-aaa", "zone-2", 80),
    ]
    assert [(s.kind, s.name, s.port, s.detail) for s in name_sources("internal.edge.default.mesh", dps, [gw])] == [
        ("MeshGateway", "edge", 8080, "crossMesh listener :8080")
    ]
    assert [s.mesh for s in name_sources("echo_default_svc_80.mesh", dps, [])] == ["default", "default", "other"]
    assert name_sources("web.other.mesh", dps, [gw]) == []


def test_a_zone_has_a_name_when_any_source_reached_it() -> None:
    assert zone_verdict([("pending", "not sent yet"), ("in sync", "holds it")]) == ("in sync", "holds it")
    assert zone_verdict([("rejected", "bad"), ("origin", "made here")]) == ("origin", "made here")
    assert zone_verdict([("offline", "x"), ("rejected", "bad")]) == ("rejected", "bad")
    assert zone_verdict([])[0] == "absent"


def test_an_unknown_name_says_what_would_make_it() -> None:
    assert _why_not("echo.default.svc.80.mesh", "mesh") == (
        "no Dataplane inbound with kuma.io/service: echo.default.svc.80 or kuma.io/service: echo_default_svc_80"
        " and no crossMesh MeshGateway listener makes echo.default.svc.80.mesh"
    )
    assert _why_not("example.com", "mesh") == "example.com is not under the .mesh domain"
