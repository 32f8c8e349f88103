"""The generated modules in meshgate/api match proto/, and carry Kuma 2.7's wire names and numbers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import any_pb2, duration_pb2

from meshgate.api.mesh.v1alpha1 import (
    dataplane_pb2,
    gateway_pb2,
    gateway_route_pb2,
    kds_pb2,
    kds_pb2_grpc,
    mesh_pb2,
)
from meshgate.api.system.v1alpha1 import datasource_pb2

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_match_proto_sources() -> None:
    """`genproto.py --check` regenerates into a temp dir and compares byte for byte."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "genproto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_kuma_resource_round_trips_a_mesh_gateway_spec() -> None:
    spec = gateway_pb2.MeshGateway()
    spec.selectors.add().match["kuma.io/service"] = "edge"
    listener = spec.conf.listeners.add(port=443, protocol=gateway_pb2.MeshGateway.Listener.HTTPS)
    listener.tls.mode = gateway_pb2.MeshGateway.TLS.TERMINATE
    listener.tls.certificates.add(secret="edge-cert")
    envelope = kds_pb2.KumaResource()
    envelope.meta.name = "edge"
    envelope.meta.mesh = "default"
    envelope.meta.version = "v1"
    envelope.meta.labels["kuma.io/origin"] = "global"
    envelope.spec.Pack(spec)

    wrapped = any_pb2.Any()
    wrapped.Pack(envelope)
    assert wrapped.type_url == "type.googleapis.com/kuma.mesh.v1alpha1.KumaResource"
    assert envelope.spec.type_url == "type.googleapis.com/kuma.mesh.v1alpha1.MeshGateway"

    decoded = kds_pb2.KumaResource.FromString(wrapped.value)
    assert decoded == envelope
    unpacked = gateway_pb2.MeshGateway()
    assert decoded.spec.Unpack(unpacked)
    assert unpacked == spec
    assert unpacked.conf.listeners[0].tls.certificates[0].WhichOneof("type") == "secret"


def test_service_full_names() -> None:
    services = kds_pb2.DESCRIPTOR.services_by_name
    assert services["KDSSyncService"].full_name == "kuma.mesh.v1alpha1.KDSSyncService"
    assert services["GlobalKDSService"].full_name == "kuma.mesh.v1alpha1.GlobalKDSService"
    assert "KumaDiscoveryService" not in services
    assert hasattr(kds_pb2_grpc, "KDSSyncServiceStub")
    assert hasattr(kds_pb2_grpc, "GlobalKDSServiceServicer")


def test_sync_methods_stream_envoy_delta_messages() -> None:
    sync = kds_pb2.DESCRIPTOR.services_by_name["KDSSyncService"]
    to_zone = sync.methods_by_name["GlobalToZoneSync"]
    to_global = sync.methods_by_name["ZoneToGlobalSync"]
    request = "envoy.service.discovery.v3.DeltaDiscoveryRequest"
    response = "envoy.service.discovery.v3.DeltaDiscoveryResponse"
    assert (to_zone.input_type.full_name, to_zone.output_type.full_name) == (request, response)
    assert (to_global.input_type.full_name, to_global.output_type.full_name) == (response, request)
    assert to_zone.client_streaming
    assert to_zone.server_streaming


def _numbers(descriptor: object) -> dict[str, int]:
    return {f.name: f.number for f in descriptor.fields}  # type: ignore[attr-defined]


def test_kuma_resource_meta_field_numbers() -> None:
    assert _numbers(kds_pb2.KumaResource.Meta.DESCRIPTOR) == {"name": 1, "mesh": 2, "version": 5, "labels": 6}
    assert _numbers(kds_pb2.KumaResource.DESCRIPTOR) == {"meta": 1, "spec": 2}


@pytest.mark.parametrize(
    ("descriptor", "expected"),
    [
        (kds_pb2.ZoneHealthCheckResponse.DESCRIPTOR, {"interval": 1}),
        (
            kds_pb2.XDSConfigRequest.DESCRIPTOR,
            {"request_id": 1, "resource_type": 2, "resource_name": 3, "resource_mesh": 4, "include_eds": 5},
        ),
        (kds_pb2.XDSConfigResponse.DESCRIPTOR, {"request_id": 1, "error": 2, "config": 3}),
        (kds_pb2.ClustersResponse.DESCRIPTOR, {"request_id": 1, "error": 2, "clusters": 3}),
        (gateway_pb2.MeshGateway.DESCRIPTOR, {"selectors": 1, "tags": 2, "conf": 3}),
        (gateway_pb2.MeshGateway.Conf.DESCRIPTOR, {"listeners": 2}),
        (
            gateway_pb2.MeshGateway.Listener.DESCRIPTOR,
            {"hostname": 1, "port": 2, "protocol": 3, "tls": 4, "tags": 5, "crossMesh": 6, "resources": 7},
        ),
        (gateway_route_pb2.MeshGatewayRoute.Conf.DESCRIPTOR, {"tcp": 2, "http": 4}),
        (
            gateway_route_pb2.MeshGatewayRoute.HttpRoute.Filter.DESCRIPTOR,
            {"request_header": 1, "mirror": 2, "redirect": 3, "rewrite": 4, "response_header": 5},
        ),
        (
            dataplane_pb2.Dataplane.Networking.DESCRIPTOR,
            {
                "address": 5,
                "advertisedAddress": 7,
                "gateway": 3,
                "inbound": 1,
                "outbound": 2,
                "transparent_proxying": 4,
                "admin": 8,
            },
        ),
        (dataplane_pb2.Dataplane.DESCRIPTOR, {"networking": 1, "metrics": 2, "probes": 3}),
        (
            mesh_pb2.Mesh.DESCRIPTOR,
            {
                "mtls": 1,
                "tracing": 2,
                "logging": 3,
                "metrics": 4,
                "networking": 5,
                "routing": 6,
                "constraints": 7,
                "skipCreatingInitialPolicies": 8,
            },
        ),
        (datasource_pb2.DataSource.DESCRIPTOR, {"secret": 1, "file": 2, "inline": 3, "inlineString": 4}),
    ],
    ids=lambda value: getattr(value, "full_name", ""),
)
def test_kuma_field_numbers(descriptor: object, expected: dict[str, int]) -> None:
    assert _numbers(descriptor) == expected


def test_packages_are_kumas() -> None:
    assert mesh_pb2.DESCRIPTOR.package == "kuma.mesh.v1alpha1"
    assert datasource_pb2.DESCRIPTOR.package == "kuma.system.v1alpha1"
    assert gateway_pb2.MeshGateway.Listener.Protocol.Value("HTTPS") == 5
    interval = kds_pb2.ZoneHealthCheckResponse(interval=duration_pb2.Duration(seconds=5)).interval
    assert interval.seconds == 5
