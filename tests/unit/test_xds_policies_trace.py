"""TrafficTrace and the Mesh's `tracing` backends on generated messages (issue 15).

Each field maps as Kuma 2.7 does (`tracing_configurer.go`, `tracing_proxy_generator.go`, cited in
`meshgate/xds/policies/traffic_trace.py`); spans through a real Envoy are in
tests/adapter/test_gateway_tracing.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.trace.v3 import datadog_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.testing.factory import resource
from meshgate.xds import CLUSTER, LISTENER, MeshContext, generate
from meshgate.xds.policies import ConnectionManager, Direction, Target, traffic_trace
from meshgate.xds.snapshot import Snapshot

ZIPKIN = {"name": "zipkin", "type": "zipkin", "conf": {"url": "http://zipkin.tracing:9411/api/v2/spans"}}


def _mesh(*backends: dict[str, Any], default: str | None = None) -> Resource:
    tracing: dict[str, Any] = {"backends": list(backends)}
    if default is not None:
        tracing["defaultBackend"] = default
    return resource(factory.mesh(tracing=tracing))


def _backend(doc: dict[str, Any]) -> Any:
    found = traffic_trace.backend(_mesh(doc), doc["name"])
    assert found is not None
    return found


GATEWAY_CM = ConnectionManager("edge:HTTP:8080", Direction.UNSPECIFIED, "edge")


def _zipkin(tracing: hcm_pb2.HttpConnectionManager.Tracing) -> zipkin_pb2.ZipkinConfig:
    assert tracing.provider.name == "envoy.tracers.zipkin"
    out = zipkin_pb2.ZipkinConfig()
    assert tracing.provider.typed_config.Unpack(out)
    return out


def test_zipkin_backend_maps_every_field() -> None:
    doc = {
        "name": "z",
        "type": "zipkin",
        "sampling": 12.5,
        "conf": {
            "url": "http://zipkin.tracing:9411/api/v2/spans",
            "traceId128bit": True,
            "apiVersion": "httpJson",
            "sharedSpanContext": False,
        },
    }
    tracing = traffic_trace.tracing(_backend(doc), GATEWAY_CM, spawn_upstream_span=True)
    assert tracing.spawn_upstream_span.value is True
    assert tracing.overall_sampling.value == 12.5
    zipkin = _zipkin(tracing)
    assert zipkin.collector_cluster == "tracing:z"
    assert zipkin.collector_endpoint == "/api/v2/spans"
    assert zipkin.collector_hostname == "zipkin.tracing:9411"
    assert zipkin.trace_id_128bit is True
    assert zipkin.HasField("shared_span_context")
    assert zipkin.shared_span_context.value is False
    assert zipkin.collector_endpoint_version == zipkin_pb2.ZipkinConfig.HTTP_JSON


def test_zipkin_defaults_sampling_unset_and_api_versions() -> None:
    tracing = traffic_trace.tracing(_backend(ZIPKIN), GATEWAY_CM, spawn_upstream_span=False)
    assert not tracing.HasField("overall_sampling")  # Envoy's default: 100%
    assert tracing.spawn_upstream_span.value is False
    zipkin = _zipkin(tracing)
    assert not zipkin.HasField("shared_span_context")
    assert (zipkin.trace_id_128bit, zipkin.collector_endpoint_version) == (False, zipkin_pb2.ZipkinConfig.HTTP_JSON)
    for version, expected in (
        ("httpProto", zipkin_pb2.ZipkinConfig.HTTP_PROTO),
        ("httpJsonV1", zipkin_pb2.ZipkinConfig.HTTP_JSON),  # Kuma's apiVersion() falls back to HTTP_JSON
    ):
        doc = {**ZIPKIN, "conf": {**ZIPKIN["conf"], "apiVersion": version}}  # type: ignore[dict-item]
        tracing = traffic_trace.tracing(_backend(doc), GATEWAY_CM, spawn_upstream_span=True)
        assert _zipkin(tracing).collector_endpoint_version == expected


def test_sampling_zero_is_kept_as_zero_percent() -> None:
    doc = {**ZIPKIN, "sampling": 0}
    tracing = traffic_trace.tracing(_backend(doc), GATEWAY_CM, spawn_upstream_span=True)
    assert tracing.HasField("overall_sampling")
    assert tracing.overall_sampling.value == 0


@pytest.mark.parametrize(
    ("split", "cm", "service"),
    [
        (False, ConnectionManager("inbound:10.0.0.1:80", Direction.INBOUND, "web"), "web"),
        (True, GATEWAY_CM, "edge"),
        (True, ConnectionManager("inbound:10.0.0.1:80", Direction.INBOUND, "web"), "web_INBOUND"),
        (True, ConnectionManager("outbound:127.0.0.1:1", Direction.OUTBOUND, "web", "db"), "web_OUTBOUND_db"),
    ],
)
def test_datadog_service_name_and_split_service(split: bool, cm: ConnectionManager, service: str) -> None:
    doc = {"name": "dd", "type": "datadog", "conf": {"address": "127.0.0.1", "port": 8126, "splitService": split}}
    tracing = traffic_trace.tracing(_backend(doc), cm, spawn_upstream_span=False)
    assert tracing.provider.name == "envoy.tracers.datadog"
    config = datadog_pb2.DatadogConfig()
    assert tracing.provider.typed_config.Unpack(config)
    assert (config.collector_cluster, config.service_name) == ("tracing:dd", service)


def test_cluster_to_a_dns_collector_is_strict_dns_v4_with_kumas_timeout() -> None:
    out = traffic_trace.cluster(_backend(ZIPKIN))
    assert out is not None
    assert out.name == "tracing:zipkin"
    assert (out.type, out.dns_lookup_family) == (cluster_pb2.Cluster.STRICT_DNS, cluster_pb2.Cluster.V4_ONLY)
    assert out.connect_timeout.seconds == 5
    (socket,) = [lb.endpoint.address.socket_address for lb in out.load_assignment.endpoints[0].lb_endpoints]
    assert (socket.address, socket.port_value) == ("zipkin.tracing", 9411)
    assert not out.transport_socket_matches
    assert traffic_trace.cluster(_backend(ZIPKIN), ipv6=True).dns_lookup_family == cluster_pb2.Cluster.AUTO  # type: ignore[union-attr]


def test_cluster_to_an_ip_is_static_and_https_adds_tls_outside_the_mesh() -> None:
    doc = {"name": "dd", "type": "datadog", "conf": {"address": "10.1.1.1", "port": 8126}}
    assert traffic_trace.cluster(_backend(doc)).type == cluster_pb2.Cluster.STATIC  # type: ignore[union-attr]
    https = {**ZIPKIN, "conf": {"url": "https://collector.example:443/api/v2/spans"}}
    out = traffic_trace.cluster(_backend(https))
    assert out is not None
    (match,) = out.transport_socket_matches
    assert match.name == "collector.example"
    context = tls_pb2.UpstreamTlsContext()
    assert match.transport_socket.typed_config.Unpack(context)
    assert (context.sni, context.allow_renegotiation) == ("collector.example", True)
    assert not context.common_tls_context.HasField("validation_context")


def test_backend_is_the_named_one_else_the_default_else_none() -> None:
    other = {**ZIPKIN, "name": "other"}
    mesh = _mesh(ZIPKIN, other, default="other")
    assert traffic_trace.backend(mesh, "zipkin").name == "zipkin"  # type: ignore[union-attr]
    assert traffic_trace.backend(mesh, "").name == "other"  # type: ignore[union-attr]
    assert traffic_trace.backend(mesh, "missing") is None
    assert traffic_trace.backend(_mesh(ZIPKIN), "") is None  # no defaultBackend
    assert traffic_trace.backend(None, "zipkin") is None


# --- through generate ----------------------------------------------------------------------------------


def _gateway_snapshot(mesh: Resource | None, *traces: dict[str, Any]) -> Snapshot:
    proxy = resource(factory.gateway_dataplane("edge-1", "edge"))
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=mesh,
        gateways=[resource(factory.gateway("edge", service="edge"))],
        routes=[resource(factory.http_route("web", prefix="/", backends=[factory.backend("a")]))],
        dataplanes=[proxy, resource(factory.dataplane("a-1", "a"))],
        policies={"TrafficTrace": [resource(t) for t in traces]} if traces else None,
    )
    return generate(proxy, ctx)


def _hcms(snap: Snapshot) -> dict[str, hcm_pb2.HttpConnectionManager]:
    out = {}
    for name, listener in snap[LISTENER].items():
        for chain in listener.filter_chains:  # type: ignore[attr-defined]
            for f in chain.filters:
                if f.name == "envoy.filters.network.http_connection_manager":
                    hcm = hcm_pb2.HttpConnectionManager()
                    f.typed_config.Unpack(hcm)
                    out[name] = hcm
    return out


def test_gateway_hcm_traced_to_the_default_backend_with_its_cluster_and_reported() -> None:
    snap = _gateway_snapshot(_mesh(ZIPKIN, default="zipkin"), factory.traffic_trace(service="edge"))
    (hcm,) = _hcms(snap).values()
    assert hcm.tracing.spawn_upstream_span.value is True
    assert _zipkin(hcm.tracing).collector_cluster == "tracing:zipkin"
    assert "tracing:zipkin" in snap[CLUSTER]
    applied = [(a.kind, a.target, a.name) for a in snap.policies.applied if a.kind == "TrafficTrace"]
    assert applied == [("TrafficTrace", Target.DATAPLANE, "edge-1")]
    assert not snap.problems


def test_mesh_tracing_without_a_traffic_trace_changes_nothing() -> None:
    """Kuma: the backend is the selected TrafficTrace's; no TrafficTrace, no tracing."""
    plain = _gateway_snapshot(None)
    snap = _gateway_snapshot(_mesh(ZIPKIN, default="zipkin"))
    assert snap[LISTENER] == plain[LISTENER]
    assert snap[CLUSTER] == plain[CLUSTER]


def test_traffic_trace_naming_a_missing_backend_traces_nothing_and_says_so() -> None:
    snap = _gateway_snapshot(_mesh(ZIPKIN), factory.traffic_trace(service="edge"))
    (hcm,) = _hcms(snap).values()
    assert not hcm.HasField("tracing")
    assert not any(name.startswith("tracing:") for name in snap[CLUSTER])
    assert snap.problems == ("TrafficTrace tt-1: tracing backend (the mesh's defaultBackend) not found; tracing off",)


def test_traffic_trace_not_selecting_the_gateway_traces_nothing() -> None:
    snap = _gateway_snapshot(_mesh(ZIPKIN), factory.traffic_trace(service="other", backend="zipkin"))
    (hcm,) = _hcms(snap).values()
    assert not hcm.HasField("tracing")


def test_the_most_specific_traffic_trace_picks_the_backend() -> None:
    other = {**ZIPKIN, "name": "other", "conf": {"url": "http://other:9411/api/v2/spans"}}
    snap = _gateway_snapshot(
        _mesh(ZIPKIN, other),
        factory.traffic_trace("a-wild", service="*", backend="zipkin"),
        factory.traffic_trace("b-edge", service="edge", backend="other"),
    )
    (hcm,) = _hcms(snap).values()
    assert _zipkin(hcm.tracing).collector_cluster == "tracing:other"
    assert "tracing:zipkin" not in snap[CLUSTER]


DATADOG_SPLIT = {"name": "dd", "type": "datadog", "conf": {"address": "10.1.1.1", "port": 8126, "splitService": True}}


def traced_sidecar(backend: dict[str, Any]) -> Snapshot:
    """A sidecar `web-1` with an HTTP inbound and an HTTP outbound to `db`, traced to `backend`."""
    doc = factory.dataplane("web-1", "web", tags={"kuma.io/protocol": "http"})
    doc["networking"]["inbound"][0]["servicePort"] = 18080
    doc["networking"]["outbound"] = [{"port": 10001, "tags": {"kuma.io/service": "db"}}]
    proxy = resource(doc)
    db = resource(factory.dataplane("db-1", "db", address="10.0.0.2", tags={"kuma.io/protocol": "http"}))
    ctx = MeshContext.build(
        "default",
        zone="zone-1",
        mesh_resource=_mesh(backend),
        dataplanes=[proxy, db],
        policies={"TrafficTrace": [resource(factory.traffic_trace(service="web", backend=backend["name"]))]},
    )
    return generate(proxy, ctx)


def traced_gateway(backend: dict[str, Any]) -> Snapshot:
    """The builtin gateway `edge-1` traced to `backend`, its Mesh's default."""
    return _gateway_snapshot(_mesh(backend, default=backend["name"]), factory.traffic_trace(service="edge"))


def test_sidecar_inbound_and_outbound_hcms_are_traced_with_their_direction() -> None:
    snap = traced_sidecar(DATADOG_SPLIT)
    services = {}
    for name, hcm in _hcms(snap).items():
        assert hcm.tracing.spawn_upstream_span.value is False
        config = datadog_pb2.DatadogConfig()
        assert hcm.tracing.provider.typed_config.Unpack(config)
        services[name] = config.service_name
    assert services == {"inbound:10.0.0.1:8080": "web_INBOUND", "outbound:127.0.0.1:10001": "web_OUTBOUND_db"}
    assert snap[CLUSTER]["tracing:dd"].type == cluster_pb2.Cluster.STATIC  # type: ignore[attr-defined]


def test_traffic_trace_kind_validation_follows_kuma() -> None:
    """traffic_trace_validator.go: at least one selector, each with at least one tag; conf may be empty."""
    codec.load(factory.traffic_trace())
    doc = factory.traffic_trace()
    doc["selectors"] = []
    with pytest.raises(Exception, match="selectors"):
        codec.load(doc)
    doc["selectors"] = [{"match": {}}]
    with pytest.raises(Exception, match="selectors"):
        codec.load(doc)
