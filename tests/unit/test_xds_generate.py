"""`generate`: listeners, TLS filter chains, TCP proxies, clusters, endpoints and delegated outbounds.

Every snapshot here also passes `assert_valid`: each message survives a round trip through `Any`, carries
the fields Envoy requires, and names only routes and clusters the snapshot holds. The real Envoy binary checks
whole snapshots in `--mode validate` in tests/adapter/test_xds_envoy_validate.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.connection_limit.v3 import connection_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshgate.delta import content_hash
from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, UNRESOLVED_BACKEND, MeshContext, Snapshot, generate
from meshgate.xds.clusters import cluster_name

# A self-signed P-256 certificate for example.com and *.example.com, for tests only (valid until 2126).
TEST_KEY_AND_CERT = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg3tnIwjskDD/A7BOR
NQiK9dF89CXENkPdThyrM/McT2ChRANCAATglxZkklY2Ij9ZHpM7hbYy9cT68cFq
6taQFIuNZ1f0nEG8ikYhAK0Dy2BfvHGHuVwWTKz4BgaA8ib2/UWgqQ/1
-----END PRIVATE KEY-----
-----BEGIN CERTIFICATE-----
MIIBqjCCAVCgAwIBAgIUfVxTemwf/vIibyHYitNhhL7MP28wCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLZXhhbXBsZS5jb20wIBcNMjYxMTIyMDEyMjI3WhgPMjEyNjEw
MjkwMTIyMjdaMBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAE4JcWZJJWNiI/WR6TO4W2MvXE+vHBaurWkBSLjWdX9JxBvIpG
IQCtA8tgX7xxh7lcFkys+AYGgPIm9v1FoKkP9aN6MHgwHQYDVR0OBBYEFEmaBFYg
acmAZyGe0eAkfavcCpV4MB8GA1UdIwQYMBaAFEmaBFYgacmAZyGe0eAkfavcCpV4
MA8GA1UdEwEB/wQFMAMBAf8wJQYDVR0RBB4wHIILZXhhbXBsZS5jb22CDSouZXhh
bXBsZS5jb20wCgYIKoZIzj0EAwIDSAAwRQIhAIu1VCVwVMQxk/aXbGPJOEYgRpPp
8w1H3lnNdNGaBYgyAiB9hqSytoe7WVdHBiLMkd/f+oj8l4VvdL0YgHFyAfJZKA==
-----END CERTIFICATE-----
"""

# A YAML flow mapping: JSON's string escapes are YAML's double-quoted ones.
TLS = f"tls: {{mode: TERMINATE, certificates: [{{inlineString: {json.dumps(TEST_KEY_AND_CERT)}}}]}}"

ENDPOINTS = """
type: Dataplane
mesh: default
name: backend-local
networking:
  address: 10.0.0.1
  inbound:
  - port: 8000
    tags: {kuma.io/service: backend, kuma.io/protocol: http, version: v1}
  - port: 8001
    tags: {kuma.io/service: backend, kuma.io/protocol: http, version: v2}
    health: {ready: false}
---
type: Dataplane
mesh: default
name: backend-remote
labels: {kuma.io/zone: zone-2, kuma.io/origin: zone}
networking:
  address: 10.1.0.1
  advertisedAddress: 172.16.0.1
  inbound:
  - port: 8000
    tags: {kuma.io/service: backend, kuma.io/protocol: http, version: v1}
---
type: Dataplane
mesh: default
name: db
networking:
  address: 10.0.0.5
  inbound:
  - port: 5432
    address: 10.0.0.6
    tags: {kuma.io/service: db, kuma.io/protocol: tcp}
---
type: Dataplane
mesh: default
name: grpc
networking:
  address: 10.0.0.7
  inbound:
  - port: 9000
    tags: {kuma.io/service: grpc-api, kuma.io/protocol: grpc}
---
type: Dataplane
mesh: other-mesh
name: backend-elsewhere
networking:
  address: 10.9.9.9
  inbound:
  - port: 8000
    tags: {kuma.io/service: backend, kuma.io/protocol: http}
"""

GATEWAY_DP = """
type: Dataplane
mesh: default
name: gw-1
networking:
  address: 192.168.0.1
  gateway:
    type: BUILTIN
    tags: {kuma.io/service: edge}
"""

BACKEND = cluster_name({"kuma.io/service": "backend"})
DB = cluster_name({"kuma.io/service": "db"})


def load(text: str) -> list[Resource]:
    return [codec.decode(doc) for doc in codec.load_documents(text)]


def gateway(listeners: str) -> str:
    return f"""
type: MeshGateway
mesh: default
name: edge
selectors: [{{match: {{kuma.io/service: edge}}}}]
conf:
  listeners:
{listeners}
"""


def http_route(name: str, backends: str = "[{destination: {kuma.io/service: backend}}]", hostnames: str = "[]") -> str:
    return f"""
type: MeshGatewayRoute
mesh: default
name: {name}
selectors: [{{match: {{kuma.io/service: edge}}}}]
conf:
  http:
    hostnames: {hostnames}
    rules:
    - matches: [{{path: {{match: PREFIX, value: /}}}}]
      backends: {backends}
"""


def tcp_route(name: str, backends: str) -> str:
    return f"""
type: MeshGatewayRoute
mesh: default
name: {name}
selectors: [{{match: {{kuma.io/service: edge}}}}]
conf:
  tcp:
    rules:
    - backends: {backends}
"""


def run(*docs: str, proxy: str = GATEWAY_DP, secrets: Mapping[str, bytes] | None = None) -> Snapshot:
    resources = load("---".join([proxy, ENDPOINTS, *docs]))
    kinds: dict[str, list[Resource]] = {}
    for r in resources:
        kinds.setdefault(r.kind, []).append(r)
    ctx = MeshContext.build(
        resources[0].meta.mesh,
        gateways=kinds.get("MeshGateway", []),
        routes=kinds.get("MeshGatewayRoute", []),
        dataplanes=kinds["Dataplane"],
        zone="zone-1",
        secrets=secrets,
    )
    snap = generate(resources[0], ctx)
    assert_valid(snap)
    return snap


def unpack(packed: any_pb2.Any, message: Message) -> Any:
    assert packed.Unpack(message), packed.type_url
    return message


def filters(listener: Any, chain: int = 0) -> dict[str, Any]:
    types: dict[str, type[Message]] = {
        "envoy.filters.network.http_connection_manager": hcm_pb2.HttpConnectionManager,
        "envoy.filters.network.tcp_proxy": tcp_proxy_pb2.TcpProxy,
        "envoy.filters.network.connection_limit": connection_limit_pb2.ConnectionLimit,
    }
    return {f.name: unpack(f.typed_config, types[f.name]()) for f in listener.filter_chains[chain].filters}


def tcp_clusters(config: Any) -> list[str]:
    if config.cluster:
        return [config.cluster]
    return [c.name for c in config.weighted_clusters.clusters]


def referenced(snap: Snapshot) -> tuple[set[str], set[str]]:
    """(route configuration names, cluster names) that the snapshot's listeners and routes mention."""
    route_names: set[str] = set()
    cluster_names: set[str] = set()
    for listener in snap[LISTENER].values():
        for chain in listener.filter_chains:  # type: ignore[attr-defined]
            for name, config in filters(listener, list(listener.filter_chains).index(chain)).items():  # type: ignore[attr-defined]
                if name == "envoy.filters.network.http_connection_manager":
                    route_names.add(config.rds.route_config_name)
                elif name == "envoy.filters.network.tcp_proxy":
                    cluster_names.update(tcp_clusters(config))
    for config in snap[ROUTE].values():
        for vhost in config.virtual_hosts:  # type: ignore[attr-defined]
            for r in vhost.routes:
                cluster_names.update(c.name for c in r.route.weighted_clusters.clusters)
                cluster_names.update(m.cluster for m in r.route.request_mirror_policies)
    return route_names, cluster_names


def assert_valid(snap: Snapshot) -> None:
    expected = {
        LISTENER: listener_pb2.Listener,
        ROUTE: route_pb2.RouteConfiguration,
        CLUSTER: cluster_pb2.Cluster,
        ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    }
    for type_url, cls in expected.items():
        for name, message in snap[type_url].items():
            packed = any_pb2.Any()
            packed.Pack(message)
            assert packed.type_url == type_url
            again = unpack(packed, cls())
            assert again == message
            assert again.FindInitializationErrors() == []
            assert content_hash(again) == snap.versions(type_url)[name]
    for name, listener in snap[LISTENER].items():
        assert listener.name == name  # type: ignore[attr-defined]
        assert listener.address.socket_address.port_value > 0  # type: ignore[attr-defined]
        assert listener.filter_chains  # type: ignore[attr-defined]
    for name, config in snap[ROUTE].items():
        assert config.name == name  # type: ignore[attr-defined]
        for vhost in config.virtual_hosts:  # type: ignore[attr-defined]
            assert vhost.name
            assert vhost.domains
            assert vhost.routes
            assert all(r.WhichOneof("action") for r in vhost.routes)
    for name, cluster in snap[CLUSTER].items():
        assert cluster.name == name  # type: ignore[attr-defined]
        assert cluster.connect_timeout.ToNanoseconds() > 0  # type: ignore[attr-defined]
        if cluster.type == cluster_pb2.Cluster.EDS:  # type: ignore[attr-defined]
            assert name in snap[ENDPOINT]
    for name, assignment in snap[ENDPOINT].items():
        assert assignment.cluster_name == name  # type: ignore[attr-defined]
    route_names, cluster_names = referenced(snap)
    assert route_names <= set(snap[ROUTE])
    assert cluster_names - {UNRESOLVED_BACKEND} <= set(snap[CLUSTER])


def test_http_listener_binds_the_dataplane_address_with_kuma_settings() -> None:
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r"))
    listener: Any = snap[LISTENER]["edge:HTTP:8080"]
    assert (listener.address.socket_address.address, listener.address.socket_address.port_value) == (
        "192.168.0.1",
        8080,
    )
    assert listener.enable_reuse_port.value is True
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    (chain,) = listener.filter_chains
    assert not chain.HasField("filter_chain_match")
    hcm = filters(listener)["envoy.filters.network.http_connection_manager"]
    assert hcm.rds.route_config_name == "edge:HTTP:8080:*"
    assert hcm.rds.config_source.HasField("ads")
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.router"]
    assert hcm.server_name == "Kuma Gateway"
    assert set(snap[ROUTE]) == {"edge:HTTP:8080:*"}


def test_listeners_sharing_a_port_become_one_envoy_listener() -> None:
    listeners = """  - {port: 8080, protocol: HTTP, hostname: foo.example.com}
  - {port: 8080, protocol: HTTP, hostname: bar.example.com}
  - {port: 9090, protocol: HTTP}"""
    snap = run(gateway(listeners), http_route("r"))
    assert set(snap[LISTENER]) == {"edge:HTTP:8080", "edge:HTTP:9090"}
    config: Any = snap[ROUTE]["edge:HTTP:8080:*"]
    assert [(vh.name, list(vh.domains)) for vh in config.virtual_hosts] == [
        ("foo.example.com", ["foo.example.com"]),
        ("bar.example.com", ["bar.example.com"]),
    ]


def test_https_filter_chains_match_sni_and_terminate_tls() -> None:
    listeners = f"""  - {{port: 8443, protocol: HTTPS, hostname: api.example.com, {TLS}}}
  - {{port: 8443, protocol: HTTPS, hostname: '*.example.com', {TLS}}}
  - {{port: 8443, protocol: HTTPS, {TLS}}}"""
    snap = run(gateway(listeners), http_route("r"))
    listener: Any = snap[LISTENER]["edge:HTTPS:8443"]
    matches = [
        (list(c.filter_chain_match.server_names), c.filter_chain_match.transport_protocol)
        for c in listener.filter_chains
    ]
    assert matches == [(["api.example.com"], "tls"), (["*.example.com"], "tls"), ([], "tls")]
    assert set(snap[ROUTE]) == {"edge:HTTPS:8443:api.example.com", "edge:HTTPS:8443:*.example.com", "edge:HTTPS:8443:*"}
    for i, host in enumerate(["api.example.com", "*.example.com", "*"]):
        hcm = filters(listener, i)["envoy.filters.network.http_connection_manager"]
        assert hcm.rds.route_config_name == f"edge:HTTPS:8443:{host}"
        context = unpack(listener.filter_chains[i].transport_socket.typed_config, tls_pb2.DownstreamTlsContext())
        (cert,) = context.common_tls_context.tls_certificates
        assert cert.private_key.inline_bytes.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert cert.certificate_chain.inline_bytes.startswith(b"-----BEGIN CERTIFICATE-----")
        assert b"PRIVATE" not in cert.certificate_chain.inline_bytes
        assert list(context.common_tls_context.alpn_protocols) == ["h2", "http/1.1"]
    vhost = snap[ROUTE]["edge:HTTPS:8443:api.example.com"].virtual_hosts[0]  # type: ignore[attr-defined]
    assert vhost.require_tls == vhost.ALL
    assert [h.header.key for h in vhost.response_headers_to_add] == ["Strict-Transport-Security"]


@pytest.mark.parametrize(
    ("source", "check"),
    [
        ("{file: /etc/certs/gw.pem}",
         lambda c: c.certificate_chain.filename == c.private_key.filename == "/etc/certs/gw.pem"),
        ("{secret: gw-cert}", lambda c: c.private_key.inline_bytes.startswith(b"-----BEGIN PRIVATE KEY")),
        (f"{{inline: {base64.b64encode(TEST_KEY_AND_CERT.encode()).decode()}}}",
         lambda c: c.certificate_chain.inline_bytes.startswith(b"-----BEGIN CERTIFICATE")),
    ],
)  # fmt: skip
def test_certificate_sources(source: str, check: Any) -> None:
    listeners = f"  - {{port: 8443, protocol: HTTPS, tls: {{mode: TERMINATE, certificates: [{source}]}}}}"
    snap = run(gateway(listeners), http_route("r"), secrets={"gw-cert": TEST_KEY_AND_CERT.encode()})
    listener: Any = snap[LISTENER]["edge:HTTPS:8443"]
    context = unpack(listener.filter_chains[0].transport_socket.typed_config, tls_pb2.DownstreamTlsContext())
    assert check(context.common_tls_context.tls_certificates[0])


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{secret: missing}", "secret 'missing' not found"),
        ("{inlineString: not-a-pem}", "missing server certificate"),
    ],
)
def test_unusable_certificates_are_problems_not_crashes(source: str, problem: str) -> None:
    listeners = f"""  - {{port: 8443, protocol: HTTPS, tls: {{mode: TERMINATE, certificates: [{source}]}}}}
  - {{port: 8080, protocol: HTTP}}"""
    snap = run(gateway(listeners), http_route("r"))
    assert set(snap[LISTENER]) == {"edge:HTTP:8080"}
    assert any(problem in p for p in snap.problems), snap.problems
    assert any("edge:HTTPS:8443: no usable filter chain" in p for p in snap.problems)


def test_tcp_listener_proxies_to_weighted_clusters() -> None:
    backends = "[{weight: 3, destination: {kuma.io/service: backend}}, {weight: 1, destination: {kuma.io/service: db}}]"
    snap = run(gateway("  - {port: 5000, protocol: TCP}"), tcp_route("t", backends))
    proxy = filters(snap[LISTENER]["edge:TCP:5000"])["envoy.filters.network.tcp_proxy"]
    assert sorted((c.name, c.weight) for c in proxy.weighted_clusters.clusters) == sorted([(BACKEND, 3), (DB, 1)])
    assert set(snap[ROUTE]) == set()
    assert set(snap[CLUSTER]) == {BACKEND, DB}


def test_tls_passthrough_routes_on_sni_without_terminating() -> None:
    listeners = """  - {port: 6443, protocol: TLS, hostname: db.example.com, tls: {mode: PASSTHROUGH}}
  - {port: 6443, protocol: TLS, hostname: '*.example.com', tls: {mode: PASSTHROUGH}}"""
    snap = run(gateway(listeners), tcp_route("t", "[{destination: {kuma.io/service: db}}]"))
    listener: Any = snap[LISTENER]["edge:TLS:6443"]
    assert [list(c.filter_chain_match.server_names) for c in listener.filter_chains] == [
        ["db.example.com"],
        ["*.example.com"],
    ]
    assert not any(c.HasField("transport_socket") for c in listener.filter_chains)
    assert tcp_clusters(filters(listener)["envoy.filters.network.tcp_proxy"]) == [DB]


def test_tls_terminate_on_a_tls_listener() -> None:
    listeners = f"  - {{port: 6443, protocol: TLS, {TLS}}}"
    snap = run(gateway(listeners), tcp_route("t", "[{destination: {kuma.io/service: db}}]"))
    (chain,) = snap[LISTENER]["edge:TLS:6443"].filter_chains  # type: ignore[attr-defined]
    context = unpack(chain.transport_socket.typed_config, tls_pb2.DownstreamTlsContext())
    assert list(context.common_tls_context.alpn_protocols) == []
    assert chain.filter_chain_match.transport_protocol == "tls"


def test_connection_limit_filter_comes_first() -> None:
    listeners = """  - {port: 8080, protocol: HTTP, resources: {connectionLimit: 100}}
  - {port: 8080, protocol: HTTP, hostname: a.example.com, resources: {connectionLimit: 50}}
  - {port: 5000, protocol: TCP, resources: {connectionLimit: 7}}"""
    snap = run(gateway(listeners), http_route("r"), tcp_route("t", "[{destination: {kuma.io/service: db}}]"))
    http_chain = snap[LISTENER]["edge:HTTP:8080"].filter_chains[0]  # type: ignore[attr-defined]
    assert [f.name for f in http_chain.filters] == [
        "envoy.filters.network.connection_limit",
        "envoy.filters.network.http_connection_manager",
    ]
    assert (
        filters(snap[LISTENER]["edge:HTTP:8080"])["envoy.filters.network.connection_limit"].max_connections.value == 50
    )
    assert filters(snap[LISTENER]["edge:TCP:5000"])["envoy.filters.network.connection_limit"].max_connections.value == 7


def test_endpoints_prefer_the_local_zone_and_skip_unready_inbounds() -> None:
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r"))
    assignment: Any = snap[ENDPOINT][BACKEND]
    found = [
        (
            g.locality.zone,
            g.priority,
            [
                (e.endpoint.address.socket_address.address, e.endpoint.address.socket_address.port_value)
                for e in g.lb_endpoints
            ],
        )
        for g in assignment.endpoints
    ]
    # The v2 inbound is not ready; the remote Dataplane is reached on its advertised address.
    assert found == [("zone-1", 0, [("10.0.0.1", 8000)]), ("zone-2", 1, [("172.16.0.1", 8000)])]
    cluster: Any = snap[CLUSTER][BACKEND]
    assert cluster.type == cluster.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")


def test_a_zone_in_the_destination_restricts_endpoints_to_that_zone() -> None:
    backends = "[{destination: {kuma.io/service: backend, kuma.io/zone: zone-2}}]"
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r", backends))
    name = cluster_name({"kuma.io/service": "backend", "kuma.io/zone": "zone-2"})
    (group,) = snap[ENDPOINT][name].endpoints  # type: ignore[attr-defined]
    assert (group.locality.zone, group.priority) == ("zone-2", 0)
    assert [e.endpoint.address.socket_address.address for e in group.lb_endpoints] == ["172.16.0.1"]
    local = cluster_name({"kuma.io/service": "backend", "kuma.io/zone": "zone-1"})
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r", backends.replace("zone-2", "zone-1")))
    assert [g.locality.zone for g in snap[ENDPOINT][local].endpoints] == ["zone-1"]  # type: ignore[attr-defined]


def test_a_known_service_with_no_ready_endpoint_keeps_an_empty_cluster() -> None:
    backends = "[{destination: {kuma.io/service: backend, version: v2}}]"
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r", backends))
    name = cluster_name({"kuma.io/service": "backend", "version": "v2"})
    assert name in snap[CLUSTER]
    assert list(snap[ENDPOINT][name].endpoints) == []  # type: ignore[attr-defined]


def test_unknown_backends_get_no_cluster() -> None:
    backends = (
        "[{weight: 1, destination: {kuma.io/service: ghost}}, {weight: 1, destination: {kuma.io/service: backend}}]"
    )
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r", backends))
    assert set(snap[CLUSTER]) == {BACKEND}


def test_grpc_services_get_http2_clusters() -> None:
    snap = run(
        gateway("  - {port: 8080, protocol: HTTP}"), http_route("r", "[{destination: {kuma.io/service: grpc-api}}]")
    )
    cluster: Any = snap[CLUSTER][cluster_name({"kuma.io/service": "grpc-api"})]
    assert "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in cluster.typed_extension_protocol_options


def test_dns_named_endpoints_use_a_strict_dns_cluster() -> None:
    named = """
type: Dataplane
mesh: default
name: named
networking:
  address: backend.internal
  inbound:
  - port: 8000
    tags: {kuma.io/service: named}
"""
    snap = run(
        gateway("  - {port: 8080, protocol: HTTP}"), http_route("r", "[{destination: {kuma.io/service: named}}]"), named
    )
    name = cluster_name({"kuma.io/service": "named"})
    cluster: Any = snap[CLUSTER][name]
    assert cluster.type == cluster.STRICT_DNS
    assert (
        cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address
        == "backend.internal"
    )
    assert name not in snap[ENDPOINT]


def test_no_matching_gateway_gives_an_empty_snapshot_and_a_problem() -> None:
    snap = run(http_route("r"))
    assert all(not snap[t] for t in snap)
    assert snap.problems == ("no MeshGateway in mesh 'default' matches Dataplane 'gw-1'",)


DELEGATED = """
type: Dataplane
mesh: default
name: kong-1
networking:
  address: 192.168.0.2
  gateway:
    tags: {kuma.io/service: kong}
  outbound:
  - port: 10001
    tags: {kuma.io/service: backend}
  - port: 10002
    address: 127.0.0.2
    tags: {kuma.io/service: db}
  - port: 10003
    backendRef: {kind: MeshService, name: x, port: 80}
"""


def test_delegated_gateway_gets_one_listener_per_outbound() -> None:
    snap = run(gateway("  - {port: 8080, protocol: HTTP}"), http_route("r"), proxy=DELEGATED)
    assert set(snap[LISTENER]) == {"outbound:127.0.0.1:10001", "outbound:127.0.0.2:10002"}
    http: Any = snap[LISTENER]["outbound:127.0.0.1:10001"]
    assert (http.address.socket_address.address, http.address.socket_address.port_value) == ("127.0.0.1", 10001)
    assert http.traffic_direction == base_pb2.OUTBOUND
    hcm = filters(http)["envoy.filters.network.http_connection_manager"]
    assert hcm.rds.route_config_name == "outbound:127.0.0.1:10001"
    (vhost,) = snap[ROUTE]["outbound:127.0.0.1:10001"].virtual_hosts  # type: ignore[attr-defined]
    assert list(vhost.domains) == ["*"]
    assert [c.name for c in vhost.routes[0].route.weighted_clusters.clusters] == [BACKEND]
    tcp = filters(snap[LISTENER]["outbound:127.0.0.2:10002"])["envoy.filters.network.tcp_proxy"]
    assert tcp.cluster == DB
    assert set(snap[CLUSTER]) == {BACKEND, DB}
    # Endpoints in every zone are reachable from a delegated gateway, local ones first.
    assert [g.locality.zone for g in snap[ENDPOINT][BACKEND].endpoints] == ["zone-1", "zone-2"]  # type: ignore[attr-defined]
    assert snap.problems == ("networking.outbound[2]: no kuma.io/service tag (backendRef is not supported)",)


def test_output_is_deterministic_and_sorted() -> None:
    listeners = gateway("  - {port: 8080, protocol: HTTP}\n  - {port: 5000, protocol: TCP}")
    docs = (listeners, http_route("b"), http_route("a"), tcp_route("t", "[{destination: {kuma.io/service: db}}]"))
    first = run(*docs)
    second = run(*reversed(docs))
    for type_url in first:
        assert list(first[type_url]) == sorted(first[type_url])
        assert first.versions(type_url) == second.versions(type_url)
        assert {n: m.SerializeToString(deterministic=True) for n, m in first[type_url].items()} == {
            n: m.SerializeToString(deterministic=True) for n, m in second[type_url].items()
        }
