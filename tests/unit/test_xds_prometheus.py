"""The Prometheus endpoint `generate` adds for a Mesh with an enabled prometheus backend (meshgate.xds.prometheus),
as Kuma 2.7's PrometheusEndpointGenerator: listener, route rewrite, hijacker cluster, TLS and port conflicts.
The real path (Envoy, meshgate-dp's socket, a scrape) is tests/e2e/test_dp_metrics.py."""

from __future__ import annotations

import json
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshgate.mtls import LeafCache, generate_ca
from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.xds import CLUSTER, LISTENER, MeshContext, Snapshot, generate
from meshgate.xds.crossmesh import CrossMesh
from meshgate.xds.prometheus import (
    AGGREGATE_HEADER,
    HIJACKER_CLUSTER,
    PROMETHEUS_LISTENER,
    prometheus_config,
    stats_path,
)

SOCKET = "/run/dp/kuma-mh-web-1-default.sock"


def metrics(conf: dict[str, Any] | None = None, *, enabled: str = "prom-1", kind: str = "prometheus") -> dict[str, Any]:
    backend: dict[str, Any] = {"name": "prom-1", "type": kind}
    if conf is not None:
        backend["conf"] = conf
    return {"enabledBackend": enabled, "backends": [backend]}


def mesh(metrics_doc: dict[str, Any] | None, *, mtls: bool = False) -> Resource:
    """Decoded only: some cases are Meshes the validator refuses (a store written before it had one)."""
    doc = factory.mtls_mesh() if mtls else factory.mesh()
    if metrics_doc is not None:
        doc["metrics"] = metrics_doc
    return factory.resource(doc, check=False)


def sidecar(*, port: int = 8080, service_port: int = 18080, dp_metrics: dict[str, Any] | None = None) -> Resource:
    tags = {"kuma.io/service": "web", "kuma.io/protocol": "http"}
    inbound: dict[str, Any] = {"port": port, "servicePort": service_port, "tags": tags}
    doc: dict[str, Any] = {
        "type": "Dataplane",
        "mesh": "default",
        "name": "web-1",
        "networking": {"address": "10.0.0.1", "inbound": [inbound]},
    }
    if dp_metrics is not None:
        doc["metrics"] = dp_metrics
    return codec.load(doc)


def run(mesh_resource: Resource, proxy: Resource | None = None, *, socket: str = SOCKET) -> Snapshot:
    proxy = proxy if proxy is not None else sidecar()
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=mesh_resource,
        dataplanes=[proxy],
        cross_mesh=CrossMesh({"default": generate_ca("default")}, zone="zone-1", leaves=LeafCache()),
    )
    return generate(proxy, ctx, metrics_socket=socket)


def endpoint(snap: Snapshot) -> tuple[listener_pb2.Listener, cluster_pb2.Cluster]:
    listener = snap[LISTENER][PROMETHEUS_LISTENER]
    cluster = snap[CLUSTER][HIJACKER_CLUSTER]
    assert isinstance(listener, listener_pb2.Listener)
    assert isinstance(cluster, cluster_pb2.Cluster)
    return listener, cluster


def hcm(chain: Any) -> hcm_pb2.HttpConnectionManager:
    out = hcm_pb2.HttpConnectionManager()
    (network_filter,) = chain.filters
    network_filter.typed_config.Unpack(out)
    return out


@pytest.mark.parametrize(
    "metrics_doc",
    [None, metrics(enabled=""), metrics(enabled="prom-2"), metrics(kind="datadog")],
    ids=["no metrics", "none enabled", "unknown enabled", "not prometheus"],
)
def test_no_enabled_prometheus_backend_means_no_endpoint(metrics_doc: dict[str, Any] | None) -> None:
    snap = run(mesh(metrics_doc))
    assert PROMETHEUS_LISTENER not in snap[LISTENER]
    assert HIJACKER_CLUSTER not in snap[CLUSTER]
    assert not snap.problems


def test_kumas_defaults_port_5670_path_metrics_to_the_declared_socket() -> None:
    snap = run(mesh(metrics()))
    listener, cluster = endpoint(snap)
    assert listener.address.socket_address.address == "10.0.0.1"
    assert listener.address.socket_address.port_value == 5670
    (chain,) = listener.filter_chains
    assert not chain.HasField("transport_socket")
    manager = hcm(chain)
    assert manager.stat_prefix == "kuma_metrics_prometheus"
    (vhost,) = manager.route_config.virtual_hosts
    (route,) = vhost.routes
    assert route.match.prefix == "/metrics"
    assert route.route.cluster == HIJACKER_CLUSTER
    assert route.route.prefix_rewrite == "/"
    (lb,) = cluster.load_assignment.endpoints[0].lb_endpoints
    assert lb.endpoint.address.pipe.path == SOCKET


def test_a_proxy_that_declared_no_socket_gets_kumas_name_for_it() -> None:
    _, cluster = endpoint(run(mesh(metrics()), socket=""))
    (lb,) = cluster.load_assignment.endpoints[0].lb_endpoints
    assert lb.endpoint.address.pipe.path == "/tmp/kuma-mh-web-1-default.sock"


@pytest.mark.parametrize(
    ("envoy", "path"),
    [
        ({}, "/"),
        ({"usedOnly": True}, "/?usedonly"),
        ({"filterRegex": "^http"}, "/?filter=^http&"),
        ({"filterRegex": "^http", "usedOnly": True}, "/?filter=^http&usedonly"),
    ],
)
def test_envoy_stats_filter_as_kumas_query(envoy: dict[str, Any], path: str) -> None:
    """Kuma's buildEnvoyMetricsFilter, trailing `&` included when usedOnly is off."""
    cfg = prometheus_config(mesh(metrics({"envoy": envoy})), sidecar())
    assert cfg is not None
    assert stats_path(cfg) == path


def test_the_dataplanes_own_metrics_win_and_aggregates_merge_by_name() -> None:
    mesh_conf = {
        "port": 1234,
        "path": "/m",
        "aggregate": [{"name": "app", "port": 9000, "path": "/a"}, {"name": "side", "port": 9001}],
    }
    dp_conf = {"port": 4321, "aggregate": [{"name": "app", "port": 9100, "path": "/b"}]}
    cfg = prometheus_config(mesh(metrics(mesh_conf)), sidecar(dp_metrics={"type": "prometheus", "conf": dp_conf}))
    assert cfg is not None
    assert (cfg.port, cfg.path) == (4321, "/m")
    assert {(a.name, a.port, a.path) for a in cfg.aggregate} == {("app", 9100, "/b"), ("side", 9001, "")}


def test_with_mesh_mtls_scrapers_need_a_mesh_certificate_but_the_dataplanes_own_address() -> None:
    listener, _ = endpoint(run(mesh(metrics(), mtls=True)))
    own, secured = listener.filter_chains
    (prefix,) = own.filter_chain_match.source_prefix_ranges
    assert (prefix.address_prefix, prefix.prefix_len.value) == ("10.0.0.1", 32)
    assert not own.HasField("transport_socket")
    context = tls_pb2.DownstreamTlsContext()
    secured.transport_socket.typed_config.Unpack(context)
    assert context.require_client_certificate.value


@pytest.mark.parametrize("conf", [{"skipMTLS": True}, {"tls": {"mode": "disabled"}}, {"tls": {"mode": "providedTLS"}}])
def test_skip_mtls_or_another_tls_mode_serves_plaintext_on_an_mtls_mesh(conf: dict[str, Any]) -> None:
    """providedTLS needs certificate paths meshgate-dp does not send: Kuma falls back to plaintext then."""
    listener, _ = endpoint(run(mesh(metrics(conf), mtls=True)))
    (chain,) = listener.filter_chains
    assert not chain.HasField("transport_socket")


@pytest.mark.parametrize(("port", "service_port"), [(5670, 18080), (8080, 5670)], ids=["inbound", "application"])
def test_a_port_the_dataplane_uses_keeps_the_endpoint_out(port: int, service_port: int) -> None:
    snap = run(mesh(metrics()), sidecar(port=port, service_port=service_port))
    assert PROMETHEUS_LISTENER not in snap[LISTENER]
    assert any("port 5670 on 10.0.0.1 is used by" in p for p in snap.problems), snap.problems


def test_a_builtin_gateway_gets_the_endpoint_beside_its_listeners() -> None:
    gw = factory.resource(factory.gateway_dataplane("edge-1", "edge", address="10.0.0.9"))
    gateway = factory.resource(factory.gateway("edge", listeners=[factory.listener(9090)]))
    ctx = MeshContext.build(
        "default", zone="zone-1", mesh_resource=mesh(metrics({"port": 9091})), dataplanes=[gw], gateways=[gateway]
    )
    snap = generate(gw, ctx)
    listener = snap[LISTENER][PROMETHEUS_LISTENER]
    assert isinstance(listener, listener_pb2.Listener)
    assert listener.address.socket_address.port_value == 9091
    assert "edge:HTTP:9090" in snap[LISTENER]


def test_a_gateway_listener_on_the_port_keeps_the_endpoint_out() -> None:
    gw = factory.resource(factory.gateway_dataplane("edge-1", "edge", address="10.0.0.9"))
    gateway = factory.resource(factory.gateway("edge", listeners=[factory.listener(5670)]))
    ctx = MeshContext.build(
        "default", zone="zone-1", mesh_resource=mesh(metrics()), dataplanes=[gw], gateways=[gateway]
    )
    snap = generate(gw, ctx)
    assert PROMETHEUS_LISTENER not in snap[LISTENER]
    assert any("used by listener edge:HTTP:5670" in p for p in snap.problems), snap.problems


def test_aggregate_applications_go_to_meshgate_dp_in_a_header_the_route_sets() -> None:
    """Enabled entries only, each with the Dataplane's address unless it names one (Kuma's bootstrap generator)."""
    conf = {
        "aggregate": [
            {"name": "app", "port": 9000, "path": "/metrics/app"},
            {"name": "side", "port": 9001, "path": "/m", "address": "10.0.0.7"},
            {"name": "off", "port": 9002, "path": "/m", "enabled": False},
        ]
    }
    listener, _ = endpoint(run(mesh(metrics(conf))))
    (route,) = hcm(listener.filter_chains[0]).route_config.virtual_hosts[0].routes
    (header,) = route.request_headers_to_add
    assert header.header.key == AGGREGATE_HEADER
    assert json.loads(header.header.value) == [
        {"name": "app", "address": "10.0.0.1", "port": 9000, "path": "/metrics/app"},
        {"name": "side", "address": "10.0.0.7", "port": 9001, "path": "/m"},
    ]
    # Set over whatever the scraper sent: a scraper never chooses what meshgate-dp fetches.
    assert header.append_action == base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    assert not route.request_headers_to_remove


def test_without_aggregate_the_route_removes_the_header() -> None:
    listener, _ = endpoint(run(mesh(metrics())))
    (route,) = hcm(listener.filter_chains[0]).route_config.virtual_hosts[0].routes
    assert list(route.request_headers_to_remove) == [AGGREGATE_HEADER]
    assert not route.request_headers_to_add
