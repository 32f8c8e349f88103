"""`meshgate-zone run --environment kubernetes`: the flag, the one-line failure without a cluster, the proxy
settings from the environment, and a whole zone process reconciling through lightkube against the fake API
server (tests/k8s_support.fake_api_server over a FakeKubeApi, which stands in for the API server)."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import yaml
from cryptography import x509

from meshgate.k8s.api import Kind
from meshgate.k8s.client import SERVICE_ACCOUNT_DIR
from meshgate.k8s.errors import KubeConfigError
from meshgate.k8s.testing import FakeKubeApi
from meshgate.resources import codec
from meshgate.rest.testing import serving
from meshgate.store.factory import open_store
from tests.k8s_support import Seen, fake_api_server, validate_k8s
from tests.support.wait import eventually
from zone_cp import kubernetes
from zone_cp.app import ZoneConfig, run_zone

ROOT = Path(__file__).resolve().parents[2]
IN_CLUSTER = (SERVICE_ACCOUNT_DIR / "token").exists()


def zone_command(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "zone_cp",
        "run",
        "--zone",
        "zone-k8s",
        "--global-address",
        "grpc://127.0.0.1:1",
        "--store",
        "memory",
        "--api-port",
        "0",
        "--diagnostics-port",
        "0",
        *extra,
    ]


def run_cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MESHGATE_ENVIRONMENT")}
    env.update(extra)
    return env


@pytest.mark.skipif(IN_CLUSTER, reason="this machine has a Kubernetes service account")
@pytest.mark.parametrize("how", ["flag", "env"])
def test_without_a_cluster_the_zone_fails_with_one_line(how: str) -> None:
    if how == "flag":
        result = run_cli(zone_command("--environment", "kubernetes"), clean_env())
    else:
        result = run_cli(zone_command(), clean_env(MESHGATE_ENVIRONMENT="kubernetes"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "meshgate-zone: no Kubernetes API configuration: not running in a cluster (no service account token in "
        f"{SERVICE_ACCOUNT_DIR}) and KUBECONFIG is not set"
    ]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.skipif(IN_CLUSTER, reason="this machine has a Kubernetes service account")
def test_a_missing_kubeconfig_file_is_named(tmp_path: Path) -> None:
    result = run_cli(zone_command("--environment", "kubernetes"), clean_env(KUBECONFIG=str(tmp_path / "nope")))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"meshgate-zone: KUBECONFIG {tmp_path / 'nope'}: Configuration file {tmp_path / 'nope'} not found"
    ]


def test_an_unknown_environment_is_a_usage_error() -> None:
    result = run_cli(zone_command("--environment", "k8s"), clean_env())
    assert result.returncode == 2
    assert "expected universal or kubernetes" in result.stderr


def test_proxy_settings_come_from_the_environment(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("PEM")
    (tmp_path / "namespace").write_text("zone-system\n")
    env = {
        "MESHGATE_K8S_CONTROL_PLANE_SERVICE": "zone-cp",
        "MESHGATE_K8S_CA_CERT_FILE": str(ca),
    }
    settings = kubernetes.settings_from_env(env, service_account=tmp_path)
    assert settings.dataplane_image == "meshgate:0.1.0"  # the zone's --dataplane-image sets another
    assert settings.control_plane_url == "https://zone-cp.zone-system:5678"
    assert settings.ca_cert == "PEM"
    explicit = kubernetes.settings_from_env({"MESHGATE_K8S_CONTROL_PLANE_URL": "https://x:1"}, service_account=tmp_path)
    assert explicit.control_plane_url == "https://x:1"
    assert kubernetes.settings_from_env({}, service_account=tmp_path / "none").system_namespace == "meshgate-system"
    with pytest.raises(KubeConfigError, match="MESHGATE_K8S_CA_CERT_FILE"):
        kubernetes.settings_from_env({"MESHGATE_K8S_CA_CERT_FILE": str(tmp_path / "missing")})


def served_dns_sans(port: int) -> set[str]:
    """The DNS names in the certificate the zone's xDS port presents."""
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    cert = x509.load_pem_x509_certificate(pem.encode())
    return set(
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    )


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "users": [{"name": "fake", "user": {"token": "test-token"}}],
        "current-context": "fake",
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.skipif(IN_CLUSTER, reason="this machine has a Kubernetes service account")
def test_prepare_reads_the_resync_interval(tmp_path: Path) -> None:
    kubeconfig = str(write_kubeconfig(tmp_path / "config", "https://127.0.0.1:6443"))
    zone = kubernetes.prepare({"KUBECONFIG": kubeconfig, "MESHGATE_K8S_RESYNC_INTERVAL": "5"})
    assert zone.options.resync_interval == 5
    with pytest.raises(KubeConfigError, match="MESHGATE_K8S_RESYNC_INTERVAL"):
        kubernetes.prepare({"KUBECONFIG": kubeconfig, "MESHGATE_K8S_RESYNC_INTERVAL": "soon"})


GATEWAY: dict[str, Any] = {
    "type": "MeshGateway",
    "mesh": "default",
    "name": "edge",
    "selectors": [{"match": {"kuma.io/service": "edge-gateway_gateways_svc"}}],
    "conf": {"listeners": [{"port": 8080, "protocol": "HTTP"}]},
}


@pytest.mark.skipif(IN_CLUSTER, reason="this machine has a Kubernetes service account")
async def test_a_kubernetes_zone_provisions_gateways(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeKubeApi(validate=validate_k8s)
    fake.create_namespace("gateways")
    # A zone receives Meshes from the global; this one has none to talk to, so its store starts with one.
    database = tmp_path / "zone.db"
    seed = await open_store(f"sqlite:{database}", data_dir=tmp_path)
    await seed.create(codec.load({"type": "Mesh", "name": "default"}))
    await seed.close()
    async with serving(fake_api_server(fake, Seen())) as base_url:
        monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "config", base_url)))
        cfg = ZoneConfig(
            zone="zone-k8s",
            global_addresses=("grpc://127.0.0.1:1",),
            bind_address="127.0.0.1",
            api_port=0,
            diagnostics_port=0,
            store=f"sqlite:{database}",
            data_dir=tmp_path,
            environment="kubernetes",
            dns_port=0,
            xds_port=0,  # never Kuma's 5678: another zone on this host may hold it
            dataplane_image="example/dp:test",
        )
        async with anyio.create_task_group() as tg:
            ports: dict[str, int] = await tg.start(run_zone, cfg)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}", timeout=10) as http:
                response = await http.put("/meshes/default/meshgateways/edge", json=GATEWAY)
                assert response.status_code in (200, 201), response.text
            fake.create(
                {
                    "apiVersion": "kuma.io/v1alpha1",
                    "kind": "MeshGatewayInstance",
                    "metadata": {"name": "edge-gateway", "namespace": "gateways"},
                    "spec": {"serviceType": "ClusterIP"},
                }
            )
            await eventually(
                lambda: fake.object(Kind.DEPLOYMENT, "gateways", "edge-gateway") is not None, what="deployment"
            )
            deployment = fake.object(Kind.DEPLOYMENT, "gateways", "edge-gateway")
            assert deployment is not None
            template = deployment["spec"]["template"]
            container = template["spec"]["containers"][0]
            assert container["image"] == "example/dp:test"
            assert container["command"] == ["meshgate-dp"]
            # The Pods trust the CA the zone generated for its xDS port, whose certificate names the zone's
            # Service, the host of --cp-address.
            assert template["metadata"]["annotations"]["meshgate.io/xds-ca"] == (tmp_path / "xds-ca.crt").read_text()
            assert "--cp-address=https://meshgate-zone.meshgate-system:5678" in container["args"]
            sans = await anyio.to_thread.run_sync(served_dns_sans, ports["xds"])
            assert "meshgate-zone.meshgate-system" in sans
            tg.cancel_scope.cancel()
