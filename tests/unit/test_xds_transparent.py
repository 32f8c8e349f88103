"""`generate` for a Dataplane with `networking.transparentProxying` (meshgate.xds.transparent; Kuma 2.7's
TransparentProxyGenerator): the capture listeners, the passthrough clusters, and every other listener of the
proxy unbound so that the original-destination hand-off reaches it."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2

from meshgate.resources.model import Resource
from meshgate.xds import CLUSTER, LISTENER, MeshContext, Snapshot, VipOutbound, generate
from tests.unit.test_xds_generate import ENDPOINTS, filters, load, tcp_clusters

SIDECAR = """
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.9
  inbound:
  - port: 8080
    tags: {{kuma.io/service: web, kuma.io/protocol: http}}
  outbound:
  - port: 10001
    tags: {{kuma.io/service: db}}
{tp}
"""
TP = """  transparentProxying:
    redirectPortInbound: 15006
    redirectPortOutbound: 15001
"""
VIPS = (VipOutbound("240.0.0.2", 80, "backend"),)


def mesh(passthrough: bool | None) -> Resource:
    networking = "" if passthrough is None else f"networking: {{outbound: {{passthrough: {str(passthrough).lower()}}}}}"
    (resource,) = load(f"type: Mesh\nname: default\n{networking}\n")
    return resource


def run(tp: str = TP, *, mesh_resource: Resource | None = None) -> Snapshot:
    resources = load("---".join([SIDECAR.format(tp=tp), ENDPOINTS]))
    ctx = MeshContext.build(
        "default",
        dataplanes=[r for r in resources if r.kind == "Dataplane"],
        zone="zone-1",
        vips=VIPS,
        mesh_resource=mesh_resource,
    )
    snap = generate(resources[0], ctx)
    # (test_xds_generate.assert_valid takes an inbound's inline route configuration for a missing RDS one.)
    for listener in snap[LISTENER].values():
        assert listener.FindInitializationErrors() == []  # type: ignore[attr-defined]
    return snap


def bound(listener: Any) -> tuple[str, int]:
    return listener.address.socket_address.address, listener.address.socket_address.port_value


def test_capture_listeners_hand_off_by_original_destination() -> None:
    snap = run()
    out = snap[LISTENER]["outbound:passthrough:ipv4"]
    assert bound(out) == ("0.0.0.0", 15001)
    assert out.use_original_dst.value is True  # type: ignore[attr-defined]
    assert not out.HasField("bind_to_port")  # it binds: the one port the iptables rules redirect to
    assert out.traffic_direction == base_pb2.OUTBOUND  # type: ignore[attr-defined]
    assert tcp_clusters(filters(out)["envoy.filters.network.tcp_proxy"]) == ["outbound:passthrough:ipv4"]
    inbound = snap[LISTENER]["inbound:passthrough:ipv4"]
    assert bound(inbound) == ("0.0.0.0", 15006)
    assert inbound.use_original_dst.value is True  # type: ignore[attr-defined]
    assert inbound.traffic_direction == base_pb2.INBOUND  # type: ignore[attr-defined]
    assert tcp_clusters(filters(inbound)["envoy.filters.network.tcp_proxy"]) == ["inbound:passthrough:ipv4"]
    assert snap.problems == ()


def test_passthrough_clusters_are_original_dst_and_inbound_binds_127_0_0_6() -> None:
    snap = run()
    for name in ("outbound:passthrough:ipv4", "inbound:passthrough:ipv4"):
        cluster: Any = snap[CLUSTER][name]
        assert cluster.type == cluster_pb2.Cluster.ORIGINAL_DST
        assert cluster.lb_policy == cluster_pb2.Cluster.CLUSTER_PROVIDED
        assert cluster.connect_timeout.seconds == 5
        assert cluster.alt_stat_name == name.replace(":", "_")
    assert not snap[CLUSTER]["outbound:passthrough:ipv4"].HasField("upstream_bind_config")
    source = snap[CLUSTER]["inbound:passthrough:ipv4"].upstream_bind_config.source_address  # type: ignore[attr-defined]
    assert (source.address, source.port_value) == ("127.0.0.6", 0)


def test_every_other_listener_binds_no_port() -> None:
    snap = run()
    own = {"inbound:10.0.0.9:8080", "outbound:127.0.0.1:10001", "outbound:240.0.0.2:80"}
    assert own < set(snap[LISTENER])
    for name in own:
        listener: Any = snap[LISTENER][name]
        assert listener.bind_to_port.value is False, name
        assert bound(listener) == (name.split(":")[1], int(name.split(":")[2]))  # the hand-off matches on it


def test_without_transparent_proxying_nothing_changes() -> None:
    snap = run("")
    assert not any("passthrough" in name for name in (*snap[LISTENER], *snap[CLUSTER]))
    assert all(not listener.HasField("bind_to_port") for listener in snap[LISTENER].values())


def test_a_vip_no_interface_holds_is_a_listener_for_transparent_proxies_only() -> None:
    """Kuma gives VIP outbounds to transparent proxies only: without the capture, Envoy could not bind
    240.0.0.2:80 and would NACK every listener of the update. A loopback VIP any proxy can bind stays."""
    assert "outbound:240.0.0.2:80" in run()[LISTENER]
    assert "outbound:240.0.0.2:80" not in run("")[LISTENER]
    resources = load("---".join([SIDECAR.format(tp=""), ENDPOINTS]))
    loopback = (VipOutbound("127.1.0.2", 80, "backend"),)
    ctx = MeshContext.build("default", zone="zone-1", dataplanes=resources, vips=loopback)
    assert "outbound:127.1.0.2:80" in generate(resources[0], ctx)[LISTENER]


def test_mesh_passthrough_off_drops_only_the_outbound_passthrough_cluster() -> None:
    off = run(mesh_resource=mesh(False))
    assert "outbound:passthrough:ipv4" not in off[CLUSTER]
    assert "outbound:passthrough:ipv4" in off[LISTENER]  # still names it: Envoy closes such connections
    assert "inbound:passthrough:ipv4" in off[CLUSTER]
    for on in (run(mesh_resource=mesh(True)), run(mesh_resource=mesh(None))):
        assert "outbound:passthrough:ipv4" in on[CLUSTER]


def test_ipv6_follows_kumas_ip_family_rules() -> None:
    assert "outbound:passthrough:ipv6" not in run()[LISTENER]  # mode unspecified, no v6 port
    dual = run(TP + "    ipFamilyMode: DualStack\n")
    assert bound(dual[LISTENER]["outbound:passthrough:ipv6"]) == ("::", 15001)
    assert bound(dual[LISTENER]["inbound:passthrough:ipv6"]) == ("::", 15006)
    source = dual[CLUSTER]["inbound:passthrough:ipv6"].upstream_bind_config.source_address  # type: ignore[attr-defined]
    assert source.address == "::6"
    own = run(TP + "    redirectPortInboundV6: 15016\n")
    assert bound(own[LISTENER]["inbound:passthrough:ipv6"]) == ("::", 15016)
    v4 = run(TP + "    ipFamilyMode: IPv4\n    redirectPortInboundV6: 15016\n")
    assert "inbound:passthrough:ipv6" not in v4[LISTENER]
