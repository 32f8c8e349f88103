"""The sans-IO delta ADS configuration: subscriptions, ordering, forced endpoints, ACK/NACK (the engine's table
and properties under both configurations: tests/unit/test_delta_engine.py)."""

from __future__ import annotations

import pytest
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from meshgate.delta import Rejected
from meshgate.transport.ads_server import SnapshotStore
from meshgate.xds.ads import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    AdsStream,
    ProtocolError,
    ProxyId,
    Snapshot,
    Subscription,
)
from meshgate.xds.ads_registry import ProxyRegistry
from tests.support.envoy_config import cluster, http_listener, route_config, snapshot

PROXY = ProxyId("default", "gw")


def req(
    type_url: str,
    *,
    subscribe: tuple[str, ...] = (),
    unsubscribe: tuple[str, ...] = (),
    nonce: str = "",
    error: str = "",
    initial: dict[str, str] | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    r = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=subscribe,
        resource_names_unsubscribe=unsubscribe,
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
    if error:
        r.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
    return r


def snap(
    clusters: dict[str, tuple[int, ...]] | None = None,
    routes: dict[str, str] | None = None,
    listeners: tuple[str, ...] = ("http",),
) -> Snapshot:
    clusters = {"a": (1001,)} if clusters is None else clusters
    routes = {"/": "a"} if routes is None else routes
    return Snapshot.of(
        snapshot(
            clusters,
            {n: http_listener(n, 8080 + i, "routes") for i, n in enumerate(listeners)},
            {"routes": route_config("routes", routes)},
        )
    )


def names(resp: discovery_pb2.DeltaDiscoveryResponse) -> list[str]:
    return [r.name for r in resp.resources]


def by_type(resps: list[discovery_pb2.DeltaDiscoveryResponse]) -> dict[str, discovery_pb2.DeltaDiscoveryResponse]:
    out = {r.type_url: r for r in resps}
    assert len(out) == len(resps), "one response per type at most"
    return out


def ack(stream: AdsStream, resp: discovery_pb2.DeltaDiscoveryResponse, now: float = 1.0) -> None:
    stream.receive(req(resp.type_url, nonce=resp.nonce), now)


def converged(s: Snapshot) -> AdsStream:
    """A stream that went through Envoy's usual start: CDS, EDS, LDS, RDS, all ACKed."""
    stream = AdsStream(PROXY)
    stream.receive(req(CLUSTER), 0.0)
    (cds,) = stream.next_responses(s, 0.0)
    stream.receive(req(ENDPOINT, subscribe=tuple(names(cds))), 0.0)
    ack(stream, cds)
    (eds,) = stream.next_responses(s, 0.0)
    ack(stream, eds)
    stream.receive(req(LISTENER), 0.0)
    (lds,) = stream.next_responses(s, 0.0)
    stream.receive(req(ROUTE, subscribe=("routes",)), 0.0)
    ack(stream, lds)
    (rds,) = stream.next_responses(s, 0.0)
    ack(stream, rds)
    assert stream.next_responses(s, 0.0) == []
    return stream


def test_proxy_id_is_mesh_dot_name_and_the_name_may_contain_dots() -> None:
    assert ProxyId.parse("default.gw-1") == ProxyId("default", "gw-1")
    assert ProxyId.parse("m.gw.kuma-system") == ProxyId("m", "gw.kuma-system")
    assert str(ProxyId("m", "a.b")) == "m.a.b"
    for bad in ("", "nodot", "x.", "."):
        with pytest.raises(ValueError, match="mesh"):
            ProxyId.parse(bad)
    # An empty mesh is a ZoneIngress's node.id (Kuma's ParseProxyIdFromString, pkg/core/xds/types.go:364).
    assert ProxyId.parse(".x") == ProxyId("", "x")
    assert ProxyId.parse(".x").is_zone_proxy
    assert not ProxyId.parse("m.x").is_zone_proxy


def test_snapshot_refuses_a_message_filed_under_another_type() -> None:
    with pytest.raises(ValueError, match="filed under"):
        Snapshot.of({LISTENER: {"a": cluster("a")}})


def test_versions_are_content_hashes() -> None:
    one, two = snap(), snap()
    assert one.versions(CLUSTER) == two.versions(CLUSTER)
    assert snap(clusters={"a": (1002,)}).versions(ENDPOINT) != one.versions(ENDPOINT)
    assert one.eds_names == {"a": "a"}


def test_wildcard_first_response_goes_out_even_when_empty() -> None:
    stream = AdsStream(PROXY)
    stream.receive(req(CLUSTER), 0.0)
    (resp,) = stream.next_responses(Snapshot.of({}), 0.0)
    assert resp.type_url == CLUSTER
    assert not resp.resources
    ack(stream, resp)
    assert stream.next_responses(Snapshot.of({}), 0.0) == []


def test_no_snapshot_sends_nothing() -> None:
    stream = AdsStream(PROXY)
    stream.receive(req(CLUSTER), 0.0)
    assert stream.next_responses(None, 0.0) == []


def test_explicit_subscriptions_get_only_their_names() -> None:
    s = snap(clusters={"a": (1,), "b": (2,)})
    stream = AdsStream(PROXY)
    stream.receive(req(ENDPOINT, subscribe=("b",)), 0.0)
    assert stream.types[ENDPOINT].subscription == Subscription(False, frozenset({"b"}))
    (resp,) = stream.next_responses(s, 0.0)
    assert names(resp) == ["b"]
    stream.receive(req(ENDPOINT, unsubscribe=("b",), subscribe=("a",), nonce=resp.nonce), 0.0)
    assert stream.types[ENDPOINT].confirmed == {}
    (resp,) = stream.next_responses(s, 0.0)
    assert names(resp) == ["a"]
    assert not resp.removed_resources, "an unsubscribed name is not removed: Envoy dropped it itself"


def test_star_subscribes_to_everything_and_unsubscribing_it_stops() -> None:
    sub = Subscription().apply(["*", "x"], [])
    assert sub.wildcard
    assert sub.covers("anything")
    sub = sub.apply([], ["*"])
    assert not sub.wildcard
    assert sub.covers("x")
    assert not sub.covers("y")


def test_resubscribing_a_held_name_sends_it_again() -> None:
    s = snap()
    stream = converged(s)
    stream.receive(req(ENDPOINT, subscribe=("a",)), 0.0)
    (resp,) = stream.next_responses(s, 0.0)
    assert names(resp) == ["a"]


def test_listeners_and_routes_wait_for_clusters_to_be_acked() -> None:
    s = snap()
    stream = converged(s)
    new = snap(clusters={"a": (1001,), "c": (3,)}, routes={"/": "c"}, listeners=("http", "more"))
    first = by_type(stream.next_responses(new, 1.0))
    assert set(first) == {CLUSTER}, "LDS and RDS wait while CDS is in flight"
    assert names(first[CLUSTER]) == ["c"]
    ack(stream, first[CLUSTER])
    second = by_type(stream.next_responses(new, 2.0))
    assert set(second) == {LISTENER, ROUTE}
    assert names(second[LISTENER]) == ["more"]
    assert names(second[ROUTE]) == ["routes"]


def test_a_nacked_cluster_does_not_hold_listeners_forever() -> None:
    s = snap()
    stream = converged(s)
    new = snap(clusters={"a": (1001,), "c": (3,)}, listeners=("http", "more"))
    (cds,) = stream.next_responses(new, 1.0)
    stream.receive(req(CLUSTER, nonce=cds.nonce, error="Error adding/updating cluster(s) c: nope"), 1.0)
    assert stream.types[CLUSTER].rejected == {
        "c": (new.versions(CLUSTER)["c"], "Error adding/updating cluster(s) c: nope")
    }
    assert names(by_type(stream.next_responses(new, 2.0))[LISTENER]) == ["more"]


def test_cluster_removals_wait_for_listeners_and_routes() -> None:
    s = snap(clusters={"a": (1,), "b": (2,)}, routes={"/": "b"})
    stream = converged(s)
    new = snap(clusters={"a": (1,)}, routes={"/": "a"})
    first = by_type(stream.next_responses(new, 1.0))
    assert set(first) == {ROUTE}, "the route that names b goes first; b and its endpoints stay until it is ACKed"
    ack(stream, first[ROUTE])
    second = by_type(stream.next_responses(new, 2.0))
    assert list(second[CLUSTER].removed_resources) == ["b"]
    assert list(second[ENDPOINT].removed_resources) == ["b"]


def test_a_changed_cluster_gets_its_unchanged_endpoints_again() -> None:
    s = snap()
    stream = converged(s)
    resources = snapshot(
        {"a": (1001,)}, {"http": http_listener("http", 8080, "routes")}, {"routes": route_config("routes", {"/": "a"})}
    )
    resources[CLUSTER]["a"] = cluster("a", connect_timeout="9s")
    new = Snapshot.of(resources)
    assert new.versions(ENDPOINT) == s.versions(ENDPOINT)
    out = by_type(stream.next_responses(new, 1.0))
    assert set(out) == {CLUSTER, ENDPOINT}
    assert names(out[ENDPOINT]) == ["a"]
    assert [r.type_url for r in stream.next_responses(new, 1.0)] == []


def test_forced_endpoints_wait_for_the_in_flight_eds_response() -> None:
    s = snap()
    stream = converged(s)
    moved = snap(clusters={"a": (2002,)})
    (eds,) = stream.next_responses(moved, 1.0)
    assert eds.type_url == ENDPOINT
    resources = snapshot(
        {"a": (2002,)}, {"http": http_listener("http", 8080, "routes")}, {"routes": route_config("routes", {"/": "a"})}
    )
    resources[CLUSTER]["a"] = cluster("a", connect_timeout="9s")
    new = Snapshot.of(resources)
    (cds,) = stream.next_responses(new, 1.0)
    assert cds.type_url == CLUSTER
    ack(stream, eds)
    (again,) = stream.next_responses(new, 1.0)
    assert again.type_url == ENDPOINT
    assert names(again) == ["a"]


def test_nack_records_the_error_and_the_rejected_names_and_does_not_resend() -> None:
    s = snap()
    stream = converged(s)
    new = snap(listeners=("http", "bad", "fine"))
    (lds,) = stream.next_responses(new, 1.0)
    assert names(lds) == ["bad", "fine"]
    error = "Error adding/updating listener(s) bad: malformed IP address: 999.1.1.1"
    (event,) = stream.receive(req(LISTENER, nonce=lds.nonce, error=error), 1.5)
    assert isinstance(event, Rejected)
    assert list(event.names) == ["bad"]
    ts = stream.types[LISTENER]
    assert ts.stats.nacks == 1
    assert ts.stats.last_nack is not None
    assert list(ts.stats.last_nack.names) == ["bad"]
    assert ts.stats.last_nack.error == error
    assert ts.stats.last_ack_latency == 0.5
    assert "fine" in ts.confirmed
    assert "bad" not in ts.confirmed
    assert stream.next_responses(new, 2.0) == [], "the same content is not sent again only to be rejected again"
    described = stream.describe()["Listener"]
    assert described["nacked"] == 1
    assert described["rejected"]["bad"]["error"] == error
    assert described["lastNack"]["rejected"] == ["bad"]
    # Removing it from the snapshot removes it from Envoy (which never held it) and clears the record.
    (lds,) = stream.next_responses(snap(listeners=("http", "fine")), 3.0)
    assert list(lds.removed_resources) == ["bad"]
    ack(stream, lds)
    assert stream.types[LISTENER].rejected == {}


def test_a_nack_naming_nothing_rejects_the_whole_response() -> None:
    s = snap()
    stream = converged(s)
    (lds,) = stream.next_responses(snap(listeners=("x", "y")), 1.0)
    stream.receive(req(LISTENER, nonce=lds.nonce, error="something went wrong"), 1.0)
    assert set(stream.types[LISTENER].rejected) == {"x", "y"}


def test_reconnect_with_initial_versions_gets_only_what_changed() -> None:
    s = snap(clusters={"a": (1,), "b": (2,)})
    stream = AdsStream(PROXY)
    held = dict(s.versions(CLUSTER), gone="old")
    stream.receive(req(CLUSTER, initial=held), 0.0)
    (cds,) = stream.next_responses(s, 0.0)
    assert names(cds) == []
    assert list(cds.removed_resources) == ["gone"]
    stream.receive(req(ENDPOINT, subscribe=("a", "b"), initial={"a": s.versions(ENDPOINT)["a"], "b": "stale"}), 0.0)
    ack(stream, cds)
    (eds,) = stream.next_responses(s, 0.0)
    assert names(eds) == ["b"]


def test_an_ack_for_another_nonce_is_a_protocol_error() -> None:
    stream = AdsStream(PROXY)
    stream.receive(req(CLUSTER), 0.0)
    stream.next_responses(snap(), 0.0)
    with pytest.raises(ProtocolError, match="nonce '99'"):
        stream.receive(req(CLUSTER, nonce="99"), 0.0)
    with pytest.raises(ProtocolError, match="type_url"):
        stream.receive(req(""), 0.0)


def test_registry_keeps_the_last_stream_of_a_disconnected_proxy() -> None:
    registry = ProxyRegistry()
    stream = AdsStream(PROXY)
    rec = registry.open(stream, "ipv4:127.0.0.1:1", 10.0)
    record = registry.get(PROXY)
    assert record is not None
    assert record.connected
    registry.close(rec, 11.0, "boom")
    view = registry.describe()["proxies"][0]
    assert view["proxy"] == "default.gw"
    assert view["connected"] is False
    assert view["last"]["error"] == "boom"
    assert view["connects"] == 1


def test_the_generators_snapshot_plugs_in_with_the_same_versions() -> None:
    """`meshgate.xds.generate` returns a `Snapshot`; the ADS store takes it as is, and both hash alike."""
    resources = snapshot({"a": (1,)}, {"http": http_listener("http", 1, "r")}, {"r": route_config("r", {"/": "a"})})
    generated = Snapshot.of(resources)
    store = SnapshotStore()
    prepared = store.set(PROXY, generated)
    assert store.snapshot(PROXY) is prepared
    for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
        assert prepared.versions(type_url) == dict(generated.versions(type_url))
