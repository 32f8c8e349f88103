"""Generated xDS through the real Envoy's `--mode validate`: every message, protoc-gen-validate rules included.

The snapshots are built by the sans-IO tests' own helpers (tests/unit/test_xds_*.py); here they are written
as one static bootstrap (RDS inlined, EDS clusters made STATIC) and handed to the Envoy binary, a process.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from envoy.config.bootstrap.v3 import bootstrap_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm_pb2
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshgate.resources import codec
from meshgate.resources.model import Resource
from meshgate.testing import factory
from meshgate.testing.tools import ENVOY, require
from meshgate.xds import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, MeshContext, Snapshot, VipOutbound, generate
from meshgate.xds.egress import EgressMesh, egress_snapshot
from tests.unit import test_xds_egress as egress
from tests.unit.test_xds_cross_mesh import CAS, client_snapshot, cross, gateway_snapshot
from tests.unit.test_xds_generate import DELEGATED, TLS, gateway, run, tcp_route, unpack
from tests.unit.test_xds_policies_trace import DATADOG_SPLIT, traced_gateway, traced_sidecar
from tests.unit.test_xds_prometheus import mesh as prometheus_mesh
from tests.unit.test_xds_prometheus import metrics as prometheus_metrics
from tests.unit.test_xds_prometheus import run as prometheus_run
from tests.unit.test_xds_prometheus import sidecar as prometheus_sidecar
from tests.unit.test_xds_properties import ENDPOINTS, PROXY, worlds
from tests.unit.test_xds_transparent import TP
from tests.unit.test_xds_transparent import run as transparent_run
from tests.unit.test_xds_vips import SERVICE_VIPS
from tests.unit.test_xds_vips import delegated as vips_delegated
from tests.unit.test_xds_vips import run as vips_run


@pytest.fixture(scope="module")
def envoy() -> Path:
    return require(ENVOY)


def static_bootstrap(snapshots: Iterable[Snapshot]) -> dict[str, Any]:
    """The snapshots as static resources: RDS inlined into each HCM, EDS clusters as STATIC ones, SDS Secrets
    as static ones."""
    snapshots = list(snapshots)
    listeners: list[Any] = []
    clusters: dict[str, Any] = {}
    for i, snap in enumerate(snapshots):
        for listener in snap[LISTENER].values():
            copy: Any = listener_pb2.Listener()
            copy.CopyFrom(listener)
            copy.name = f"{i}-{copy.name}"
            copy.address.socket_address.port_value += i
            for chain in copy.filter_chains:
                for f in chain.filters:
                    if f.name == "envoy.filters.network.http_connection_manager":  # (an inbound's is inline)
                        hcm = unpack(f.typed_config, hcm_pb2.HttpConnectionManager())
                        if not hcm.HasField("rds"):
                            continue
                        hcm.route_config.CopyFrom(snap[ROUTE][hcm.rds.route_config_name])
                        hcm.ClearField("rds")
                        f.typed_config.Pack(hcm)
            listeners.append(json_format.MessageToDict(copy))
        for name, cluster in snap[CLUSTER].items():
            static: Any = cluster_pb2.Cluster()
            static.CopyFrom(cluster)
            if static.type == static.EDS:
                static.type = static.STATIC
                static.ClearField("eds_cluster_config")
                static.load_assignment.CopyFrom(snap[ENDPOINT][name])
            clusters[name] = json_format.MessageToDict(static)
    secrets = {
        name: json_format.MessageToDict(m) for snap in snapshots if SECRET in snap for name, m in snap[SECRET].items()
    }
    static = {"listeners": listeners, "clusters": list(clusters.values()), "secrets": list(secrets.values())}
    doc = {"static_resources": _static_sds(static)}
    json_format.ParseDict(doc, bootstrap_pb2.Bootstrap())  # every field known to the protos
    return doc


def _static_sds(doc: Any) -> Any:
    """`doc` with every SDS reference made static: the Secret is then looked up by name among
    `static_resources.secrets` instead of being subscribed to over ADS (which a validation run has not)."""
    if isinstance(doc, dict):
        return {k: _static_sds(v) for k, v in doc.items() if not (k == "sdsConfig" and "ads" in v)}
    if isinstance(doc, list):
        return [_static_sds(v) for v in doc]
    return doc


def envoy_validates(envoy: Path, config: Path) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [envoy, "--mode", "validate", "-c", str(config), "--log-level", "warn", "--disable-hot-restart"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_envoy_accepts_the_generated_configuration(envoy: Path, tmp_path: Path) -> None:
    tls = TLS
    everything = run(
        gateway(f"""  - {{port: 18080, protocol: HTTP, resources: {{connectionLimit: 10}}}}
  - {{port: 18080, protocol: HTTP, hostname: foo.example.com}}
  - {{port: 18443, protocol: HTTPS, hostname: api.example.com, {tls}}}
  - {{port: 18443, protocol: HTTPS, {tls}}}
  - {{port: 15000, protocol: TCP}}
  - {{port: 16443, protocol: TLS, hostname: db.example.com, tls: {{mode: PASSTHROUGH}}}}
  - {{port: 16443, protocol: TLS, hostname: '*.example.com', {tls}}}"""),
        """
type: MeshGatewayRoute
mesh: default
name: everything
selectors: [{match: {kuma.io/service: edge}}]
conf:
  http:
    hostnames: [foo.example.com, a.example.com]
    rules:
    - matches:
      - path: {match: PREFIX, value: /api}
        method: GET
        headers: [{name: x-a, value: b}, {name: x-r, match: REGEX, value: '^a+$'}, {name: x-p, match: PRESENT},
                  {name: x-n, match: ABSENT}]
        queryParameters: [{name: q, value: '1'}, {name: r, match: REGEX, value: '[0-9]+'}]
      - path: {match: REGEX, value: '^/v[0-9]+/.*'}
      filters:
      - requestHeader:
          set: [{name: host, value: h.example.com}, {name: x-s, value: '1'}]
          add: [{name: x-a, value: '2'}]
          remove: [x-r]
      - responseHeader: {set: [{name: x-s, value: '1'}], add: [{name: x-a, value: '2'}], remove: [x-r]}
      - rewrite: {replacePrefixMatch: /v2, hostToBackendHostname: true}
      - mirror: {percentage: 12.5, backend: {destination: {kuma.io/service: grpc-api}}}
      backends:
      - {weight: 2, destination: {kuma.io/service: backend}}
      - {weight: 1, destination: {kuma.io/service: backend, kuma.io/zone: zone-2}}
      - {weight: 1, destination: {kuma.io/service: ghost}}
    - matches: [{path: {match: EXACT, value: /old}}]
      filters: [{redirect: {scheme: https, hostname: new.example.com, statusCode: 301, path: {replaceFull: /new}}}]
    - matches: [{path: {match: PREFIX, value: /moved}}]
      filters: [{redirect: {statusCode: 308, path: {replacePrefixMatch: /here}}}]
""",
        tcp_route(
            "t",
            "[{weight: 1, destination: {kuma.io/service: db}}, {weight: 2, destination: {kuma.io/service: backend}}]",
        ),
    )
    delegated = run(proxy=DELEGATED)
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap([everything, delegated])))
    result = envoy_validates(envoy, config)
    assert "OK" in result.stdout


def test_envoy_accepts_vip_listeners(envoy: Path, tmp_path: Path) -> None:
    snap = vips_run(
        vips_delegated("{port: 10001, tags: {kuma.io/service: backend}}"),
        (*SERVICE_VIPS, VipOutbound("240.0.0.9", 8080, "backend", "gateway")),
    )
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap([snap])))
    result = envoy_validates(envoy, config)
    assert "OK" in result.stdout


def test_envoy_accepts_transparent_proxy_listeners(envoy: Path, tmp_path: Path) -> None:
    """The capture listeners (use_original_dst), ORIGINAL_DST clusters and unbound outbounds and inbounds."""
    snap = transparent_run(TP + "    ipFamilyMode: DualStack\n")
    assert "inbound:passthrough:ipv6" in snap[LISTENER]
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap([snap])))
    result = envoy_validates(envoy, config)
    assert "OK" in result.stdout


def test_envoy_accepts_both_sides(envoy: Path, tmp_path: Path) -> None:
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap([gateway_snapshot(cross(CAS)), client_snapshot(cross(CAS))])))
    envoy_validates(envoy, config)


def test_envoy_accepts_a_zone_egress_and_a_sidecar_routed_through_it(envoy: Path, tmp_path: Path) -> None:
    """The egress's TLS-inspected chains (HTTP and TCP ExternalServices, one with TLS of its own, RBAC), its
    identity over SDS, and a sidecar's mTLS cluster to the egress."""
    allow = codec.load(factory.traffic_permission())
    mesh = EgressMesh(egress.egress_mesh(), (egress.HTTPBIN, egress.DB), permissions=(allow,))
    egress_side = egress_snapshot(egress.EGRESS, [mesh], egress.cross("default"))
    sidecar = generate(egress.sidecar(), egress.context(egress.egress_mesh(), [egress.EGRESS]))
    assert egress_side.problems == ()
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap([egress_side, sidecar])))
    result = envoy_validates(envoy, config)
    assert "OK" in result.stdout


def test_envoy_accepts_tracing(envoy: Path, tmp_path: Path) -> None:
    """TrafficTrace's HCM tracing and `tracing:<backend>` clusters: zipkin over https (STRICT_DNS, TLS) on a
    gateway, datadog (STATIC) on a sidecar's inbound and outbound."""
    zipkin = {"name": "zipkin", "type": "zipkin", "sampling": 50.5,
              "conf": {"url": "https://zipkin.example.com:9411/api/v2/spans", "traceId128bit": True,
                       "apiVersion": "httpProto", "sharedSpanContext": False}}  # fmt: skip
    snapshots = [traced_gateway(zipkin), traced_sidecar(DATADOG_SPLIT)]
    assert {"tracing:zipkin", "tracing:dd"} <= {name for snap in snapshots for name in snap[CLUSTER]}
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap(snapshots)))
    result = envoy_validates(envoy, config)
    assert "OK" in result.stdout


def test_envoy_accepts_the_prometheus_endpoint(envoy: Path, tmp_path: Path) -> None:
    """`kuma:metrics:prometheus` with mesh mTLS (the Dataplane's own address in plaintext, the rest mTLS) and
    the Envoy stats filter, and its `kuma:metrics:hijacker` cluster on a Unix socket."""
    conf = {"port": 5671, "envoy": {"filterRegex": "^http", "usedOnly": True}}
    snap = prometheus_run(prometheus_mesh(prometheus_metrics(conf), mtls=True), prometheus_sidecar())
    assert "kuma:metrics:prometheus" in snap[LISTENER]
    config = tmp_path / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap([snap])))
    result = envoy_validates(envoy, config)
    assert "OK" in result.stdout


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(many=st.lists(worlds(), min_size=10, max_size=10))
def test_envoy_accepts_random_configurations(
    envoy: Path, many: list[tuple[list[Resource], list[Resource]]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Ten random gateways at a time through the real Envoy's `--mode validate`."""
    snapshots = [
        generate(PROXY, MeshContext.build("default", gateways=g, routes=r, dataplanes=ENDPOINTS, zone="zone-1"))
        for g, r in many
    ]
    config = tmp_path_factory.mktemp("envoy") / "bootstrap.json"
    config.write_text(json.dumps(static_bootstrap(snapshots)))
    envoy_validates(envoy, config)
